"""Virtual time: run a stream's Observable on reactivex's ``TestScheduler`` and see the frames
the server would send, when, and how the stream ends, without a server and without waiting.

An hour of ``rx.interval(60)`` with a heartbeat and a ``max_lifetime`` runs in milliseconds.
The frames are the real ones: each event encoded by rxsse's encoder, the server's own
heartbeat line (timed by the server's own ``Pulse``), its failure event,
its lifetime; the options are the same :class:`~rxsse.StreamOptions`.

Example:
    >>> stream = run_virtual(rx.interval(60.0), until=130, heartbeat=25.0)
    >>> stream.expect([
    ...     (25, "heartbeat"), (50, "heartbeat"), (60, MessageEvent(0)),
    ...     (85, "heartbeat"), (110, "heartbeat"), (120, MessageEvent(1)),
    ... ])
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeAlias

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from reactivex import Observable, abc
from reactivex.testing import TestScheduler

from .._checks import check_seconds
from .._event import MessageEvent, event_of
from ..streaming._failures import failure_event, resume_of
from ..streaming._heartbeat import Pulse
from ..streaming._options import StreamKeywords, StreamOptions, options_of
from ..streaming._writer import _HEARTBEAT_FRAME, _OPENING_FRAME
from ..web._routing import _ROUTE, RouteSpec

if TYPE_CHECKING:  # (typing.Unpack is Python 3.11+; annotations are not evaluated)
    from typing_extensions import Unpack


logger = logging.getLogger("rxsse.stream")

#: How a virtual stream ended: as the server's ``End`` of the same name.
Ended: TypeAlias = Literal["completed", "error", "expired", "shutdown"]
#: One expected frame: ``(time, MessageEvent)``, ``(time, "heartbeat")`` or ``(time, "end")``.
Expected: TypeAlias = tuple[float, MessageEvent[Any] | Literal["heartbeat", "end"]]


class Frame(NamedTuple):
    """What the stream wrote at a virtual time (seconds after it opened).

    Attributes:
        time: virtual seconds since the stream opened.
        kind: ``"event"``, ``"heartbeat"`` or ``"end"`` (the response ended; no bytes).
        data: the exact bytes the client gets (before any compression).
        event: the event sent (for ``"event"``; a failure's own event included), else None.
    """

    time: float
    kind: Literal["event", "heartbeat", "end"]
    data: bytes
    event: MessageEvent[Any] | None = None

    @property
    def value(self) -> MessageEvent[Any] | Literal["heartbeat", "end"]:
        """The event, or ``"heartbeat"`` / ``"end"``: what :data:`Expected` names."""
        if self.event is not None:
            return self.event
        return "heartbeat" if self.kind == "heartbeat" else "end"


@dataclass(frozen=True)
class VirtualStream:
    """What a stream did in virtual time (made by :func:`run_virtual`).

    Attributes:
        frames: every frame, in order, the end included.
        status: 200; or the HTTP status the server answers with when the Observable fails at
            once, before it sent anything (then there are no frames).
        ended: ``"completed"``, ``"error"``, ``"expired"`` (``max_lifetime``) or
            ``"shutdown"`` (the server shut down at ``shutdown_at``); None if the
            stream was still open at ``until`` (then the client left, and the subscription
            was disposed).
        ended_at: the virtual time of the end, or None.
    """

    frames: tuple[Frame, ...]
    status: int
    ended: Ended | None
    ended_at: float | None

    @property
    def events(self) -> list[MessageEvent[Any]]:
        """The events sent, in order."""
        return [f.event for f in self.frames if f.event is not None]

    @property
    def timeline(self) -> list[tuple[float, MessageEvent[Any] | Literal["heartbeat", "end"]]]:
        """``(time, event | "heartbeat" | "end")`` for every frame: the form :meth:`expect`
        takes."""
        return [(f.time, f.value) for f in self.frames]

    @property
    def wire(self) -> bytes:
        """The body of the response: the opening line the server sends when it has no event
        to send at once, then every frame."""
        opening = b"" if self.frames and self.frames[0].time == 0 else _OPENING_FRAME
        return opening + b"".join(f.data for f in self.frames) if self.status == 200 else b""

    def expect(self, expected: Sequence[Expected], *, until: float | None = None) -> None:
        """Assert the frames are ``expected`` (only those up to ``until``, if given): events
        compared by their encoded bytes, times to a nanosecond.

        Raises:
            AssertionError: naming the first difference, with both timelines.
        """
        frames = self.frames if until is None else [f for f in self.frames if f.time <= until]
        expect_frames(frames, expected)


def expect_frames(frames: Sequence[Frame], expected: Sequence[Expected]) -> None:
    """Assert ``frames`` are ``expected``, one for one (see :meth:`VirtualStream.expect`)."""
    wanted = [(float(time), _bytes_of(value), value) for time, value in expected]
    for index, (frame, (time, data, value)) in enumerate(zip(frames, wanted, strict=False)):
        if not math.isclose(frame.time, time, rel_tol=0, abs_tol=1e-9) or frame.data != data:
            raise AssertionError(
                f"frame {index}: expected {_show(time, value)}, got {_show(frame.time, frame)}"
                + _both(frames, expected)
            )
    if len(frames) != len(wanted):
        raise AssertionError(
            f"expected {len(wanted)} frames, got {len(frames)}" + _both(frames, expected)
        )


def run_virtual(
    source: Observable[Any] | Callable[[TestScheduler], Observable[Any]],
    *,
    until: float,
    route: Callable[..., Any] | None = None,
    last_event_id: str | None = None,
    shutdown_at: float | None = None,
    options: StreamOptions | None = None,
    **keywords: Unpack[StreamKeywords],
) -> VirtualStream:
    """Run a stream in virtual time, from its opening to ``until`` virtual seconds (or its
    end, if sooner), and return what it sent.

    The Observable is subscribed with a ``TestScheduler`` as the server subscribes with its
    loop's scheduler: ``rx.interval(60.0)`` with no scheduler of its own (a handler's code as
    it is) runs on virtual time. Time-based sources must take their time from it (given none,
    or the one passed to ``source``), not from another scheduler or thread.

    Args:
        source: the Observable, e.g. a handler's result (``Events(bus).ticks()``), or a
            factory called with the scheduler (``lambda s: rx.interval(60, scheduler=s)``).
        until: virtual seconds to run (inclusive); a stream still open then is disposed, as
            when its client leaves.
        route: the ``@sse`` handler ``source`` comes from: its own options apply, over
            ``options`` and ``keywords`` (which play the part of ``setup()``'s defaults).
        last_event_id: the ``Last-Event-ID`` the client sent (a failure event resumes it).
        shutdown_at: the virtual time the server shuts down, ending the stream (after its
            ``shutdown_event`` option, if given).
        options: the stream's options (:class:`~rxsse.StreamOptions`).
        keywords: options as keywords of :func:`rxsse.stream` (``heartbeat``,
            ``max_lifetime``, ``lifetime_jitter``...). As on the server, the lifetime is
            ``max_lifetime`` less a random share up to ``lifetime_jitter``: pass
            ``lifetime_jitter=0.0`` to test an exact end.

    Raises:
        ValueError: ``until`` is not a positive number of seconds, or an option is not allowed.
        TypeError: ``source`` is no Observable, or ``route`` no ``@sse`` handler.

    Unlike the server, a heartbeat comes exactly on time (the server's wheel may add up to
    50 ms), and nothing waits for a slow client.
    """
    check_seconds("until", until)
    settings = options_of(options, keywords, "run_virtual()")
    if route is not None:
        spec = getattr(route, _ROUTE, None)
        if not isinstance(spec, RouteSpec) or spec.kind != "sse":
            raise TypeError(f"route must be an @sse handler, not {route!r}")
        settings = settings.replace(**spec.options)  # the route's own win, as in setup()
    scheduler = TestScheduler()
    observable = source if isinstance(source, Observable) else source(scheduler)
    if not isinstance(observable, Observable):
        raise TypeError(f"virtual time runs an Observable, not {type(observable).__name__}")
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    run = _Run(scheduler, settings, make_mocked_request("GET", "/", headers=headers))
    run.start(observable)
    if shutdown_at is not None and run.ended is None:
        scheduler.schedule_absolute(float(shutdown_at), run.shut_down)
    scheduler.advance_to(float(until))
    return run.result()


class _Run:
    """One stream in virtual time: the session's rules, a list for a wire. (A :class:`Pulse`
    pings it as it pings a server's writer.)"""

    def __init__(self, scheduler: TestScheduler, options: StreamOptions, request: web.Request):
        self.scheduler = scheduler
        self.options = options
        self.request = request
        self.frames: list[Frame] = []
        self.last_output = 0.0  # (the writer's name, read by the Pulse)
        self.status = 200
        self.ended: Ended | None = None
        self.ended_at: float | None = None
        self.last_id: str | None = None
        self.subscription: abc.DisposableBase | None = None
        self.timers: list[abc.DisposableBase] = []
        self.pulse: Pulse | None = None  # its heartbeat, if it has one

    def start(self, source: Observable[Any]) -> None:
        try:
            self.subscription = source.subscribe(
                self._next, self._error, self._completed, scheduler=self.scheduler
            )
        except Exception as exc:  # a subscribe function that raised
            self._error(exc)
        if self.ended is not None:
            self._dispose()
            return
        schedule = self.scheduler.schedule_absolute
        if self.options.heartbeat is not None:
            self.pulse = Pulse(self, self.options.heartbeat)
            self.timers.append(schedule(self.options.heartbeat, self._beat))
        lifetime = self.options.lifetime()
        if lifetime is not None:
            self.timers.append(schedule(lifetime, self._expire))

    def ping(self) -> None:
        """Write a heartbeat line (for the :class:`Pulse`)."""
        self._write(Frame(self._now(), "heartbeat", _HEARTBEAT_FRAME))

    def result(self) -> VirtualStream:
        if self.ended is None:
            self._dispose()  # the client leaves at ``until``
        return VirtualStream(tuple(self.frames), self.status, self.ended, self.ended_at)

    def _now(self) -> float:
        return float(self.scheduler.clock)

    def _write(self, frame: Frame) -> None:
        self.frames.append(frame)
        self.last_output = frame.time

    def _beat(self, scheduler: abc.SchedulerBase, state: Any = None) -> None:
        due = self.pulse.beat(self._now()) if self.pulse is not None else None
        if due is not None and self.ended is None:
            self.timers.append(self.scheduler.schedule_absolute(due, self._beat))

    def shut_down(self, scheduler: abc.SchedulerBase, state: Any = None) -> None:
        """The server shuts down: the ``shutdown_event`` (if any), then the end (as on
        SIGTERM)."""
        if self.options.shutdown_event is not None:
            self._next(self.options.shutdown_event)
        self._finish("shutdown")

    def _expire(self, scheduler: abc.SchedulerBase, state: Any = None) -> None:
        self._finish("expired")

    def _next(self, value: Any) -> None:
        if self.ended is not None:
            return
        try:
            event = event_of(value)
            data = event.encode()
        except Exception as exc:  # unencodable data fails the stream, as on the server
            self._error(exc)
            return
        if event.id is not None:
            self.last_id = event.id
        self._write(Frame(self._now(), "event", data, event))

    def _error(self, error: Exception) -> None:
        if self.ended is not None:
            return
        if not self.frames and self._now() == 0:  # at once: no stream, an HTTP status
            self.status = error.status if isinstance(error, web.HTTPException) else 500
        else:
            policy, resume = self.options.failures, resume_of(self.request)
            event = failure_event(error, self.request, policy, resume, self.last_id)
            self._write(Frame(self._now(), "event", event.encode(), event))
        self._finish("error")

    def _completed(self) -> None:
        self._finish("completed")

    def _finish(self, ended: Ended) -> None:
        if self.ended is not None:
            return
        self.ended, self.ended_at = ended, self._now()
        if self.status == 200:
            self.frames.append(Frame(self._now(), "end", b""))
        self._dispose()
        self.scheduler.stop()  # nothing more happens on this stream

    def _dispose(self) -> None:
        for timer in self.timers:
            timer.dispose()
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            try:
                subscription.dispose()
            except Exception:
                logger.exception("disposing the subscription of a virtual stream failed")


def _bytes_of(value: MessageEvent[Any] | str) -> bytes:
    if isinstance(value, MessageEvent):
        return value.encode()
    if value == "heartbeat":
        return _HEARTBEAT_FRAME
    if value == "end":
        return b""
    raise TypeError(f"expected a MessageEvent, 'heartbeat' or 'end', not {value!r}")


def _show(time: float, value: object) -> str:
    if isinstance(value, Frame):
        value = value.data if value.kind == "event" else value.kind
    elif isinstance(value, MessageEvent):
        value = value.encode()
    return f"{value!r} at {time:g}"


def _both(frames: Sequence[Frame], expected: Sequence[Expected]) -> str:
    got = "\n".join(f"  {_show(f.time, f)}" for f in frames)
    wanted = "\n".join(f"  {_show(t, v)}" for t, v in expected)
    return f"\nexpected:\n{wanted}\ngot:\n{got}"
