"""``MemoryBroker``: the event bus's default broker, for one process, with nothing to set up."""

from __future__ import annotations

import collections
import secrets
import threading
import time
from typing import Final

from .._event import own_json_event
from ._broker import Entry, LogConfig, Outgoing, Replay, Sink, parse_event_id
from ._metrics import BusMetrics
from ._shared import MemoryState
from ._topics import TopicPattern

#: How many idempotency keys are remembered at most (the oldest go first), besides their TTL.
MAX_KEYS: Final = 100_000


class _TopicLog:
    __slots__ = ("entries", "times", "trimmed_upto")

    def __init__(self, history: int) -> None:
        self.entries: collections.deque[Entry] = collections.deque(maxlen=history)
        self.times: collections.deque[float] = collections.deque(maxlen=history)
        self.trimmed_upto = 0  # the highest sequence number that left this log

    def append(self, entry: Entry, now: float) -> None:
        if len(self.entries) == self.entries.maxlen:
            self.trimmed_upto = self.entries[0].seq
        self.entries.append(entry)
        self.times.append(now)

    def expire(self, oldest: float) -> None:
        while self.times and self.times[0] < oldest:
            self.times.popleft()
            self.trimmed_upto = self.entries.popleft().seq


class _Keys:
    """The idempotency keys of recent emits and the ids they got, for ``ttl`` seconds (and at
    most :data:`MAX_KEYS` of them)."""

    __slots__ = ("_ids", "ttl")

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._ids: collections.OrderedDict[str, tuple[str, float]] = collections.OrderedDict()

    def get(self, key: str, now: float) -> str | None:
        found = self._ids.get(key)
        return found[0] if found is not None and found[1] > now else None

    def add(self, key: str, event_id: str, now: float) -> None:
        ids = self._ids
        ids.pop(key, None)  # a key seen again (after it expired) is the newest
        ids[key] = (event_id, now + self.ttl)
        while ids and (len(ids) > MAX_KEYS or next(iter(ids.values()))[1] <= now):
            ids.popitem(last=False)


class MemoryBroker:
    """The default broker: one process, no setup. Ids are ``"<seq>-<epoch>"`` where the epoch
    is random per broker, so an id from an earlier process is recognised as unknown.

    Its coroutines never wait, so the bus runs them to the end at once: an emit is published
    and delivered before ``emit`` returns. It may be published to from any thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self._epoch = secrets.token_hex(3)
        self._logs: dict[str, _TopicLog] = {}
        self._sink: Sink | None = None
        self._log = LogConfig()
        self._keys = _Keys(self._log.key_ttl)
        self._metrics = BusMetrics()
        self._outgoing: collections.deque[Entry] = collections.deque()  # for the sink, in order
        self._delivering = False  # a thread is handing _outgoing to the sink

    def bind(self, log: LogConfig, metrics: BusMetrics) -> None:
        with self._lock:
            self._log = log
            self._keys.ttl = log.key_ttl
            self._metrics = metrics

    async def start(self, sink: Sink) -> int:
        with self._lock:
            self._sink = sink
            return self._seq

    def event_id(self, seq: int) -> str:
        return f"{seq}-{self._epoch}"

    def shared_state(self) -> MemoryState:
        """Records for presence and producers, in this process: expiring records, as a Redis
        broker keeps them for many."""
        return MemoryState(self._drop_log)

    def _drop_log(self, topic: str) -> None:
        """Empty the log of ``topic``, leaving a tombstone that makes a resume into it a
        ``reset``, not an empty replay."""
        with self._lock:
            log = self._logs.get(topic)
            if log is not None and log.entries:
                tombstone = self._logs[topic] = _TopicLog(1)
                tombstone.trimmed_upto = log.entries[-1].seq

    async def publish(self, event: Outgoing) -> str:
        return self._publish(event)

    def emit(self, event: Outgoing) -> None:
        self._publish(event)

    def _publish(self, event: Outgoing) -> str:
        with self._lock:
            now = time.monotonic()
            if event.key is not None:
                known = self._keys.get(event.key, now)
                if known is not None:
                    return known
            seq = self._seq + 1
            event_id = self.event_id(seq)
            # The same round trip through JSON as on Redis: subscribers see the same data
            # (parsed when read: a stream only sends the text).
            entry = Entry(
                seq, event.topic, own_json_event(event.data, id=event_id, type=event.type)
            )
            self._seq = seq
            log = self._logs.get(event.topic)
            if log is None:
                log = self._logs[event.topic] = _TopicLog(self._log.history)
            log.append(entry, now)
            if self._log.max_age is not None:
                log.expire(now - self._log.max_age)
            if event.key is not None:
                self._keys.add(event.key, event_id, now)
            self._metrics.emitted += 1
            if self._sink is not None:
                self._outgoing.append(entry)
        self._deliver()
        return event_id

    def _deliver(self) -> None:
        """Hand the published entries to the sink in sequence order, outside the lock (the
        sink runs subscribers' code, which may emit, from this thread or another). One thread
        delivers at a time; an entry published meanwhile is delivered by it, in its turn."""
        with self._lock:
            if self._delivering:
                return
            self._delivering = True
        try:
            while True:
                with self._lock:
                    sink = self._sink
                    if not self._outgoing or sink is None:
                        self._delivering = False
                        return
                    entry = self._outgoing.popleft()
                sink(entry)
        except BaseException:
            with self._lock:
                self._delivering = False
            raise

    async def replay(self, pattern: TopicPattern, after: str, upto: int) -> Replay:
        parsed = parse_event_id(after)
        with self._lock:
            if parsed is None or parsed[1] != self._epoch or parsed[0] > self._seq:
                return None
            start = parsed[0]
            if pattern.is_exact:
                logs = [self._logs[pattern.text]] if pattern.text in self._logs else []
            else:
                logs = [log for topic, log in self._logs.items() if pattern.matches(topic)]
            if self._log.max_age is not None:
                oldest = time.monotonic() - self._log.max_age
                for log in logs:
                    log.expire(oldest)
            if any(log.trimmed_upto > start for log in logs):
                return None
            found = [e for log in logs for e in log.entries if start < e.seq <= upto]
        found.sort(key=lambda entry: entry.seq)
        return found

    async def close(self) -> None:
        self._sink = None
