"""The session: one request, one subscription, one end.

A session subscribes to its source, hands each emission to its ``FrameWriter``
as a frame, pings when the stream is silent, ends the stream after its lifetime, and ends
exactly once: completion, failure, shutdown, expiry, or its client gone. The end disposes the
subscription; then what is pending (and a failure event) is written, unless the client is gone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from aiohttp import web
from reactivex import Observable, abc
from reactivex.subject import Subject

from .._errors import json_error
from .._event import MessageEvent, event_of
from ._failures import failure_frame
from ._fanout import Batch, Follower, Following, follow_subject, is_plain_subject
from ._heartbeat import Heartbeats, Pulse
from ._metrics import End
from ._observing import LoopObserver
from ._options import StreamOptions
from ._scheduler import LoopScheduler
from ._sources import Attachable
from ._state import streams_of
from ._watch import DisconnectWatch
from ._wire import Wire
from ._writer import FrameWriter
from ._writing import PerLoop

logger = logging.getLogger("rxsse.stream")


class StreamSession(LoopObserver, Follower):
    """One open event stream: its subscription, its heartbeat and lifetime, and how it ended.

    Created by :func:`rxsse.stream`; exposed for introspection (see :func:`open_streams`).
    It is its source's observer: calls may arrive on any thread; all state changes happen on
    the loop.
    """

    __slots__ = (
        "__weakref__",
        "_done",
        "_end",
        "_error",
        "_expiry",
        "_heartbeat",
        "_last_id",
        "_options",
        "_policy",
        "_pulse",
        "_subscription",
        "_writer",
    )

    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        options: StreamOptions,
        encoding: str | None = None,
    ) -> None:
        # (Options are shared by a route's streams; a session holds only what it reads.)
        self._options = options
        self._heartbeat = options.heartbeat
        self._policy = options.failures
        # The writer holds the request, the app state and the loop for both.
        self._writer = writer = FrameWriter(
            Wire(request, response, encoding), options, streams_of(request), self
        )
        super().__init__()
        self._done: asyncio.Future[None] = writer.loop.create_future()
        self._subscription: abc.DisposableBase | None = None
        self._end: End | None = None
        self._error: BaseException | None = None
        self._last_id: str | None = None  # the last event id sent: where a failure resumes
        self._expiry: asyncio.TimerHandle | None = None  # the end of max_lifetime
        self._pulse: Pulse | None = None  # its heartbeat, once it is open

    @property
    def request(self) -> web.Request:
        """The request this stream answers."""
        return self._writer.request

    @property
    def ended(self) -> bool:
        """Whether the stream has ended (completed, failed, closed or disconnected)."""
        return self._end is not None

    @property
    def waiting_for_client(self) -> bool:
        """Whether a write waits for the client to take data (it reads slower than the
        stream sends)."""
        return self._writer.waiting

    async def run(
        self, source: Observable[Any], response: web.StreamResponse
    ) -> web.StreamResponse:
        """Subscribe, send the headers, stream frames until the end; return ``response``."""
        writer = self._writer
        streams = writer.state.streams  # the app's open streams
        metrics = writer.state.metrics
        opened = False
        try:
            self._subscribe(source)
            # One loop iteration for the Observable to fail at once (rx.throw is scheduled):
            # such a failure still gets a real HTTP status, as the headers are not sent yet.
            await asyncio.sleep(0)
            if self._end is End.ERROR and not writer.pending:
                raise _http_error(self._error)
            if not await writer.open(self._heartbeat):
                self._finish(End.DISCONNECTED)  # the client left (or a burst overflowed) first
                return response  # aiohttp finds the connection closed and moves on quietly
            opened = True
            metrics.open_streams += 1
            metrics.streams_total += 1
            streams.add(self)
            _watch(writer.loop).follow(streams)
            if self._heartbeat is not None and self._end is None:
                self._pulse = Pulse(writer, self._heartbeat)
                _heartbeats(writer.loop).add(self._pulse, writer.last_output + self._heartbeat)
            lifetime = self._options.lifetime()
            if lifetime is not None:
                self._expiry = writer.loop.call_later(lifetime, self._finish, End.EXPIRED)
            await self._done
            if not cast(End, self._end).client_gone:
                failure = None
                if self._end is End.ERROR:
                    failure = failure_frame(
                        self._error, writer.request, self._policy, self._last_id
                    )
                await writer.finish(failure)
        except asyncio.CancelledError:
            self._finish(End.CANCELLED)
            raise
        finally:
            self._finish(End.CANCELLED)  # no-op unless an unexpected exception got here
            if opened:
                metrics.open_streams -= 1
            if self._expiry is not None:
                self._expiry.cancel()
            writer.release(keep_write=self._end is End.COMPLETED)
        return response

    def close(self, shutdown_event: MessageEvent | None = None) -> None:
        """End the stream from the server side: send ``shutdown_event`` (by default the
        stream's option of that name; if any) after what is pending, then end the response."""
        if shutdown_event is None:
            shutdown_event = self._options.shutdown_event
        if shutdown_event is not None and self._end is None:
            if isinstance(self._subscription, Following):
                self._subscription.catch_up()  # what its source sent before, first
            self._next(shutdown_event)
        self._finish(End.SHUTDOWN)

    # -- the observer's side, on the loop (see LoopObserver) ------------------------------------

    def _loop(self) -> asyncio.AbstractEventLoop:
        return self._writer.loop

    def _completed(self) -> None:
        self._finish(End.COMPLETED)

    def take_frames(self, batch: Batch) -> None:
        if self._end is None:
            if batch.last_id is not None:
                self._last_id = batch.last_id
            self._writer.take_shared(batch)

    # -- for the disconnect watch and the writer ------------------------------------------------

    def transport_lost(self) -> bool:
        """Whether the connection is closed or closing (for the disconnect watch)."""
        transport = self._writer.request.transport
        return transport is None or transport.is_closing()

    def client_gone(self) -> None:
        """End the stream because its client went away (for the disconnect watch)."""
        self._finish(End.DISCONNECTED)

    def writer_lost(self, end: End) -> None:
        """End the stream because the writer lost its client (for the writer)."""
        self._finish(end)

    # -- internals -------------------------------------------------------------------------------

    def _subscribe(self, source: Observable[Any]) -> None:
        try:
            self._subscription = subscription = _subscribe(source, self)
        except Exception as exc:  # a subscribe function that raised
            return self._fail(exc)
        if self._end is not None:  # it ended while subscribing: late, but once
            subscription.dispose()

    def _next(self, value: Any) -> None:
        if self._end is not None:
            return
        try:
            event = event_of(value)
            frame = event.encode()
        except Exception as exc:  # unencodable data fails the stream, like any Rx error
            self._fail(exc)
            return
        if event.id is not None:
            self._last_id = event.id
        self._writer.push(frame)

    def _fail(self, error: BaseException) -> None:
        if self._end is None:
            self._error = error
            self._finish(End.ERROR)

    source_failed = _fail  # (the names a fan-out calls)
    source_completed = _completed

    def _finish(self, end: End) -> None:
        """Record how the stream ended and dispose the subscription: runs once per session."""
        if self._end is not None:
            return
        self._end = end
        writer = self._writer
        writer.stop()
        writer.state.streams.discard(self)  # shutdown and the watch see it go
        if self._pulse is not None:
            _heartbeats(writer.loop).discard(self._pulse)
        writer.state.metrics.record_end(end)
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            try:
                subscription.dispose()
            except Exception:
                logger.exception("disposing the subscription of %s failed", writer.request.path)
        if not self._done.done():
            self._done.set_result(None)


def _subscribe(source: Observable[Any], session: StreamSession) -> abc.DisposableBase:
    if is_plain_subject(source):  # one subscription and one encoding for all its streams
        return follow_subject(cast(Subject[Any], source), session)
    if isinstance(source, Attachable):  # rxsse's own: no wrappers to hold
        # (an observer by its methods; not a subclass, which would cost a __dict__)
        return source.attach(cast(abc.ObserverBase[Any], session))
    return source.subscribe(
        session.on_next, session.on_error, session.on_completed, scheduler=_scheduler()
    )


def _http_error(error: BaseException | None) -> web.HTTPException:
    """The HTTP response for a stream that failed before its headers were sent."""
    if isinstance(error, web.HTTPException):
        return error
    logger.error("event stream failed before it started", exc_info=error)
    return json_error(500, "internal server error")


# The running loop's scheduler, so time-based sources given no scheduler tick on it.
_scheduler = PerLoop(LoopScheduler).get
_watch = PerLoop(DisconnectWatch).of
_heartbeats = PerLoop(Heartbeats).of
