"""The frame writer: what a stream's response sees. It owns the response and the frames that
wait for it: sends the headers, writes what is pending (coalesced, in bounded chunks), waits
for a slow client under the send timeout, and drops a client that lags or takes nothing."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from .._event import comment_line
from ._coalescing import MAX_BYTES, Coalescer
from ._fanout import Batch
from ._metrics import End
from ._options import StreamOptions
from ._outbox import Outbox
from ._state import AppStreams
from ._wire import Wire
from ._writing import Flusher, PerLoop

if TYPE_CHECKING:  # (its session, told when the client is gone: for types only)
    from ._session import StreamSession

logger = logging.getLogger("rxsse.stream")

# Comment lines with no blank line after them: every client reads them as nothing.
_HEARTBEAT_FRAME: Final = comment_line("ping")
# Written with the headers: a proxy that holds the headers until the first body byte (nginx
# over HTTP/2) passes them on at once, so an idle stream opens at once.
_OPENING_FRAME: Final = comment_line("open")
# At most this many bytes go into one write (a burst is written in parts as the client takes
# them, so a join never copies more than this).
_WRITE_CHUNK: Final = 256 * 1024


class FrameWriter:
    """The response of one stream and the frames waiting for it.

    A frame is written now when the headers are sent, no write is waiting for the client,
    and the stream is not hot (see :meth:`flush`); otherwise it waits in the outbox, whose
    bounds apply only to frames that arrive while a write waits (lag, not bursts).
    """

    __slots__ = (
        "_blocked",
        "_flusher",
        "_hot",
        "_limits",
        "_open",
        "_outbox",
        "_owner",
        "_queued",
        "_stopped",
        "_wire",
        "last_output",
        "loop",
        "request",
        "state",
    )

    def __init__(
        self, wire: Wire, limits: StreamOptions, state: AppStreams, owner: StreamSession
    ) -> None:
        # (The session reads these three here: a stream does not hold them twice.)
        self.request = wire.request
        self.state = state
        self.loop = asyncio.get_running_loop()
        self._wire = wire
        self._limits = limits
        self._owner: StreamSession | None = owner  # let go at stop(): no cycle outlives the stream
        self._flusher = _flusher()
        self._outbox = Outbox(limits)
        self._open = False  # headers sent: frames may be written
        self._stopped = False  # the stream ended: only finish() writes now
        self._queued = False  # waiting in the flusher's queue
        self._blocked: _BlockedWrite | None = None  # a write waiting for a slow client
        self._hot = Coalescer(self.loop)
        self.last_output = self.loop.time()  # when the client last got bytes (heartbeat)

    @property
    def pending(self) -> bool:
        """Whether frames wait to be written."""
        return bool(self._outbox)

    @property
    def waiting(self) -> bool:
        """Whether a write waits for the client to take data."""
        return self._blocked is not None

    async def open(self, heartbeat: float | None) -> bool:
        """Send the headers with a first line (or what is already pending); False if the
        client left before that."""
        if not await self._wire.open(self._limits, heartbeat):
            return False
        self._open = True
        self.last_output = self.loop.time()
        if self._outbox:
            self._queue_flush()
        else:
            self._wire.write(_OPENING_FRAME)  # a few bytes: never waits
        return True

    def push(self, frame: bytes) -> None:
        """Queue ``frame``; write it in this loop iteration unless the stream must wait."""
        outbox = self._outbox
        if self._blocked is not None or not outbox.add_now(frame):  # lag: the bounds apply
            if outbox.add(frame, lagging=self._blocked is not None):
                logger.info("closing the stream of %s: its client fell behind", self.request.remote)
                return self._drop_client(End.OVERFLOW)
            if outbox.dropped:
                self.state.metrics.frames_dropped[self._limits.overflow] += outbox.dropped
                outbox.dropped = 0
            if self._blocked is not None:
                return
        if self._queued or not self._open:
            return
        if not self._hot.holding or outbox.bytes >= MAX_BYTES:
            self._queued = True
            self._flusher.add(self)

    def take_shared(self, batch: Batch) -> None:
        """Frames a fan-out joined once for all its streams: written as they are if nothing
        waits here, else queued like :meth:`push`'s."""
        if self._outbox or self._blocked is not None or self._stopped or not self._wire.started:
            for frame in batch.frames:
                self.push(frame)
            return
        self._hot.last = self.last_output = batch.now
        self.state.metrics.events_sent += len(batch.frames)
        if not self._wire.write_now(batch.data, batch.chunk):  # (the common case in one call)
            self._write(batch.data, batch.chunk)

    def ping(self) -> None:
        """Send a heartbeat line, unless frames are waiting (which are output enough) or the
        stream ended."""
        if not self._outbox and self._blocked is None and not self._stopped:
            self._outbox.add_all([_HEARTBEAT_FRAME])
            self._hot.last = 0.0  # a ping is no hot stream: out at once
            self._queue_flush()

    def flush(self) -> None:
        """Write the pending frames, in one write unless they are many (the flusher calls this
        once per iteration), unless the stream is hot (see rxsse.streaming._coalescing)."""
        self._queued = False
        outbox = self._outbox
        # (After the end, finish() writes what is left: here as well would send it twice.)
        if not outbox or self._blocked is not None or self._stopped:
            return
        if self._hot.hold(outbox.bytes, self.flush):
            return
        self.last_output = self._hot.last
        while outbox and self._blocked is None and not self._stopped:
            waiting = len(outbox)
            data = outbox.take(_WRITE_CHUNK)
            self.state.metrics.events_sent += waiting - len(outbox)
            self._write(data)

    def stop(self) -> None:
        """The stream ended: write nothing more until :meth:`finish`, forget the owner."""
        self._stopped = True
        self._owner = None

    async def finish(self, last_frame: bytes | None) -> None:
        """After the end (a client still there): write what is left and ``last_frame``, then
        end the response."""
        wire = self._wire
        try:
            if self._blocked is not None:
                await self._blocked.task  # under the send timeout
            frames = self._outbox.take_all()
            if last_frame is not None:
                frames.append(last_frame)
            if frames:
                self.state.metrics.events_sent += len(frames)
                task = wire.write(b"".join(frames))
                if task is not None:  # the last frames may not wait for a stuck client forever
                    self._blocked = _BlockedWrite(self, task)
                    await self._blocked.finish()
            await wire.write_eof()
        except ConnectionError:
            pass  # the client is gone: nothing more to send

    def release(self, *, keep_write: bool) -> None:
        """Cancel the timers, and the waiting write unless ``keep_write`` (when the handler
        returns)."""
        self._hot.cancel()
        blocked = self._blocked
        if blocked is not None:
            blocked.disarm()
            if not keep_write:
                blocked.task.cancel()

    # -- internals ------------------------------------------------------------------------------

    def _write(self, data: bytes, chunk: bytes | None = None) -> None:
        try:
            task = self._wire.write(data, chunk)
        except ConnectionError:
            return self._lost(End.DISCONNECTED)
        if task is not None:  # a slow client: resume once the transport drains
            self._blocked = _BlockedWrite(self, task)
            task.add_done_callback(self._drained)

    def _lost(self, end: End) -> None:
        if self._owner is not None:
            self._owner.writer_lost(end)

    def _drop_client(self, end: End) -> None:
        """End the stream and close the connection at once, dropping what is still queued for
        the client (in our buffer, the transport and the kernel)."""
        self._lost(end)
        self._outbox.clear()
        self._wire.abort()

    def _queue_flush(self) -> None:
        if not self._queued:
            self._queued = True
            self._flusher.add(self)

    def _drained(self, task: asyncio.Task[None]) -> None:
        blocked, self._blocked = self._blocked, None
        if blocked is not None:
            blocked.disarm()
        if task.cancelled():
            return
        if task.exception() is not None:
            self._lost(End.DISCONNECTED)
        elif self._outbox and not self._stopped:
            self._queue_flush()


