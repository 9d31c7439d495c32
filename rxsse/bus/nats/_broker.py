"""``NatsBroker``: one stream of events for many server processes, on NATS JetStream.

Install with ``pip install rxsse[nats]``; use with ``EventBus(NatsBroker("nats://..."))``.

Layout in JetStream (one stream per prefix, ``RXSSE_<prefix>``, on the subjects ``<prefix>.>``):

- ``<prefix>.t.<topic>``: the events of one topic (see :mod:`rxsse.bus.nats._names`). The
  stream's sequence numbers are the bus's: one total order across topics, which patterns need.
  The stream keeps ``history + 1 + reader_slack`` messages per subject
  (``max_msgs_per_subject``) and, with ``max_age``, drops older ones; an event's id token
  (header ``k``) and type (``y``) travel with it, and its idempotency key as ``Nats-Msg-Id``,
  which JetStream de-duplicates for ``key_ttl`` seconds (its ``duplicate_window``).
- ``<prefix>.lost``: where readers record a loss (a stream restored from an older copy, or a
  store that lost its newest messages), so that a later resume from before it is a ``reset``.

Emits are published in batches of up to a thousand, each with a reply subject; JetStream's
acknowledgements come back in order, and a batch waits ``emit_timeout`` for all of them.
Each process runs one reader (a pull consumer that does not ack) from which the bus's
subscribers are served, and a resume reads its range with a consumer of its own.

The stream is made with these settings if it does not exist; if it does, it is used as it is
(its ``max_msgs_per_subject`` and ``max_age`` are what replays are checked against), so an
operator may give it replicas, limits or placement of their own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig, StreamInfo

from ..._checks import check_count, check_seconds
from .._broker import EmitError, EmitFailures, LogConfig, Outgoing, Replay, Sink, Span, resolve
from .._emit_queue import EmitQueue
from .._metrics import BusMetrics
from .._topics import TopicPattern
from ._batches import BatchPublisher
from ._names import BusNames
from ._reader import StreamReader
from ._replay import read_replay

logger = logging.getLogger("rxsse.nats")  # (the name users configure)

# At most this many emits, and about this many bytes, in one batch.
_BATCH: Final = 1000
_BATCH_BYTES: Final = 1 << 20
#: What a NATS that is away raises.
UNAVAILABLE: Final = (nats.errors.Error, OSError, TimeoutError)
# The shortest max_age JetStream takes.
_LEAST_MAX_AGE: Final = 0.1


class NatsBroker:
    """A :class:`rxsse.Broker` on NATS JetStream, for several processes serving one stream.

    Args:
        url: the NATS server, e.g. ``nats://127.0.0.1:4222`` (several, comma-separated, for a
            cluster; the client follows its reconnects).
        prefix: the subjects' prefix and the stream's name (``RXSSE_<prefix>``): letters,
            digits, ``_`` and ``-``. Apps sharing it share their events.
        block: seconds a reader's fetch waits before it checks the stream and asks again.
        emit_timeout: seconds a batch of emits (and a connection, a resume's read) may wait
            for NATS; then it fails with :class:`rxsse.EmitError` (the events may or may not
            have been published), and so does every emit queued behind it.
        max_pending_bytes: how much memory the emits waiting for NATS may hold (their data
            and topics, plus about 200 bytes each), the batch under way included. Beyond it,
            ``await bus.publish`` waits for room and ``bus.emit`` is refused (an
            :class:`rxsse.EmitError`, counted in ``bus.metrics.emits_rejected``).
        reader_slack: how many events per topic the stream keeps beyond the bus's
            ``history`` (resumes are held to ``history``): how far a process's reader may
            fall behind one topic in a burst before its subscribers get a ``reset``.

    Raises:
        ValueError: a bad value.
    """

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        prefix: str = "rxsse",
        block: float = 1.0,
        emit_timeout: float = 5.0,
        max_pending_bytes: int = 64 << 20,
        reader_slack: int = 10_000,
    ) -> None:
        check_seconds("block", block)
        check_seconds("emit_timeout", emit_timeout)
        check_count("max_pending_bytes", max_pending_bytes)
        check_count("reader_slack", reader_slack, minimum=0)
        self._reader_slack = reader_slack
        self.url = url
        self._names = BusNames(prefix)
        self._block = block
        self._emit_timeout = emit_timeout
        self._max_pending_bytes = max_pending_bytes
        self._log = LogConfig()
        self._metrics = BusMetrics()
        self._queue = EmitQueue(max_pending_bytes, EmitFailures(logger, self._metrics, url))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._connecting: asyncio.Task[JetStreamContext] | None = None
        self._reader: StreamReader | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._batches = BatchPublisher(self._names, url)
        self._closing = False
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------

    def bind(self, log: LogConfig, metrics: BusMetrics) -> None:
        if log.max_age is not None and log.max_age < _LEAST_MAX_AGE:
            raise ValueError(
                f"max_age on NATS must be at least {_LEAST_MAX_AGE:g} s (JetStream's least), "
                f"not {log.max_age!r}"
            )
        self._log = log
        self._metrics = metrics
        self._queue.failures = EmitFailures(logger, metrics, f"NATS at {self.url}")

    async def start(self, sink: Sink) -> int:
        """Connect, and start the reader: one consumer and one task following the stream."""
        # In a task of its own: the bus may run this coroutine's first step in its caller's
        # task (see Broker), and waiting with a timeout belongs to the task that waits.
        return await asyncio.get_running_loop().create_task(self._start(sink))

    async def _start(self, sink: Sink) -> int:
        self._closed = False
        loop = self._publishing_loop()
        js = await self._connection()
        assert self._nc is not None  # (connected)
        self._reader = reader = StreamReader(
            self._nc,
            js,
            self._names,
            sink,
            ensure_stream=lambda: self._ensure_stream(js),
            where=self.url,
            block=self._block,
            patience=self._emit_timeout,
            closing=lambda: self._closing,
        )
        try:
            head = await asyncio.wait_for(reader.start(), self._emit_timeout)
        except (TimeoutError, *UNAVAILABLE) as exc:
            raise EmitError(f"NATS at {self.url} did not answer: {exc!r}") from exc
        self._tasks.append(loop.create_task(reader.run(), name="rxsse-nats-reader"))
        return head

    def _publishing_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the publisher runs on, starting it on first use (and again on a new loop
        once the one it ran on is closed: its connection and tasks went with it)."""
        if self._loop is not None and not self._loop.is_closed():
            return self._loop
        if self._loop is not None:
            self._nc = self._js = self._connecting = self._reader = None
            self._tasks = []
            self._batches = BatchPublisher(self._names, self.url)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "a NATS bus publishes from its event loop: emit on the loop's thread, or "
                "from another thread once the bus has been used on its loop"
            ) from None
        self._loop = loop
        self._closing = False
        # (Its events belong to this loop; nothing waits in the one of a loop before.)
        self._queue = EmitQueue(self._max_pending_bytes, self._queue.failures)
        self._tasks.append(loop.create_task(self._publish_loop(), name="rxsse-nats-publisher"))
        return loop

    async def _connection(self) -> JetStreamContext:
        """The JetStream context, connecting (once, for every caller) when there is none."""
        if self._js is not None and self._nc is not None and not self._nc.is_closed:
            return self._js
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
        # Shielded: a caller that stops waiting does not cancel the others' connection.
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> JetStreamContext:
        if self._closed:
            raise EmitError("the NATS broker is closed")
        try:
            nc = await asyncio.wait_for(
                nats.connect(
                    self.url.split(","),
                    name="rxsse",
                    connect_timeout=max(1, round(self._emit_timeout)),
                    reconnect_time_wait=0.25,
                    max_reconnect_attempts=-1,  # a server that comes back is found again
                    # A server that stops answering is left within a few emit_timeouts: what
                    # was written for it meanwhile is bounded, not heaped in the socket.
                    ping_interval=max(1, round(self._emit_timeout)),
                    max_outstanding_pings=2,
                    error_cb=_log_error,
                    disconnected_cb=_disconnected,
                    reconnected_cb=_reconnected,
                ),
                self._emit_timeout,
            )
        except (TimeoutError, *UNAVAILABLE) as exc:
            raise EmitError(f"NATS at {self.url} cannot be reached: {exc!r}") from exc
        try:
            js = nc.jetstream(timeout=self._emit_timeout)
            await self._ensure_stream(js)
            await self._batches.attach(nc)
        except BaseException:
            await nc.close()
            raise
        if self._closed:  # closed while connecting
            await nc.close()
            raise EmitError("the NATS broker is closed")
        self._nc, self._js = nc, js
        return js

    async def _ensure_stream(self, js: JetStreamContext) -> StreamInfo:
        """The bus's stream, made with the bus's log settings if it does not exist."""
        names, log = self._names, self._log
        try:
            info = await js.stream_info(names.stream)
        except nats.js.errors.NotFoundError:
            window = log.key_ttl if log.max_age is None else min(log.key_ttl, log.max_age)
            config = StreamConfig(
                name=names.stream,
                subjects=[names.subjects],
                # The history, the point a resume is from, and slack for the readers.
                max_msgs_per_subject=log.history + 1 + self._reader_slack,
                max_age=log.max_age,
                duplicate_window=window,
                allow_direct=True,
                storage=StorageType.FILE,
                discard=DiscardPolicy.OLD,
            )
            try:
                info = await js.add_stream(config)
            except nats.js.errors.BadRequestError:  # another process made it first
                info = await js.stream_info(names.stream)
        if list(info.config.subjects or []) != [names.subjects]:
            raise EmitError(
                f"the NATS stream {names.stream} takes {info.config.subjects}, "
                f"not only {names.subjects!r}: its sequence would not be the bus's alone"
            )
        return info

    async def close(self) -> None:
        self._closed = True  # later emits fail at once instead of connecting again
        self._loop = None
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=5)
            for task in stuck:
                logger.error("the NATS task %s did not stop", task.get_name())
        self._tasks = []
        error = EmitError("the NATS broker is closed")
        self._queue.fail_all(error)
        self._batches.fail_all(error)
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        nc, self._nc, self._js, self._reader = self._nc, None, None, None
        if nc is not None:
            try:
                await asyncio.wait_for(nc.close(), self._emit_timeout)
            except Exception as exc:  # (nats-py may fail writing to a connection gone stale)
                logger.debug("closing the NATS connection: %r", exc)

    def event_id(self, seq: int) -> str:
        return self._reader.event_id(seq) if self._reader is not None else f"{seq}-0"

    # -- publishing -------------------------------------------------------------------------------

    async def publish(self, event: Outgoing) -> str:
        if self._queue.full(event):  # back-pressure: wait for room
            await self._queue.wait_for_room(event, lambda: self._closed)
        loop = asyncio.get_running_loop() if self._closed else self._publishing_loop()
        future: asyncio.Future[str] = loop.create_future()
        self._queue.offer(event, future, closed=self._closed, server="NATS")
        return await future

    def emit(self, event: Outgoing) -> None:
        if not self._closed:
            self._publishing_loop()
        self._queue.offer(event, None, closed=self._closed, server="NATS")

    async def _publish_loop(self) -> None:
        """Send queued emits in order, a batch at a time: all published, then all their
        acknowledgements awaited (for up to ``emit_timeout``)."""
        queue = self._queue
        while not self._closing:
            await queue.wait_ready()
            batch = queue.next_batch(_BATCH, _BATCH_BYTES)
            try:
                js = await self._connection()
                if self._batches.stream_missing:  # (deleted since: made again, a new token)
                    await self._ensure_stream(js)
                    self._batches.stream_missing = False
                assert self._nc is not None  # (connected)
                answers = await self._batches.send(self._nc, batch, self._emit_timeout)
            except Exception as exc:
                # Nothing answered in time: what waits behind this batch has waited as long.
                error = exc if isinstance(exc, EmitError) else EmitError(f"NATS: {exc!r}")
                queue.fail_with_the_rest(batch, error)
                continue
            queue.done_with(batch)
            emitted = 0
            for pending, answer in zip(batch, answers, strict=True):
                if isinstance(answer, EmitError):
                    queue.fail([pending], answer)
                    continue
                event_id, new = answer
                emitted += new
                if pending[1] is not None:
                    resolve(pending[1], event_id)
            self._metrics.emitted += emitted

    # -- replaying --------------------------------------------------------------------------------

    async def replay(self, pattern: TopicPattern, after: str, upto: int) -> Replay:
        # (In a task of its own, as start() is.)
        task = asyncio.get_running_loop().create_task(self._replay(Span(pattern, after, upto)))
        return await task

    async def _replay(self, span: Span) -> Replay:
        if self._reader is None:  # (the bus starts it first)
            return None
        try:
            js = await self._connection()
            assert self._nc is not None  # (connected)
            replay = read_replay(self._nc, js, self._names, span, self._log.history)
            return await asyncio.wait_for(replay, self._emit_timeout)
        except (TimeoutError, *UNAVAILABLE, EmitError) as exc:
            raise ConnectionError(f"NATS at {self.url}: {exc!r}") from exc


async def _log_error(error: Exception) -> None:
    logger.debug("NATS client: %r", error)


async def _disconnected() -> None:
    logger.info("disconnected from NATS; reconnecting")


async def _reconnected() -> None:
    logger.info("reconnected to NATS")
