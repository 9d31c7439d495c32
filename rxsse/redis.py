"""``RedisBroker``: one stream of events for many server processes, on Redis Streams.

Install with ``pip install rxsse[redis]``; use with ``EventBus(RedisBroker("redis://..."))``.

Layout in Redis (all keys share the hash tag ``{prefix}``, so they live in one cluster slot):

- ``{rxsse}:seq``: the global sequence counter. An emit is one Lua script that increments it
  and appends the event, with id ``<seq>-0``, to the topic's stream (``XADD ... MAXLEN ~
  history``: the replay log) and to the firehose stream ``{rxsse}:all``. Being one atomic
  script, every process sees one total order of events, across topics.
- ``{rxsse}:t:<topic>``: the replay log of one topic, read with ``XRANGE`` when a client resumes.
  The emit script trims it in batches (``history`` plus a tenth) and records in
  ``{rxsse}:trimmed`` the newest id it cut, which tells a trimmed resume point (``reset``) from a
  quiet stretch of the topic. (Redis 7.0's ``XINFO STREAM`` does not report trims.)
- ``{rxsse}:all``: the firehose. Each process runs one reader task (one Redis connection, shared
  by all its subscribers) that follows it with ``XREAD BLOCK`` and hands entries to the bus in
  order. Topic patterns need that total order, which per-topic readers cannot give.
- ``{rxsse}:topics``: the set of topic names, to resolve patterns when replaying.
- ``{rxsse}:epoch``: a token set once per data set. A reader that reconnects and finds another
  token knows Redis came back without its data (the counter started over) and follows anew.

If Redis goes away the reader retries with backoff and resumes from its last id, so local
subscribers keep their subscriptions; emits fail (their awaitable raises) until it is back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import time
import uuid
from collections.abc import Awaitable
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .bus import Entry, Replay, Sink
from .event import MessageEvent
from .topics import TopicPattern

__all__ = ["RedisBroker"]

logger = logging.getLogger(__name__)

# KEYS: seq counter, topic stream, topics set, firehose, trimmed hash, epoch.
# ARGV: topic, data, type, history, firehose length, time (ms), trim slack, a fresh epoch token.
# The topic's log is trimmed in batches of `slack` entries (an approximate MAXLEN whose cut is
# known): the newest trimmed id is recorded, so a replay can tell a gap from an empty stretch.
_EMIT: Final = """
redis.call('SET', KEYS[6], ARGV[8], 'NX')
local seq = redis.call('INCR', KEYS[1])
local id = seq .. '-0'
redis.call('XADD', KEYS[2], id, 'd', ARGV[2], 'y', ARGV[3], 'ts', ARGV[6])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], id, 't', ARGV[1], 'd', ARGV[2], 'y', ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
local history = tonumber(ARGV[4])
local length = redis.call('XLEN', KEYS[2])
if length > history + tonumber(ARGV[7]) then
  local drop = length - history
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', drop + 1)
  redis.call('XTRIM', KEYS[2], 'MINID', oldest[drop + 1][1])
  redis.call('HSET', KEYS[5], ARGV[1], oldest[drop][1])
