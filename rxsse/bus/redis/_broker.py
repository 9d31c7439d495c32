"""``RedisBroker``: one stream of events for many server processes, on Redis Streams.

Install with ``pip install rxsse[redis]``; use with ``EventBus(RedisBroker("redis://..."))``.

Layout in Redis (all keys share the hash tag ``{prefix}``, so they live in one cluster slot):

- ``{rxsse}:seq``: the global sequence counter. An emit is one Lua script that increments it
  and appends the event, with stream id ``<seq>-0``, to the topic's stream (its replay log)
  and to the firehose stream ``{rxsse}:all``. Being one atomic script, every process sees one
  total order of events, across topics. The event's id is ``<seq>-<epoch>``.
- ``{rxsse}:epoch``, ``{rxsse}:epochs``, ``{rxsse}:run``: the current epoch, the list of epochs
  with the sequence number each began at, and the ``run_id`` of the Redis server the current
  epoch began under (see :mod:`rxsse.bus.redis._epochs`). Each round trip of emits starts with a
  *fence*: the first write after the server started (a restart, a failover, a restore) begins a
  new epoch after the last event it holds, so no id ever names two events.
- ``{rxsse}:t:<topic>``: the replay log of one topic, read with ``XRANGE`` when a client
  resumes. The emit script trims it in batches (``history`` plus a tenth) and records in
  ``{rxsse}:trimmed`` the newest id it cut, which tells a trimmed resume point (``reset``) from
  a quiet stretch of the topic.
- ``{rxsse}:all``: the firehose. Each process runs one reader task (one Redis connection,
  shared by all its subscribers) that follows it with ``XREAD BLOCK`` and hands entries to the
  bus in order. Topic patterns need that total order, which per-topic readers cannot give.
- ``{rxsse}:topics``: the set of topic names, to resolve patterns when replaying.
- ``{rxsse}:k:<key>``: the id an idempotent emit got, for ``key_ttl`` seconds.

If Redis goes away the reader retries with backoff and, when it is back, checks the epochs:
if nothing was lost it resumes from its last id, so local subscribers keep their streams;
if events were lost, every subscriber gets a ``reset`` where the loss begins, then the new
events. Emits fail with :class:`rxsse.EmitError` until Redis is back: at most ``max_pending``
wait for it, and when a round trip gets no answer within ``emit_timeout``, it fails with every
emit queued behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..._checks import check_count, check_seconds
from .._broker import EmitError, EmitFailures, LogConfig, Outgoing, Replay, Sink, Span, resolve
from .._metrics import BusMetrics
from .._topics import TopicPattern
from ._epochs import EMIT, FENCE
from ._firehose import UNAVAILABLE, Firehose, RedisKeys
from ._replay import read_replay
from ._state import RedisState

logger = logging.getLogger("rxsse.redis")  # (the name users configure)

# At most this many emits in one round trip: a long queue is sent in parts, in order.
_BATCH: Final = 1000
_Pending = tuple[Outgoing, "asyncio.Future[str]"]


class RedisBroker:
    """A :class:`rxsse.Broker` on Redis Streams, for several processes serving one stream.

    Args:
        url: the Redis server, e.g. ``redis://127.0.0.1:6379/0``.
        prefix: the key prefix (and cluster hash tag); apps sharing it share their events.
        firehose: how many entries the firehose keeps (approximately): how far a process's
            reader may fall behind before it misses live events.
        block_ms: how long one ``XREAD`` waits before it is issued again.
        emit_timeout: seconds a round trip of emits (and a resume's read) may wait for Redis;
            then it fails with :class:`rxsse.EmitError` (the events may or may not have been
            published), and so does every emit queued behind it.
        max_pending: how many emits may wait for Redis, the round trip under way included;
            more fail at once with :class:`rxsse.EmitError` (``bus.metrics.emits_rejected``).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "rxsse",
        firehose: int = 100_000,
        block_ms: int = 1000,
        emit_timeout: float = 5.0,
        max_pending: int = 10_000,
    ) -> None:
        check_seconds("emit_timeout", emit_timeout)
        check_count("max_pending", max_pending)
        self.url = url
        self._keys = RedisKeys(prefix)
        self._firehose_length = firehose
        self._block_ms = block_ms
        self._emit_timeout = emit_timeout
        self._max_pending = max_pending
        self._log = LogConfig()
        self._metrics = BusMetrics()
        self._failures = EmitFailures(logger, self._metrics, f"Redis at {url}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Redis | None = None
        self._reader: Firehose | None = None
        self._reader_client: Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox: list[_Pending] = []
        self._in_flight: list[_Pending] = []
        self._outbox_ready = asyncio.Event()
        self._closing = False
        self._closed = False
        self._state = RedisState(self._keys, lambda: _connect(url, emit_timeout))

    # -- lifecycle ------------------------------------------------------------------------------

    def bind(self, log: LogConfig, metrics: BusMetrics) -> None:
        self._log = log
        self._metrics = metrics
        self._failures = EmitFailures(logger, metrics, f"Redis at {self.url}")

    async def start(self, sink: Sink) -> int:
        """Connect the reader: one connection and one task following the firehose."""
        # In a task of its own: redis-py's timeouts belong to the task that enters them, and
        # the bus may run this coroutine's first step in its caller's task (see Broker).
        return await asyncio.get_running_loop().create_task(self._start(sink))

    async def _start(self, sink: Sink) -> int:
        self._closed = False
        loop = self._publishing_loop()
        self._reader_client = _connect(self.url, self._block_ms / 1000 + self._emit_timeout)
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
        self._outbox_ready = asyncio.Event()
        # No automatic retries: re-sending an emit could publish it twice.
        self._client = _connect(self.url, self._emit_timeout)
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
        if self._reader_client is not None:  # a blocked XREAD ends now, not in block_ms
            await self._reader_client.connection_pool.disconnect()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=5)
            for task in stuck:
                logger.error("the Redis task %s did not stop", task.get_name())
        self._tasks = []
        waiting = self._in_flight + self._outbox
        self._in_flight, self._outbox = [], []
        self._failures.fail((f for _, f in waiting), EmitError("the Redis broker is closed"))
        for client in (self._client, self._reader_client):
            if client is not None:
                await client.aclose()
        self._client = self._reader_client = self._reader = None
        await self._state.close()

    def event_id(self, seq: int) -> str:
        return self._reader.event_id(seq) if self._reader is not None else f"{seq}-0"

    def shared_state(self) -> RedisState:
        """Records for presence and producers, shared by every process of this prefix."""
        return self._state

    # -- publishing -------------------------------------------------------------------------------

    async def publish(self, event: Outgoing) -> str:
        return await self._enqueue(event)

    def _enqueue(self, event: Outgoing) -> asyncio.Future[str]:
        if self._closed:  # refused without connecting again
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._failures.fail((future,), EmitError("the Redis broker is closed"), rejected=True)
            return future
        future = self._publishing_loop().create_future()
        if len(self._outbox) + len(self._in_flight) >= self._max_pending:
            error = EmitError(f"{self._max_pending} emits are already waiting for Redis")
            self._failures.fail((future,), error, rejected=True)
        else:
            self._outbox.append((event, future))
            self._outbox_ready.set()
        return future

    async def _publish_loop(self) -> None:
        """Send queued emits in order, up to :data:`_BATCH` per round trip, each round trip
        behind a fence."""
        while not self._closing:
            if not self._outbox:
                await self._outbox_ready.wait()
                self._outbox_ready.clear()
                continue
            batch = self._in_flight = self._outbox[:_BATCH]
            self._outbox = self._outbox[_BATCH:]
            try:
                results = await _send(
                    self._client, self._keys, self._log, self._firehose_length, batch
                )
            except Exception as exc:
                # Redis did not answer: what waits behind this round trip has waited as long,
                # and fails with it rather than wait its own turn.
                failed = batch + self._outbox
                self._in_flight, self._outbox = [], []
                self._failures.fail((f for _, f in failed), EmitError(f"Redis: {exc}"))
                if self._closing:
                    return
                continue
            self._in_flight = []
            for (_, future), result in zip(batch, results, strict=True):
                if isinstance(result, Exception):  # this emit alone failed; the others stand
                    self._failures.fail((future,), EmitError(f"Redis refused an emit: {result}"))
                    continue
                event_id, new = result
                if new:
                    self._metrics.emitted += 1
                resolve(future, str(event_id))

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
    client: Redis | None, keys: RedisKeys, log: LogConfig, firehose: int, batch: list[_Pending]
) -> list[Any]:
    """One round trip: the fence, then the emits. Raises if the fence failed."""
    assert client is not None
    now_ms = str(int(time.time() * 1000))
    slack = max(1, log.history // 10)
    key_ttl = str(max(1, int(log.key_ttl * 1000)))
    pipe = client.pipeline(transaction=False)
    pipe.eval(FENCE, *keys.fence_args(_token()))
    for event, _ in batch:
        pipe.eval(
            EMIT,
            7,
            *(keys.seq, keys.topic(event.topic), keys.topics, keys.firehose),
            *(keys.trimmed, keys.epoch, keys.key(event.key or "")),
            *(event.topic, event.data, event.type or "", log.history),
            *(firehose, now_ms, slack, key_ttl if event.key else "0"),
        )
    fenced, *results = await pipe.execute(raise_on_error=False)
    if isinstance(fenced, Exception):
        raise fenced  # no emit may go out unfenced; they failed on the same error
    return results


def _connect(url: str, timeout: float) -> Redis:
    return Redis.from_url(
        url,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )


def _token() -> str:
    """A fresh epoch: short, as every id carries it."""
    return uuid.uuid4().hex[:8]
