"""The session: one request, one subscription, one ``text/event-stream`` response.

``await stream(request, source)`` subscribes to ``source`` on the request's event loop, writes
every emission as a frame, ends the response when the Observable completes, and disposes the
subscription exactly once when the client goes away or the server shuts down.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterable, Callable, Coroutine, Mapping
from typing import Any, Final, Literal, TypeVar, cast

from aiohttp import web
from reactivex import Observable, abc

from .errors import json_error
from .event import MessageEvent, comment_line
from .failures import (
    DEFAULT_ERROR_EVENT,
    DEFAULT_ERROR_RETRY,
    DEFAULT_MAX_FAILURES,
    FailurePolicy,
    failure_event,
    resume_of,
)
from .heartbeat import Heartbeats
from .limits import (
    DEFAULT_BUFFER_BYTES,
    DEFAULT_BUFFER_FRAMES,
    DEFAULT_LIFETIME_JITTER,
    DEFAULT_SEND_TIMEOUT,
    Overflow,
    StreamLimits,
    positive_seconds,
)
from .metrics import METRICS, StreamMetrics
from .outbox import Outbox
from .scheduler import LoopScheduler
from .shutdown import OPEN_STREAMS
from .sources import Attachable, from_async_iterable
from .watch import DisconnectWatch, detect_dead_peer
from .writing import Flusher, PerLoop, write_now

__all__ = [
    "DEFAULT_HEARTBEAT",
    "SSE_HEADERS",
    "StreamSession",
    "stream",
]

logger = logging.getLogger(__name__)

#: Seconds without output after which a heartbeat comment is sent (proxies drop idle streams).
DEFAULT_HEARTBEAT: Final = 15.0

#: Headers every event stream carries, before the user's own.
SSE_HEADERS: Final[Mapping[str, str]] = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}

# Comment lines with no blank line after them: every client reads them as nothing.
_HEARTBEAT_FRAME: Final = comment_line("ping")
# Written with the headers: a proxy that holds the headers until the first body byte (nginx
# over HTTP/2) passes them on at once, so an idle stream opens at once.
_OPENING_FRAME: Final = comment_line("open")
# A timer may fire this early (the loop's clock resolution): still on time.
_TIMER_SLACK: Final = 0.001

_End = Literal[
    "completed", "error", "shutdown", "expired", "disconnected", "cancelled", "overflow", "timeout"
]
# A stream that wrote within this many seconds holds its next frames back for the rest of the
# window (or until this many bytes are pending): one write for many events when a source is
# fast, no delay when it is not.
_COALESCE_WINDOW: Final = 0.001
_COALESCE_BYTES: Final = 32 * 1024
# At most this many bytes go into one write (a burst is written in parts as the client takes
# them, so a join never copies more than this).
_WRITE_CHUNK: Final = 256 * 1024
# Ends after which nothing more can be written.
_GONE: Final = ("disconnected", "cancelled", "overflow", "timeout")
# The counter of StreamMetrics each end adds one to (send timeouts are counted where they
# happen).
_COUNTERS: Final[Mapping[str, str]] = {
    "completed": "completed",
    "error": "errors",
    "expired": "expired",
    "disconnected": "disconnects",
    "overflow": "overflows",
}


def stream(
    request: web.Request,
    source: Observable[Any] | AsyncIterable[Any],
    *,
    heartbeat: float | None = DEFAULT_HEARTBEAT,
    headers: Mapping[str, str] | None = None,
    max_buffer_frames: int = DEFAULT_BUFFER_FRAMES,
    max_buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    overflow: Overflow = "disconnect",
    send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
    max_lifetime: float | None = None,
    lifetime_jitter: float = DEFAULT_LIFETIME_JITTER,
    error_event: str = DEFAULT_ERROR_EVENT,
    error_retry: float = DEFAULT_ERROR_RETRY,
    max_failures: int | None = DEFAULT_MAX_FAILURES,
) -> Coroutine[Any, Any, web.StreamResponse]:
    """Serve ``source`` as a ``text/event-stream`` response; awaited, return it once the
    stream ends.

    Use it from any aiohttp handler: ``return await rxsse.stream(request, observable)``.

    Args:
        request: the GET request being answered.
        source: an Observable (or an async iterable) of :class:`MessageEvent` or plain values;
            a plain value ``v`` is sent as ``MessageEvent(data=v)``.
        heartbeat: seconds without output after which a ``: ping`` comment is sent (each
            time the stream has been silent that long), or ``None`` for no heartbeat.
        headers: extra response headers, added to (and able to override) :data:`SSE_HEADERS`.
        max_buffer_frames: how many frames may wait for a client that lags behind: frames
            that arrived while a write was already waiting for it. (A burst that arrives while
            the client keeps up is written as fast as the client takes it.)
        max_buffer_bytes: how many bytes may wait for a client that lags behind.
        overflow: what happens when a slow client makes either bound overflow:
            ``"disconnect"`` closes the stream (the client reconnects and resumes from its
            ``Last-Event-ID``, e.g. out of an EventBus log, so nothing is lost);
            ``"drop_oldest"`` / ``"drop_newest"`` drop frames and count them in
            :func:`rxsse.metrics`.
        send_timeout: seconds a write may wait for a client that takes no data; then the
            connection is dropped. Also the longest the kernel keeps sending to a client that
            acknowledges nothing (``TCP_USER_TIMEOUT``), so a client that vanished without
            closing is dropped within ``heartbeat + send_timeout`` (``2 * send_timeout``
            without heartbeat). ``None``: wait as long as the connection stays up.
        max_lifetime: seconds after which the stream ends cleanly, so that the client
            reconnects (with its ``Last-Event-ID``), e.g. to spread long-lived connections over
            new server processes (``None``: no limit).
        lifetime_jitter: each stream's lifetime is ``max_lifetime`` less a random share of up
            to this fraction, so streams opened together do not all reconnect together.
        error_event: the event type of the failure of a stream that had started (see
            :mod:`rxsse.failures`); not ``error``, which a browser hands to ``onerror``.
        error_retry: seconds a client waits before it reconnects after a failure, doubled
            for each failure in a row (up to a minute).
        max_failures: failures in a row after which a reconnect is answered 204, which stops
            a browser (``None``: never).

    Raises:
        web.HTTPException: when ``source`` fails before the stream has started (its own
            status for an ``HTTPException``, else a 500 with a JSON body).
    """
    if heartbeat is not None and not positive_seconds(heartbeat):
        raise ValueError(f"heartbeat must be a positive number of seconds or None, not {heartbeat}")
    limits = _shared(
        StreamLimits,
        max_buffer_frames,
        max_buffer_bytes,
        overflow,
        send_timeout,
        max_lifetime,
        lifetime_jitter,
    )
    policy = _shared(FailurePolicy, error_event, error_retry, max_failures)
    if policy.gave_up(resume_of(request)):
        return _answer(web.Response(status=204))  # failed too often in a row: the client stops
    observable = source if isinstance(source, Observable) else from_async_iterable(source)
    response = web.StreamResponse(headers={**SSE_HEADERS, **(headers or {})})
    session = StreamSession(request, response, heartbeat=heartbeat, limits=limits, policy=policy)
    # The session's coroutine itself, not one awaiting it: a frame less for as long as the
    # stream is open. (So the checks above raise at the call, before any await.)
    return session.run(observable)


async def _answer(response: web.StreamResponse) -> web.StreamResponse:
    return response


_Options = TypeVar("_Options")


@functools.lru_cache(maxsize=256, typed=True)  # typed: True is no 1, and 1.0 no 1
def _shared_options(kind: Callable[..., Any], *values: Any) -> Any:
    return kind(*values)


def _shared(kind: Callable[..., _Options], *values: Any) -> _Options:
    """The options object of these values, shared by every stream that has them (they are
    frozen): a route's streams do not each carry copies."""
    try:
        return cast(_Options, _shared_options(kind, *values))
    except TypeError:  # a value that cannot be a cache key: let the object say what is wrong
        return kind(*values)