class _BlockedWrite:
    """A write waiting for a slow client, under the send timeout: the client must take some of
    what waits in the transport within ``send_timeout`` seconds, and again each period after,
    or be dropped. It exists only while the client is slow: an idle stream pays nothing."""

    __slots__ = ("backlog", "task", "timer", "writer")

    def __init__(self, writer: FrameWriter, task: asyncio.Task[None]) -> None:
        self.writer = writer
        self.task = task
        self.timer: asyncio.TimerHandle | None = None
        self.backlog = 0  # bytes waiting in the transport when the timer was (re)armed
        self._arm()

    async def finish(self) -> None:
        """Wait for the write, under the send timeout."""
        try:
            await self.task
        finally:
            self.disarm()
            self.writer._blocked = None

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _arm(self) -> None:
        writer = self.writer
        timeout = writer._limits.send_timeout
        if timeout is not None:
            self.backlog = writer._wire.backlog()
            self.timer = writer.loop.call_later(timeout, self._timed_out)

    def _timed_out(self) -> None:
        self.timer = None
        writer = self.writer
        if writer._wire.backlog() < self.backlog:  # slow, but it took some: another period
            self._arm()
            return
        logger.info(
            "dropping the stream of %s: its client took no data for %s s",
            writer.request.remote,
            writer._limits.send_timeout,
        )
        # Counted here, not by the end: a stream already ending (shutdown, completion) may be
        # the one stuck writing its last frames.
        writer.state.metrics.send_timeouts += 1
        writer._drop_client(End.TIMEOUT)


_flusher = PerLoop(Flusher).get