end
return id
"""
_UNAVAILABLE: Final = (RedisConnectionError, RedisTimeoutError, OSError)

_Pending = tuple[str, str, str, "asyncio.Future[str] | concurrent.futures.Future[str]"]


class RedisBroker:
    """A :class:`rxsse.Broker` on Redis Streams, for several processes serving one stream.

    Args:
        url: the Redis server, e.g. ``redis://127.0.0.1:6379/0``.
        prefix: the key prefix (and cluster hash tag); apps sharing it share their events.
        firehose: how many entries the firehose keeps (approximately): how far a process's
            reader may fall behind before it misses live events.
        block_ms: how long one ``XREAD`` waits before it is issued again.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "rxsse",
        firehose: int = 100_000,
        block_ms: int = 1000,
    ) -> None:
        self.url = url
        self._seq_key = f"{{{prefix}}}:seq"
        self._topics_key = f"{{{prefix}}}:topics"
        self._firehose_key = f"{{{prefix}}}:all"
        self._topic_prefix = f"{{{prefix}}}:t:"
        self._trimmed_key = f"{{{prefix}}}:trimmed"
        # A token set once per data set: if it changes, Redis lost its data and the sequence
        # counter started over, so the readers must too.
        self._epoch_key = f"{{{prefix}}}:epoch"
        self._epoch: str | None = None
        self._firehose = firehose
        self._block_ms = block_ms
        self._history = 1000
        self._max_age: float | None = None
        self._sink: Sink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Redis | None = None
        self._reader_client: Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox: list[_Pending] = []
        self._outbox_ready = asyncio.Event()
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, sink: Sink, *, history: int, max_age: float | None) -> Awaitable[int]:
        self._sink = sink
        self._history = history
        self._max_age = max_age
        return self._start()

    async def _start(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._outbox_ready = asyncio.Event()
        # No automatic retries: re-sending an emit could publish it twice.
        self._client = _connect(self.url)
        self._reader_client = _connect(self.url)
        self._epoch = await self._claim_epoch(self._client)
        head = await self._head(self._client)
        self._tasks = [
            self._loop.create_task(self._read(head), name="rxsse-redis-reader"),
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
        self._fail(self._outbox, RuntimeError("the Redis broker is closed"))
        self._outbox = []
        for client in (self._client, self._reader_client):
            if client is not None:
                await client.aclose()
        self._client = self._reader_client = None
        self._sink = None

    def event_id(self, seq: int) -> str:
        return f"{seq}-0"

    # -- publishing -------------------------------------------------------------------------------

    def publish(
        self, topic: str, data: Any, type: str | None
    ) -> asyncio.Future[str] | concurrent.futures.Future[str]:
        MessageEvent(None, type=type)  # the same checks a local event gets
        try:
            payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        except TypeError as exc:
            raise ValueError(
                f"the data emitted on {topic!r} cannot be sent as JSON: {exc}"
            ) from exc
        loop = self._loop
        if loop is None:
            raise RuntimeError("the Redis broker is not started: await bus.start() first")
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            future: asyncio.Future[str] = loop.create_future()
            self._enqueue((topic, payload, type or "", future))
            return future
        shared: concurrent.futures.Future[str] = concurrent.futures.Future()
        loop.call_soon_threadsafe(self._enqueue, (topic, payload, type or "", shared))
        return shared

    def _enqueue(self, item: _Pending) -> None:
        self._outbox.append(item)
        self._outbox_ready.set()

    async def _publish_loop(self) -> None:
        """Send queued emits in order, each batch in one round trip."""
        assert self._client is not None
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            batch, self._outbox = self._outbox, []
            if not batch:
                continue
            now_ms = str(int(time.time() * 1000))
            slack = max(1, self._history // 10)
            token = uuid.uuid4().hex
            pipe = self._client.pipeline(transaction=False)
            for topic, payload, type_, _ in batch:
                keys = [
                    self._seq_key,
                    self._topic_prefix + topic,
                    self._topics_key,
                    self._firehose_key,
                    self._trimmed_key,
                    self._epoch_key,
                ]
                args: list[str | int] = [
                    topic,
                    payload,
                    type_,
                    self._history,
                    self._firehose,
                    now_ms,
                    slack,
                    token,
                ]
                pipe.eval(_EMIT, len(keys), *keys, *args)
            try:
                ids = await pipe.execute()
            except Exception as exc:
                logger.error("emitting %d events to Redis failed: %s", len(batch), exc)
                self._fail(batch, exc)
                if self._closing:
                    return
                continue
            for (_, _, _, future), event_id in zip(batch, ids, strict=True):
                _resolve(future, event_id)

    @staticmethod
    def _fail(batch: list[_Pending], error: BaseException) -> None:
        for *_, future in batch:
            if not future.done():
                future.set_exception(error)

    # -- delivering -------------------------------------------------------------------------------

    async def _read(self, head: int) -> None:
        """Follow the firehose and hand each entry to the bus, reconnecting as needed."""
        assert self._reader_client is not None
        position = self.event_id(head)
        backoff = 0.05
        lost = False
        while True:
            try:
                if lost:
                    position = await self._resync(position)
                    lost = False
                    logger.info("reconnected to Redis at %s", self.url)
                response: Any = await self._reader_client.xread(
                    {self._firehose_key: position}, block=self._block_ms, count=1000
                )
                backoff = 0.05
            except _UNAVAILABLE as exc:
                if self._closing:
                    return
                if not lost:
                    logger.warning("lost Redis at %s (%s); retrying", self.url, exc)
                lost = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception:  # keep following whatever went wrong; subscribers stay
                if self._closing:
                    return
                logger.exception("reading events from Redis at %s failed; retrying", self.url)
                lost = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            for _stream, messages in response or ():
                for message_id, fields in messages:
                    position = message_id
                    self._deliver(message_id, fields)

    async def _resync(self, position: str) -> str:
        """After a reconnect: if Redis lost its data (a new epoch), follow it from the start."""
        assert self._reader_client is not None
        epoch = await self._claim_epoch(self._reader_client)
        if epoch == self._epoch:
            return position
        logger.warning("Redis at %s came back without its data; following it anew", self.url)
        self._epoch = epoch
        return "0-0"

    async def _claim_epoch(self, client: Redis) -> str:
        await client.set(self._epoch_key, uuid.uuid4().hex, nx=True)
        return str(await client.get(self._epoch_key))

    def _deliver(self, message_id: str, fields: dict[str, str]) -> None:
        try:
            event = MessageEvent(
                json.loads(fields["d"]), id=message_id, type=fields.get("y") or None
            )
            entry = Entry(_seq_of(message_id), fields["t"], event)
        except (KeyError, ValueError) as exc:
            logger.error("skipping malformed Redis entry %s: %s", message_id, exc)
            return
        if self._sink is not None:
            self._sink(entry)

    # -- replaying --------------------------------------------------------------------------------

    async def replay(self, pattern: TopicPattern, after: str, upto: int) -> Replay:
        client = self._client
        if client is None:
            raise RuntimeError("the Redis broker is not started: await bus.start() first")
        start = _parse(after)
        if start is None or start > await self._head(client):
            return None
        if pattern.is_exact:
            topics = [pattern.text]
        else:
            members = await client.smembers(self._topics_key)
            topics = sorted(str(t) for t in members if pattern.matches(str(t)))
        if not topics or upto <= start:
            return []
        pipe = client.pipeline(transaction=False)
        pipe.hmget(self._trimmed_key, topics)
        for topic in topics:
            pipe.xrange(self._topic_prefix + topic, min=f"{start + 1}-0", max=f"{upto}-0")
        trimmed, *ranges = await pipe.execute()
        if any(_seq_of(cut) > start for cut in trimmed if cut):
            return None  # entries after the resume point were trimmed away
        oldest_ms = None if self._max_age is None else (time.time() - self._max_age) * 1000
        found: list[Entry] = []
        for topic, messages in zip(topics, ranges, strict=True):
            for message_id, fields in messages:
                if oldest_ms is not None and float(fields.get("ts", 0)) < oldest_ms:
                    return None  # older than max_age: treated as gone from the log
                event = MessageEvent(
                    json.loads(fields["d"]), id=message_id, type=fields.get("y") or None
                )
                found.append(Entry(_seq_of(message_id), topic, event))
        found.sort(key=lambda entry: entry.seq)
        return found

    async def _head(self, client: Redis) -> int:
        value = await client.get(self._seq_key)
        return int(value or 0)


def _connect(url: str) -> Redis:
    return Redis.from_url(url, decode_responses=True, retry=Retry(NoBackoff(), 0))


def _resolve(future: asyncio.Future[str] | concurrent.futures.Future[str], value: str) -> None:
    if not future.done():
        future.set_result(value)


def _parse(event_id: str) -> int | None:
    seq, dash, tail = event_id.partition("-")
    if not dash or tail != "0" or not seq.isdigit():
        return None
    return int(seq)


def _seq_of(message_id: str) -> int:
    return int(message_id.partition("-")[0])
