"""``RedisBroker``: one stream of events for many server processes, on Redis Streams.

Install with ``pip install rxsse[redis]``; use with ``EventBus(RedisBroker("redis://..."))``.

Layout in Redis (all keys share the hash tag ``{prefix}``, so they live in one cluster slot):

- ``{rxsse}:seq``: the global sequence counter. An emit is one Lua script that increments it
  and appends the event, with stream id ``<seq>-0``, to the topic's stream (its replay log)
  and to the firehose stream ``{rxsse}:all``. Being one atomic script, every process sees one
  total order of events, across topics. The event's id is ``<seq>-<epoch>``.
- ``{rxsse}:epoch`` and ``{rxsse}:epochs``: the current epoch, and the sequence number each
  epoch started at (see :mod:`rxsse.epochs`). Before each batch of emits, a *fence* checks
  that Redis still holds the newest id this process has seen; if Redis came back empty or from
  an older snapshot, a new epoch starts, so no id ever names two events.
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
events. Emits fail with :class:`rxsse.EmitError` until Redis is back; at most ``max_pending``
wait for it, and none waits longer than ``emit_timeout``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
import uuid
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .broker import (
    EmitError,
    EmitFailures,
    Entry,
    LogConfig,
    Outgoing,
    PendingId,
    Replay,
    Sink,
    parse_event_id,
)
from .epochs import EMIT, FENCE, Epochs, contains, cover, diverges_after
from .event import MessageEvent
from .metrics import BusMetrics
from .topics import TopicPattern

__all__ = ["RedisBroker"]

logger = logging.getLogger(__name__)

_UNAVAILABLE: Final = (RedisConnectionError, RedisTimeoutError, OSError)
# At most this many emits in one round trip: a long queue is sent in parts, in order.
_BATCH: Final = 1000
_Pending = tuple[Outgoing, PendingId]


class RedisBroker:
    """A :class:`rxsse.Broker` on Redis Streams, for several processes serving one stream.

    Args:
        url: the Redis server, e.g. ``redis://127.0.0.1:6379/0``.
        prefix: the key prefix (and cluster hash tag); apps sharing it share their events.
        firehose: how many entries the firehose keeps (approximately): how far a process's
            reader may fall behind before it misses live events.
        block_ms: how long one ``XREAD`` waits before it is issued again.
        emit_timeout: seconds an emit (and a resume's read) may wait for Redis; then it fails
            with :class:`rxsse.EmitError` (the event may or may not have been published).
        max_pending: how many emits may wait for Redis; more fail at once with
            :class:`rxsse.EmitError` (counted in ``bus.metrics.emits_rejected``).
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
        if not emit_timeout > 0:
            raise ValueError(
                f"emit_timeout must be a positive number of seconds, not {emit_timeout!r}"
            )
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"max_pending must be a positive int, not {max_pending!r}")
        self.url = url
        tag = f"{{{prefix}}}"
        self._keys = _Keys(tag)
        self._firehose = firehose
        self._block_ms = block_ms
        self._emit_timeout = emit_timeout
        self._max_pending = max_pending
        self._log = LogConfig()
        self._metrics = BusMetrics()
        self._failures = EmitFailures(logger, self._metrics, f"Redis at {url}")
        self._sink: Sink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Redis | None = None
        self._reader_client: Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox: list[_Pending] = []
        self._outbox_ready = asyncio.Event()
        self._closing = False
        # The newest id this process has seen (acknowledged or read): the fence's floor.
        self._floor: tuple[str, int] | None = None
        # The epochs the reader delivered under, and where it is.
        self._epochs: dict[str, int] = {}
        self._seq = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, sink: Sink, log: LogConfig, metrics: BusMetrics) -> asyncio.Future[int]:
        self._sink = sink
        self._log = log
        self._metrics = metrics
        self._failures = EmitFailures(logger, metrics, f"Redis at {self.url}")
        return asyncio.ensure_future(self._start())

    async def _start(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._outbox_ready = asyncio.Event()
        # No automatic retries: re-sending an emit could publish it twice.
        self._client = _connect(self.url, self._emit_timeout)
        self._reader_client = _connect(self.url, self._block_ms / 1000 + self._emit_timeout)
        _, head = await self._fence(self._client)
        self._epochs = await self._read_epochs(self._client)
        self._seq = head
        self._tasks = [
            self._loop.create_task(self._read(), name="rxsse-redis-reader"),
            self._loop.create_task(self._publish_loop(), name="rxsse-redis-publisher"),
        ]
        return head

    async def close(self) -> None:
        self._loop = None  # later emits fail at once instead of waiting for a publisher
        self._closing = True  # the loops stop even if a client library turns the cancel into
        for task in self._tasks:  # a connection error (which they would retry)
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=5)
            for task in stuck:
                logger.error("the Redis task %s did not stop", task.get_name())
        self._tasks = []
        self._failures.fail((f for _, f in self._outbox), EmitError("the Redis broker is closed"))
        self._outbox = []
        for client in (self._client, self._reader_client):
            if client is not None:
                await client.aclose()
        self._client = self._reader_client = None
        self._sink = None

    def event_id(self, seq: int) -> str:
        return f"{seq}-{cover(self._epochs, seq) or '0'}"

    # -- publishing -------------------------------------------------------------------------------

    def publish(self, event: Outgoing) -> PendingId:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the Redis broker is not started: await bus.start() first")
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            future: asyncio.Future[str] = loop.create_future()
            self._enqueue((event, future))
            return future
        shared: concurrent.futures.Future[str] = concurrent.futures.Future()
        loop.call_soon_threadsafe(self._enqueue, (event, shared))
        return shared

    def _enqueue(self, item: _Pending) -> None:
        if len(self._outbox) >= self._max_pending:
            error = EmitError(f"{self._max_pending} emits are already waiting for Redis")
            self._failures.fail((item[1],), error, rejected=True)
            return
        self._outbox.append(item)
        self._outbox_ready.set()

    async def _publish_loop(self) -> None:
        """Send queued emits in order, up to :data:`_BATCH` in one round trip, after a fence."""
        assert self._client is not None
        keys = self._keys
        while True:
            if not self._outbox:
                await self._outbox_ready.wait()
                self._outbox_ready.clear()
                continue
            batch, self._outbox = self._outbox[:_BATCH], self._outbox[_BATCH:]
            now_ms = str(int(time.time() * 1000))
            slack = max(1, self._log.history // 10)
            key_ttl = str(int(self._log.key_ttl * 1000))
            token = _token()
            pipe = self._client.pipeline(transaction=False)
            pipe.eval(FENCE, 3, keys.seq, keys.epoch, keys.epochs, *self._floor_args(), token)
            for event, _ in batch:
                pipe.eval(
                    EMIT,
                    8,
                    keys.seq,
                    keys.topic(event.topic),
                    keys.topics,
                    keys.firehose,
                    keys.trimmed,
                    keys.epoch,
                    keys.epochs,
                    keys.key(event.key or ""),
                    event.topic,
                    event.data,
                    event.type or "",
                    self._log.history,
                    self._firehose,
                    now_ms,
                    slack,
                    token,
                    key_ttl if event.key else "0",
                )
            try:
                _, *results = await pipe.execute(raise_on_error=False)
            except Exception as exc:
                # Redis did not answer: what waits behind this round trip has waited as long,
                # and fails with it rather than wait its own turn.
                batch += self._outbox
                self._outbox = []
                self._failures.fail((f for _, f in batch), EmitError(f"Redis: {exc}"))
                if self._closing:
                    return
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if isinstance(result, Exception):  # this emit alone failed; the others stand
                    self._failures.fail((future,), EmitError(f"Redis refused an emit: {result}"))
                elif not future.done():
                    self._metrics.emitted += 1
                    self._observe(str(result))
                    future.set_result(str(result))

    def _observe(self, event_id: str) -> None:
        seq, _, epoch = event_id.partition("-")
        self._see(epoch, int(seq))

    def _see(self, epoch: str, seq: int) -> None:
        """Raise the floor to an id this process saw (a new epoch replaces it)."""
        floor = self._floor
        if floor is None or floor[0] != epoch or floor[1] < seq:
            self._floor = (epoch, seq)

    def _floor_args(self) -> tuple[str, str]:
        return ("", "") if self._floor is None else (self._floor[0], str(self._floor[1]))

    async def _fence(self, client: Redis) -> tuple[str, int]:
        """Start a new epoch if Redis no longer holds the newest id seen here; return the
        current epoch and head."""
        keys = self._keys
        epoch, head = await client.eval(
            FENCE, 3, keys.seq, keys.epoch, keys.epochs, *self._floor_args(), _token()
        )
        return str(epoch), int(head)

    async def _read_epochs(self, client: Redis) -> dict[str, int]:
        found = await client.hgetall(self._keys.epochs)
        return {str(epoch): int(start) for epoch, start in found.items()}

    # -- delivering -------------------------------------------------------------------------------

    async def _read(self) -> None:
        """Follow the firehose and hand each entry to the bus, reconnecting as needed."""
        client = self._reader_client
        assert client is not None
        backoff = 0.05
        lost = False
        while True:
            try:
                if lost:
                    await self._resync(client)
                    lost = False
                    logger.info("reconnected to Redis at %s", self.url)
                response: Any = await client.xread(
                    {self._keys.firehose: f"{self._seq}-0"}, block=self._block_ms, count=1000
                )
                backoff = 0.05
                if not response:  # quiet: is the data set still the one we follow?
                    if await client.get(self._keys.epoch) != _newest(self._epochs):
                        await self._resync(client)
                    continue
                for _stream, messages in response:
                    for message_id, fields in messages:
                        epoch = fields.get("e")
                        if epoch is not None and epoch not in self._epochs:
                            await self._resync(client)  # a new epoch: did it lose events?
                            break
                        self._deliver(message_id, fields)
                    else:
                        continue
                    break
            except _UNAVAILABLE as exc:
                if self._closing:
                    return
                if not lost:
                    logger.warning("lost Redis at %s (%s); retrying", self.url, exc)
                lost = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:  # keep following whatever went wrong; subscribers stay
                if self._closing:
                    return
                logger.exception("reading events from Redis at %s failed; retrying", self.url)
                lost = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _resync(self, client: Redis) -> None:
        """After a reconnect or a new epoch: if the data set lost events this reader delivered,
        send every subscriber a ``reset`` where the loss begins and follow the new data set
        from there; otherwise carry on where the reader was."""
        await self._fence(client)
        epochs = await self._read_epochs(client)
        kept = diverges_after(self._epochs, epochs, self._seq)
        self._epochs = epochs
        if kept < self._seq:
            logger.warning(
                "Redis at %s lost the events after %d (it came back empty or from an older "
                "snapshot); subscribers get a reset there",
                self.url,
                kept,
            )
            self._seq = kept
            reset = MessageEvent(
                {"reason": "events were lost by the event store"},
                type="reset",
                id=self.event_id(kept),
            )
            if self._sink is not None:
                self._sink(Entry(kept, None, reset))

    def _deliver(self, message_id: str, fields: dict[str, str]) -> None:
        seq = _seq_of(message_id)
        self._seq = seq
        epoch = fields.get("e") or cover(self._epochs, seq) or "0"
        self._see(epoch, seq)
        event_id = f"{seq}-{epoch}"
        topic = fields.get("t")
        try:
            if topic is None:
                raise ValueError("no topic")
            event = MessageEvent.from_json(fields["d"], id=event_id, type=fields.get("y") or None)
        except (KeyError, ValueError) as exc:
            # Never skipped silently: its topic's subscribers (all, if the topic is unknown)
            # are told to reload.
            logger.error("unreadable Redis entry %s: %s; sending a reset", message_id, exc)
            event = _unreadable(event_id)
        if self._sink is not None:
            self._sink(Entry(seq, topic, event))

    # -- replaying --------------------------------------------------------------------------------

    async def replay(self, pattern: TopicPattern, after: str, upto: int) -> Replay:
        client = self._client
        if client is None:
            raise RuntimeError("the Redis broker is not started: await bus.start() first")
        try:
            return await self._replay(client, pattern, after, upto)
        except _UNAVAILABLE as exc:  # the bus retries a resume while Redis is away
            raise ConnectionError(f"Redis at {self.url}: {exc}") from exc

    async def _replay(self, client: Redis, pattern: TopicPattern, after: str, upto: int) -> Replay:
        point = parse_event_id(after)
        if point is None:
            return None
        start, epoch = point
        keys = self._keys
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(keys.epochs)
        pipe.get(keys.seq)
        if not pattern.is_exact:
            pipe.smembers(keys.topics)
        found_epochs, head_value, *members = await pipe.execute()
        epochs = {str(e): int(s) for e, s in found_epochs.items()}
        head = int(head_value or 0)
        if not contains(epochs, start, epoch, head):
            return None
        if upto > head or diverges_after(self._epochs, epochs, upto) < upto:
            return None  # the data set changed under this process: its reader will reset
        if pattern.is_exact:
            topics = [pattern.text]
        else:
            topics = sorted(str(t) for t in members[0] if pattern.matches(str(t)))
        if not topics or upto <= start:
            return []
        pipe = client.pipeline(transaction=False)
        pipe.hmget(keys.trimmed, topics)
        for topic in topics:
            pipe.xrange(keys.topic(topic), min=f"{start + 1}-0", max=f"{upto}-0")
        trimmed, *ranges = await pipe.execute()
        if any(_seq_of(cut) > start for cut in trimmed if cut):
            return None  # entries after the resume point were trimmed away
        max_age = self._log.max_age
        oldest_ms = None if max_age is None else (time.time() - max_age) * 1000
        entries: list[Entry] = []
        for topic, messages in zip(topics, ranges, strict=True):
            for message_id, fields in messages:
                if oldest_ms is not None and float(fields.get("ts", 0)) < oldest_ms:
                    return None  # older than max_age: treated as gone from the log
                seq = _seq_of(message_id)
                event_id = f"{seq}-{fields.get('e') or cover(epochs, seq)}"
                try:
                    event = MessageEvent.from_json(
                        fields["d"], id=event_id, type=fields.get("y") or None
                    )
                except (KeyError, ValueError) as exc:
                    logger.error("unreadable Redis entry %s: %s; sending a reset", message_id, exc)
                    event = _unreadable(event_id)
                entries.append(Entry(seq, topic, event))
        entries.sort(key=lambda entry: entry.seq)
        return entries


class _Keys:
    """The names of the Redis keys under one hash tag."""

    __slots__ = ("epoch", "epochs", "firehose", "seq", "tag", "topics", "trimmed")

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.seq = f"{tag}:seq"
        self.topics = f"{tag}:topics"
        self.firehose = f"{tag}:all"
        self.trimmed = f"{tag}:trimmed"
        self.epoch = f"{tag}:epoch"
        self.epochs = f"{tag}:epochs"

    def topic(self, topic: str) -> str:
        return f"{self.tag}:t:{topic}"

    def key(self, key: str) -> str:
        return f"{self.tag}:k:{key}"


def _connect(url: str, timeout: float) -> Redis:
    return Redis.from_url(
        url,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )


def _newest(epochs: Epochs) -> str | None:
    return max(epochs, key=epochs.__getitem__, default=None)


def _token() -> str:
    """A fresh epoch: short, as every id carries it."""
    return uuid.uuid4().hex[:8]


def _unreadable(event_id: str) -> MessageEvent:
    return MessageEvent(
        {"reason": "an event in the log could not be read"}, type="reset", id=event_id
    )


def _seq_of(message_id: str) -> int:
    return int(message_id.partition("-")[0])
