"""``RedisBroker``: one stream of events for many server processes, on Redis Streams.

Install with ``pip install rxsse[redis]``; use with ``EventBus(RedisBroker("redis://..."))``.

Layout in Redis (all keys share the hash tag ``{prefix}``, so they live in one cluster slot):

- ``{rxsse}:seq``: the global sequence counter. A round trip of emits (up to a thousand) is one
  Lua script (``EVALSHA``) that, for each, increments it and appends the event, with stream id
  ``<seq>-0``, to the topic's stream (its replay log) and to the firehose stream
  ``{rxsse}:all``. Being atomic, every process sees one total order of events, across topics.
  The event's id is ``<seq>-<epoch>``.
- ``{rxsse}:epoch``, ``{rxsse}:epochs``, ``{rxsse}:run``: the current epoch, the list of epochs
  with the sequence number each began at, and the ``run_id`` of the Redis server the current
  epoch began under (see :mod:`rxsse.bus.redis._epochs`). Each round trip of emits starts with a
  *fence*, in the same script: the first write after the server started (a restart, a
  failover, a restore) begins a new epoch after the last event it holds, so no id ever names
  two events.
- ``{rxsse}:t:<topic>``: the replay log of one topic, read with ``XRANGE`` when a client
  resumes. The emit script trims it in batches (``history`` plus a tenth) and records in
  ``{rxsse}:trimmed`` the newest id it cut, which tells a trimmed resume point (``reset``) from
  a quiet stretch of the topic.
- ``{rxsse}:all``: the firehose. Each process runs one reader task (one Redis connection,
  shared by all its subscribers) that follows it with ``XREAD BLOCK`` and hands entries to the
  bus in order. Topic patterns need that total order, which per-topic readers cannot give.
- ``{rxsse}:topics``: the set of topic names, to resolve patterns when replaying.
- ``{rxsse}:k:<key>``: the id an idempotent emit got, for ``key_ttl`` seconds.
- ``{rxsse}:lost``: the points after which a data set lost events (a failover to a replica
  that was behind), recorded by the readers that saw the loss, so that a later resume from
  before such a point is a ``reset`` too.

If Redis goes away the reader retries with backoff and, when it is back, checks the epochs:
if nothing was lost it resumes from its last id, so local subscribers keep their streams;
if events were lost, every subscriber gets a ``reset`` where the loss begins, then the new
events. Emits fail with :class:`rxsse.EmitError` until Redis is back: at most
``max_pending_bytes`` of events wait for it (``await publish`` waits for room, ``emit`` beyond
it is refused), and when a round trip gets no answer within ``emit_timeout``, it fails with
every emit queued behind it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Final, Never

from redis.commands.core import AsyncScript

from ..._checks import check_count, check_seconds
from .._broker import EmitError, EmitFailures, LogConfig, Outgoing, Replay, Sink, Span, resolve
from .._emit_queue import EmitQueue, Pending
from .._metrics import BusMetrics
from .._topics import TopicPattern
from ._connect import Client, connect, disconnect
from ._epochs import EMIT_BATCH
from ._firehose import UNAVAILABLE, Firehose, RedisKeys
from ._replay import read_replay
from ._state import RedisState

logger = logging.getLogger("rxsse.redis")  # (the name users configure)

# At most this many emits, and about this many bytes, in one round trip: a long queue is sent
# in parts, in order (a script holds Redis for its whole batch).
_BATCH: Final = 1000
_BATCH_BYTES: Final = 1 << 20


class RedisBroker:
    """A :class:`rxsse.Broker` on Redis Streams, for several processes serving one stream.

    Args:
        url: the Redis server, e.g. ``redis://127.0.0.1:6379/0``; the primary Redis
            Sentinel names: ``redis+sentinel://host:port[,host:port...]/service[/db]``
            (followed across a failover); or a Redis Cluster:
            ``redis+cluster://host:port[,host:port...]`` (the bus lives in its prefix's slot).
        prefix: the key prefix (and cluster hash tag); apps sharing it share their events.
            On a cluster, buses of different prefixes spread over the primaries.
        firehose: how many entries the firehose keeps (approximately): how far a process's
            reader may fall behind before it misses live events.
        block_ms: how long one ``XREAD`` waits before it is issued again.
        emit_timeout: seconds a round trip of emits (and a resume's read) may wait for Redis;
            then it fails with :class:`rxsse.EmitError` (the events may or may not have been
            published), and so does every emit queued behind it.
        max_pending_bytes: how much memory the emits waiting for Redis may hold (their data
            and topics, plus about 200 bytes each), the round trip under way included. Beyond
            it, ``await bus.publish`` waits for room (back-pressure) and ``bus.emit``, which
            cannot wait, is refused: an :class:`rxsse.EmitError`, counted in
            ``bus.metrics.emits_rejected`` and logged.

    Raises:
        ValueError: a bad value.
        TypeError: ``max_pending=`` (a count of earlier versions): it is
            ``max_pending_bytes=`` now.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "rxsse",
        firehose: int = 100_000,
        block_ms: int = 1000,
        emit_timeout: float = 5.0,
        max_pending_bytes: int = 64 << 20,
        **removed: Never,
    ) -> None:
        if "max_pending" in removed:
            raise TypeError(
                "RedisBroker(max_pending=...) is now RedisBroker(max_pending_bytes=...): "
                "a bound on memory, not a count"
            )
        if removed:
            raise TypeError(
                f"RedisBroker() got an unexpected keyword argument {next(iter(removed))!r}"
            )
        check_seconds("emit_timeout", emit_timeout)
        check_count("max_pending_bytes", max_pending_bytes)
        self.url = url
        self._keys = RedisKeys(prefix)
        self._firehose_length = firehose
        self._block_ms = block_ms
        self._emit_timeout = emit_timeout
        self._max_pending_bytes = max_pending_bytes
        self._log = LogConfig()
        self._metrics = BusMetrics()
        failures = EmitFailures(logger, self._metrics, f"Redis at {url}")
        self._outbox = EmitQueue(max_pending_bytes, failures)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Client | None = None
        self._reader: Firehose | None = None
        self._reader_client: Client | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._closed = False
        self._state = RedisState(self._keys, lambda: connect(url, emit_timeout))

    # -- lifecycle ------------------------------------------------------------------------------

    def bind(self, log: LogConfig, metrics: BusMetrics) -> None:
        self._log = log
        self._metrics = metrics
        self._outbox.failures = EmitFailures(logger, metrics, f"Redis at {self.url}")

    async def start(self, sink: Sink) -> int:
        """Connect the reader: one connection and one task following the firehose."""
        # In a task of its own: redis-py's timeouts belong to the task that enters them, and
        # the bus may run this coroutine's first step in its caller's task (see Broker).
        return await asyncio.get_running_loop().create_task(self._start(sink))

    async def _start(self, sink: Sink) -> int:
        self._closed = False
        loop = self._publishing_loop()
        self._reader_client = connect(self.url, self._block_ms / 1000 + self._emit_timeout)
        self._reader = Firehose(
            self._reader_client,
            self._keys,
            sink,
            url=self.url,
            block_ms=self._block_ms,
            token=_token,
            closing=lambda: self._closing,
        )
        head = await self._reader.start()
        self._tasks.append(loop.create_task(self._reader.run(), name="rxsse-redis-reader"))
        return head

    def _publishing_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the publisher runs on, connecting it on first use."""
        if self._loop is not None:
            return self._loop
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "a Redis bus publishes from its event loop: emit on the loop's thread, or "
                "from another thread once the bus has been used on its loop"
            ) from None
        self._loop = loop
        self._closing = False
        # (Its events belong to this loop; nothing waits in the one of a loop before.)
        self._outbox = EmitQueue(self._max_pending_bytes, self._outbox.failures)
        # No automatic retries: re-sending an emit could publish it twice.
        self._client = client = connect(self.url, self._emit_timeout)
        # EVALSHA, loading the script again (and only then) when a Redis lost it: NOSCRIPT
        # means nothing ran, so sending it again publishes nothing twice.
        self._emit_batch = client.register_script(EMIT_BATCH)
        self._tasks.append(loop.create_task(self._publish_loop(), name="rxsse-redis-publisher"))
        return loop

    async def close(self) -> None:
        self._closed = True  # later emits fail at once instead of connecting again
        self._loop = None
        # The loops stop even if the client library turns the cancel into a connection error
        # (which they would retry) or, as redis-py may while a reply is arriving, swallows it.
        self._closing = True
        for task in self._tasks:
            task.cancel()
        pool = getattr(self._reader_client, "connection_pool", None)  # (not a cluster's)
        if pool is not None:  # a blocked XREAD ends now, not in block_ms
            await pool.disconnect()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=5)
            for task in stuck:
                logger.error("the Redis task %s did not stop", task.get_name())
        self._tasks = []
        self._outbox.fail_all(EmitError("the Redis broker is closed"))
        for client in (self._client, self._reader_client):
            if client is not None:
                await disconnect(client)
        self._client = self._reader_client = self._reader = None
        await self._state.close()

    def event_id(self, seq: int) -> str:
        return self._reader.event_id(seq) if self._reader is not None else f"{seq}-0"

    def shared_state(self) -> RedisState:
        """Records for presence and producers, shared by every process of this prefix."""
        return self._state

    # -- publishing -------------------------------------------------------------------------------

    async def publish(self, event: Outgoing) -> str:
        if self._outbox.full(event):  # back-pressure: wait for room
            await self._outbox.wait_for_room(event, lambda: self._closed)
        loop = asyncio.get_running_loop() if self._closed else self._publishing_loop()
        future: asyncio.Future[str] = loop.create_future()
        self._outbox.offer(event, future, closed=self._closed, server="Redis")
        return await future

    def emit(self, event: Outgoing) -> None:
        if not self._closed:
            self._publishing_loop()
        self._outbox.offer(event, None, closed=self._closed, server="Redis")

    async def _publish_loop(self) -> None:
        """Send queued emits in order, a batch per round trip (one script: the fence, then
        the emits)."""
        outbox = self._outbox
        while not self._closing:
            await outbox.wait_ready()
            batch = outbox.next_batch(_BATCH, _BATCH_BYTES)
            try:
                answers = await _send(
                    self._emit_batch, self._keys, self._log, self._firehose_length, batch
                )
            except Exception as exc:
                outbox.fail_with_the_rest(batch, EmitError(f"Redis: {exc}"))
                if self._closing:
                    return
                continue
            outbox.done_with(batch)
            results, failure = answers
            if failure is not None:  # a command failed midway: what came after did not go out
                error = EmitError(f"Redis refused the emits of a round trip: {failure}")
                outbox.fail(batch[len(results) :], error)
            emitted = 0
            for (event, future), (event_id, new) in zip(batch, results, strict=False):
                if new < 0:  # this emit alone failed; the others stand
                    error = EmitError(f"Redis refused an emit: {event_id}")
                    outbox.fail([(event, future)], error)
                    continue
                emitted += new
                if future is not None:
                    resolve(future, event_id)
            self._metrics.emitted += emitted

    # -- replaying --------------------------------------------------------------------------------

    async def replay(self, pattern: TopicPattern, after: str, upto: int) -> Replay:
        # (In a task of its own, as start() is.)
        task = asyncio.get_running_loop().create_task(self._replay(Span(pattern, after, upto)))
        return await task

    async def _replay(self, span: Span) -> Replay:
        self._publishing_loop()
        if self._client is None or self._reader is None:  # (the bus starts it first)
            return None
        try:
            return await read_replay(
                self._client, self._keys, self._reader.epochs, self._log.max_age, span
            )
        except UNAVAILABLE as exc:  # the bus retries a resume while Redis is away
            raise ConnectionError(f"Redis at {self.url}: {exc}") from exc


async def _send(
    script: AsyncScript, keys: RedisKeys, log: LogConfig, firehose: int, batch: list[Pending]
) -> tuple[list[tuple[str, int]], str | None]:
    """One round trip, one script: the fence, then the emits. Returns each emit's ``(id,
    new)`` (``new``: 1 published, 0 its key was published before, -1 it failed, the id the
    error), and the error that stopped the script after those, if one did (the others did
    not go out). Raises if nothing ran (the fence failed, or Redis did not answer)."""
    names = [keys.seq, keys.epoch, keys.epochs, keys.run, keys.topics, keys.firehose]
    names.append(keys.trimmed)
    index: dict[str, int] = {}
    slack = max(1, log.history // 10)
    key_ttl = max(1, int(log.key_ttl * 1000))
    emits: list[tuple[int, int, str, str, str]] = []
    for event, _ in batch:
        log_key = keys.topic(event.topic)
        at = index.get(log_key)
        if at is None:
            names.append(log_key)
            at = index[log_key] = len(names)  # (Lua counts from 1)
        key_at = 0
        if event.key:
            name = keys.key(event.key)
            key_at = index.get(name, 0)
            if not key_at:
                names.append(name)
                key_at = index[name] = len(names)
        emits.append((at, key_at, event.topic, event.data, event.type or ""))
    now_ms = int(time.time() * 1000)
    batch_json = json.dumps(emits, ensure_ascii=False, separators=(",", ":"))
    args = (_token(), log.history, firehose, now_ms, slack, key_ttl, batch_json)
    reply = await script(keys=names, args=args)
    answers = [(str(reply[i]), int(reply[i + 1])) for i in range(2, len(reply), 2)]
    return answers, (str(reply[1]) or None)


def _token() -> str:
    """A fresh epoch: short, as every id carries it."""
    return uuid.uuid4().hex[:8]