class StreamSession:
    """One open event stream: the subscription, the pending frames and the response.

    Created by :func:`stream`; exposed for introspection (see :func:`open_streams`).
    Observer callbacks may arrive on any thread; all state changes happen on the loop.
    """

    __slots__ = (
        "__weakref__",
        "_beats",
        "_blocked",
        "_deferred",
        "_done",
        "_end",
        "_error",
        "_expiry",
        "_flusher",
        "_heartbeat",
        "_last_flush",
        "_last_id",
        "_last_output",
        "_limits",
        "_loop",
        "_metrics",
        "_open",
        "_outbox",
        "_policy",
        "_queued",
        "_request",
        "_response",
        "_stall",
        "_stall_backlog",
        "_subscription",
        "_thread",
        "_watch",
        "heartbeat_slot",
    )

    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        *,
        heartbeat: float | None,
        limits: StreamLimits | None = None,
        policy: FailurePolicy | None = None,
    ) -> None:
        self._request = request
        self._policy = policy or FailurePolicy()
        self._last_id: str | None = None  # the last event id written: where a failure resumes
        self._limits = limits or StreamLimits()
        self._metrics = request.config_dict.get(METRICS) or StreamMetrics()
        self._response = response
        self._heartbeat = heartbeat
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._outbox = Outbox(self._limits)
        self._last_flush = 0.0  # when the last write went out (0: write the next one now)
        self._last_output = self._loop.time()  # when the client last got bytes (heartbeat)
        self._deferred: asyncio.TimerHandle | None = None  # a hot stream's delayed flush
        self._open = False  # headers sent: frames may be written
        self._queued = False  # waiting in the flusher's queue
        self._blocked: asyncio.Task[None] | None = None  # a write waiting for the transport
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._subscription: abc.DisposableBase | None = None
        self._end: _End | None = None
        self._error: BaseException | None = None
        self.heartbeat_slot = 0  # where the loop's Heartbeats keep this stream
        self._expiry: asyncio.TimerHandle | None = None  # the end of max_lifetime
        self._stall: asyncio.TimerHandle | None = None  # the send timeout of a blocked write
        self._stall_backlog = 0  # bytes waiting in the transport when it was (re)armed
        self._watch = _watch()
        self._beats = _heartbeats()
        self._flusher = _flusher()

    @property
    def request(self) -> web.Request:
        """The request this stream answers."""
        return self._request

    @property
    def ended(self) -> bool:
        """Whether the stream has ended (completed, failed, closed or disconnected)."""
        return self._end is not None

    async def run(self, source: Observable[Any]) -> web.StreamResponse:
        """Subscribe, send the headers, stream frames until the end; return the response."""
        registry = self._request.config_dict.get(OPEN_STREAMS)
        try:
            try:
                if isinstance(source, Attachable):  # rxsse's own: no wrappers to hold
                    # (an observer by its methods; not a subclass, which would cost a __dict__)
                    subscription = source.attach(cast(abc.ObserverBase[Any], self))
                else:
                    subscription = source.subscribe(
                        self.on_next, self.on_error, self.on_completed, scheduler=_scheduler()
                    )
            except Exception as exc:  # a subscribe function that raised
                self._fail(exc)
            else:
                self._subscription = subscription
                if self._end is not None:
                    subscription.dispose()
            # One loop iteration for the Observable to fail at once (rx.throw is scheduled):
            # such a failure still gets a real HTTP status, as the headers are not sent yet.
            await asyncio.sleep(0)
            if self._end == "error" and not self._outbox:
                raise _http_error(self._error)
            try:
                await self._response.prepare(self._request)
            except ConnectionError:  # the client left (or a burst overflowed) before the headers
                self._finish("disconnected")
                return self._response  # aiohttp finds the connection closed and moves on quietly
            self._open = True
            # aiohttp's timer for a connection that sends no request lives until it fires
            # (75 s), and half a kilobyte per stream: this one did send its request. (The
            # connection then closes when the stream ends, rather than wait for another.)
            self._request.protocol.keep_alive(False)
            self._last_output = self._loop.time()
            detect_dead_peer(self._request.transport, self._limits.send_timeout, self._heartbeat)
            self._metrics.open_streams += 1
            self._metrics.streams_total += 1
            if registry is not None:
                registry.add(self)
            self._watch.add(self)
            if self._heartbeat is not None and self._end is None:
                self._beats.add(self, self._last_output + self._heartbeat)
            lifetime = self._limits.lifetime()
            if lifetime is not None:
                self._expiry = self._loop.call_later(lifetime, self._finish, "expired")
            if self._outbox:
                self._queue_flush()
            else:
                write_now(self._response, _OPENING_FRAME)  # a few bytes: never waits
            await self._done
            await self._close_response()
        except asyncio.CancelledError:
            self._finish("cancelled")
            raise
        finally:
            self._finish("cancelled")  # no-op unless an unexpected exception got here
            if self._open:
                self._metrics.open_streams -= 1
            for handle in (self._deferred, self._expiry, self._stall):
                if handle is not None:
                    handle.cancel()
            if self._blocked is not None and self._end != "completed":
                self._blocked.cancel()
            if registry is not None:
                registry.discard(self)
        return self._response

    def close(self, final_event: MessageEvent | None = None) -> None:
        """End the stream from the server side: send ``final_event`` (if any) after what is
        pending, then end the response."""
        if final_event is not None and self._end is None:
            self._push(final_event)
        self._finish("shutdown")

    # -- observer side (any thread) ------------------------------------------------------------

    def on_next(self, value: Any) -> None:
        """Send ``value`` (a :class:`MessageEvent`, or data for one). The session is its
        source's observer: from any thread."""
        if threading.get_ident() == self._thread:
            self._push(value)
        else:
            self._loop.call_soon_threadsafe(self._push, value)

    def on_error(self, error: Exception) -> None:
        """End the stream with a failure (from any thread)."""
        if threading.get_ident() == self._thread:
            self._fail(error)
        else:
            self._loop.call_soon_threadsafe(self._fail, error)

    def on_completed(self) -> None:
        """End the stream cleanly (from any thread)."""
        if threading.get_ident() == self._thread:
            self._finish("completed")
        else:
            self._loop.call_soon_threadsafe(self._finish, "completed")

    # -- loop side ------------------------------------------------------------------------------

    def _push(self, value: Any) -> None:
        if self._end is not None:
            return
        try:
            event = value if isinstance(value, MessageEvent) else MessageEvent(value)
            frame = event.encode()
        except Exception as exc:  # unencodable data fails the stream, like any Rx error
            self._fail(exc)
            return
        if event.id is not None:
            self._last_id = event.id
        outbox = self._outbox
        # Only a frame that arrives while a write already waits for the client is lag.
        if outbox.add(frame, lagging=self._blocked is not None):
            logger.info("closing the stream of %s: its client fell behind", self._request.remote)
            self._drop_client("overflow")
            return
        if outbox.dropped:
            self._metrics.frames_dropped[self._limits.overflow] += outbox.dropped
            outbox.dropped = 0
        if self._queued or not self._open or self._blocked is not None:
            return
        if self._deferred is None or outbox.bytes >= _COALESCE_BYTES:
            self._queued = True
            self._flusher.add(self)

    def _drop_client(self, end: _End) -> None:
        """End the stream and close the connection at once, dropping what is still queued for
        the client (in our buffer, the transport and the kernel)."""
        self._finish(end)
        self._outbox.clear()
        transport = self._request.transport
        if transport is not None:
            transport.abort()

    def _send_timed_out(self) -> None:
        self._stall = None
        transport = self._request.transport
        backlog = transport.get_write_buffer_size() if transport is not None else 0
        if backlog < self._stall_backlog:  # slow, but it took some: give it another period
            self._arm_send_timeout()
            return
        logger.info(
            "dropping the stream of %s: its client took no data for %s s",
            self._request.remote,
            self._limits.send_timeout,
        )
        # Counted here, not by the end: a stream already ending (shutdown, completion) may be
        # the one stuck writing its last frames.
        self._metrics.send_timeouts += 1
        self._drop_client("timeout")

    def _arm_send_timeout(self) -> None:
        """Start the send timeout: the client must take some of what waits in the transport
        within ``send_timeout`` seconds, and again each period after, or be dropped."""
        timeout = self._limits.send_timeout
        if timeout is not None and self._stall is None:
            transport = self._request.transport
            self._stall_backlog = transport.get_write_buffer_size() if transport else 0
            self._stall = self._loop.call_later(timeout, self._send_timed_out)

    def _disarm_send_timeout(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _queue_flush(self) -> None:
        if not self._queued:
            self._queued = True
            self._flusher.add(self)

    def flush(self) -> None:
        """Write the pending frames, in one write unless they are many (the flusher calls this
        once per iteration).

        A stream that wrote less than :data:`_COALESCE_WINDOW` ago is hot (its source emits
        faster than the loop turns): its frames wait for the rest of the window, or until
        :data:`_COALESCE_BYTES` are pending, so that a fast stream pays one system call for
        many events instead of one each. A quiet stream's frame goes out at once. A burst goes
        out :data:`_WRITE_CHUNK` bytes at a time for as long as the transport takes them.
        """
        self._queued = False
        outbox = self._outbox
        # After the end, _close_response writes what is left: writing it here as well would
        # send it twice.
        if not outbox or self._blocked is not None or self._end is not None:
            return
        now = self._loop.time()
        if now - self._last_flush < _COALESCE_WINDOW and outbox.bytes < _COALESCE_BYTES:
            if self._deferred is None:
                self._deferred = self._loop.call_at(
                    self._last_flush + _COALESCE_WINDOW, self._flush_deferred
                )
            return
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
        self._last_flush = self._last_output = now
        while outbox and self._blocked is None:
            waiting = len(outbox)
            data = outbox.take(_WRITE_CHUNK)
            self._metrics.events_sent += waiting - len(outbox)
            try:
                self._blocked = write_now(self._response, data)
            except ConnectionError:
                self._finish("disconnected")
                return
        if self._blocked is not None:  # a slow client: resume once the transport drains
            self._blocked.add_done_callback(self._drained)
            self._arm_send_timeout()

    def _flush_deferred(self) -> None:
        self._deferred = None
        self._last_flush = 0.0  # the window is over: flush now
        self.flush()

    def _drained(self, task: asyncio.Task[None]) -> None:
        self._blocked = None
        self._disarm_send_timeout()
        if task.cancelled():
            return
        if task.exception() is not None:
            self._finish("disconnected")
        elif self._outbox and self._end is None:
            self._queue_flush()

    def _fail(self, error: BaseException) -> None:
        if self._end is None:
            self._error = error
            self._finish("error")

    def _finish(self, end: _End) -> None:
        """Record how the stream ended and dispose the subscription: runs once per session."""
        if self._end is not None:
            return
        self._end = end
        self._watch.discard(self)
        if self._heartbeat is not None:
            self._beats.discard(self)
        counter = _COUNTERS.get(end)
        if counter is not None:
            setattr(self._metrics, counter, getattr(self._metrics, counter) + 1)
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            try:
                subscription.dispose()
            except Exception:
                logger.exception("disposing the subscription of %s failed", self._request.path)
        if not self._done.done():
            self._done.set_result(None)

    async def _close_response(self) -> None:
        """After the end: write what is left (and an error frame), then end the response."""
        if self._end in _GONE:
            return
        response = self._response
        try:
            if self._blocked is not None:
                await self._blocked  # under the send timeout its write armed
            frames = self._outbox.take_all()
            if self._end == "error":
                resume = resume_of(self._request)
                failure = failure_event(
                    self._error, self._request, self._policy, resume, self._last_id
                )
                frames.append(failure.encode())
            if frames:
                self._metrics.events_sent += len(frames)
                blocked = self._blocked = write_now(response, b"".join(frames))
                if blocked is not None:  # the last frames may not wait for a stuck client forever
                    self._arm_send_timeout()
                    await blocked
                    self._blocked = None
            await response.write_eof()
        except ConnectionError:
            pass  # the client is gone: nothing more to send

    def transport_lost(self) -> bool:
        """Whether the connection is closed or closing (for the disconnect watch)."""
        transport = self._request.transport
        return transport is None or transport.is_closing()

    def client_gone(self) -> None:
        """End the stream because its client went away (for the disconnect watch)."""
        self._finish("disconnected")

    def beat(self, now: float) -> float | None:
        """Ping if the stream has been silent for its heartbeat; return when to look again
        (for the loop's :class:`~rxsse.heartbeat.Heartbeats`).

        Writes only note the time: nothing to pay per event. The next look is a period after
        the last output, so a silent stream pings every period, not every other one.
        """
        heartbeat = self._heartbeat
        if heartbeat is None or self._end is not None:
            return None
        if now - self._last_output >= heartbeat - _TIMER_SLACK:
            if not self._outbox and self._blocked is None:  # frames waiting are output enough
                self._outbox.add_all([_HEARTBEAT_FRAME])
                self._last_flush = 0.0  # a ping is no hot stream: out at once
                self._queue_flush()
            return now + heartbeat
        return self._last_output + heartbeat


def _http_error(error: BaseException | None) -> web.HTTPException:
    """The HTTP response for a stream that failed before its headers were sent."""
    if isinstance(error, web.HTTPException):
        return error
    logger.error("event stream failed before it started", exc_info=error)
    return json_error(500, "internal server error")


# The running loop's scheduler, so time-based sources given no scheduler tick on it.
_scheduler = PerLoop(LoopScheduler).get
_watch = PerLoop(DisconnectWatch).get
_heartbeats = PerLoop(Heartbeats).get
_flusher = PerLoop(Flusher).get
