"""The event bus: topics, ordered ids, a replay log, and resume from ``Last-Event-ID``.

``bus.emit(topic, data)`` gives the event an id and publishes it through a broker;
``bus.on(topic_or_pattern, last_event_id=...)`` is a hot Observable of the topic's events that
first replays what the client missed. Ids are totally ordered sequence numbers (``"<seq>-<tag>"``),
so one resume point is meaningful across every topic a pattern spans.

How resume stays free of gaps and duplicates: the bus delivers entries to local subscribers in
sequence order, on the event loop, and remembers the last sequence number it delivered (the
watermark ``W``). A new subscriber joins the live fan-out at ``W`` and asks the broker's log for
the entries in ``(last_event_id, W]``; everything after ``W`` reaches it live, buffered until the
replay is out. If the log no longer holds everything after ``last_event_id`` the subscriber gets
a ``reset`` event (with id ``W``) instead, then the live events.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import inspect
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import reactivex as rx
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from .event import MessageEvent
from .topics import TopicPattern, check_topic

__all__ = ["Broker", "Emitted", "Entry", "EventBus", "MemoryBroker", "Replay", "Sink"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    """One published event: its global sequence number, its topic, and the event (with id)."""

    seq: int
    topic: str
    event: MessageEvent


#: What a broker's replay returns: the entries in order, or None when the resume point is
#: unknown or older than the log (the subscriber then gets a ``reset`` event).
Replay: TypeAlias = "list[Entry] | None"
#: Where a broker hands every entry it delivers, in sequence order.
Sink: TypeAlias = Callable[[Entry], None]
#: What ``emit`` returns: the id, or an awaitable of it (a concurrent future when called from
#: another thread) with a broker that must ask a server for it.
Emitted: TypeAlias = "str | Awaitable[str] | concurrent.futures.Future[str]"


class Broker(Protocol):
    """Carries events between ``emit`` and the bus's subscribers, and keeps the replay log."""

    def start(self, sink: Sink, *, history: int, max_age: float | None) -> int | Awaitable[int]:
        """Begin handing every published entry to ``sink``, in sequence order, on the running
        loop (or synchronously). Return the sequence number of the newest published entry."""

    def publish(self, topic: str, data: Any, type: str | None) -> Emitted:
        """Assign the next id to an event and publish it; return the id (or an awaitable)."""

    def replay(self, pattern: TopicPattern, after: str, upto: int) -> Replay | Awaitable[Replay]:
        """The logged entries of topics matching ``pattern`` with ``after < seq <= upto``."""

    def event_id(self, seq: int) -> str:
        """The id string of sequence number ``seq``."""

    async def close(self) -> None:
        """Stop delivering and release connections."""


class EventBus:
    """Publish events by topic; subscribe to topics or patterns, resuming from an event id.

    Args:
        broker: where events travel and are logged: the in-memory :class:`MemoryBroker`
            (default) or ``rxsse.redis.RedisBroker`` for several processes.
        history: how many events the replay log keeps per topic.
        max_age: if set, events older than this many seconds leave the log too.

    Example:
        >>> bus = EventBus()
        >>> bus.emit("orders.created", {"id": 7})
        '1-...'
        >>> bus.on("orders.*", last_event_id="1-...")  # doctest: +SKIP
    """

    def __init__(
        self, broker: Broker | None = None, *, history: int = 1000, max_age: float | None = None
    ) -> None:
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ValueError(f"history must be a positive int, not {history!r}")
        if max_age is not None and not max_age > 0:
            raise ValueError(f"max_age must be a positive number of seconds, not {max_age!r}")
        self.broker: Broker = broker if broker is not None else MemoryBroker()
        self.history = history
        self.max_age = max_age
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._start_lock = threading.Lock()
        self._queue: collections.deque[Entry] = collections.deque()
        self._draining = False
        self._drain_scheduled = False
        self._watermark = 0
        self._exact: dict[str, _Channel] = {}
        self._patterns: dict[str, _Channel] = {}
        self._subscribers = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the broker and bind the bus to the running loop (``setup`` calls this)."""
        if self._started:
            return
        head = self.broker.start(self._accept, history=self.history, max_age=self.max_age)
        self._loop = asyncio.get_running_loop()
        self._watermark = await head if inspect.isawaitable(head) else head
        self._started = True

    def _start_now(self) -> None:
        """Start a broker that needs no I/O (the in-memory one) from a sync subscribe."""
        with self._start_lock:
            if self._started:
                return
            head = self.broker.start(self._accept, history=self.history, max_age=self.max_age)
            if inspect.isawaitable(head):
                if inspect.iscoroutine(head):
                    head.close()
                raise RuntimeError(
                    "this bus's broker must be started first: await bus.start(), "
                    "or pass bus= to rxsse.setup()"
                )
            self._loop = asyncio.get_running_loop()
            self._watermark = head
            self._started = True

    async def close(self) -> None:
        """Complete every subscriber and close the broker."""
        for channel in [*self._exact.values(), *self._patterns.values()]:
            for subscriber in list(channel.subscribers):
                subscriber.observer.on_completed()
        self._exact.clear()
        self._patterns.clear()
        self._subscribers = 0
        await self.broker.close()
        self._started = False

    @property
    def live_subscriptions(self) -> int:
        """How many ``on()`` subscriptions are live in this process."""
        return self._subscribers

    @property
    def topics_watched(self) -> int:
        """How many distinct topics and patterns have live subscribers here."""
        return len(self._exact) + len(self._patterns)

    # -- publishing ---------------------------------------------------------------------------

    def emit(self, topic: str, data: Any, *, type: str | None = None) -> Emitted:
        """Publish ``data`` on ``topic`` and return its id.

        With a broker that must ask a server for the id (Redis) the result is an awaitable of
        it, or a ``concurrent.futures.Future`` when called off the loop's thread; it fails if
        the server is unavailable. Safe from Rx callbacks and other threads.

        Raises:
            ValueError: for a topic that is not a concrete name, or a bad ``type``.
        """
        check_topic(topic)
        if not self._started and self._loop is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass  # no loop here: the event is logged; subscribers start later
            else:
                self._start_now()
        return self.broker.publish(topic, data, type)

    async def publish(self, topic: str, data: Any, *, type: str | None = None) -> str:
        """``emit`` for async code, with any broker: wait until the event is published and
        return its id.

        Example:
            >>> event_id = await bus.publish("orders.created", {"id": 7})  # doctest: +SKIP
        """
        result = self.emit(topic, data, type=type)
        if isinstance(result, str):
            return result
        if isinstance(result, concurrent.futures.Future):
            return await asyncio.wrap_future(result)
        return await result

    @property
    def origin_id(self) -> str:
        """An id before every event: ``on(topic, last_event_id=bus.origin_id)`` replays the
        topic's whole log (or starts with ``reset`` if the log was trimmed)."""
        return self.broker.event_id(0)

    def _accept(self, entry: Entry) -> None:
        """The broker's sink: queue in sequence order, deliver on the loop."""
        loop = self._loop
        if loop is None:
            return  # nobody can be subscribed before the bus is bound to a loop
        self._queue.append(entry)
        if _on_loop(loop):
            self._drain()
        elif not self._drain_scheduled:
            self._drain_scheduled = True
            loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        if self._draining:
            return  # an emit from inside a subscriber: the outer loop delivers it, in order
        self._draining = True
        try:
            queue = self._queue
            while queue:
                self._fan_out(queue.popleft())
        finally:
            self._draining = False

    def _fan_out(self, entry: Entry) -> None:
        self._watermark = entry.seq
        channel = self._exact.get(entry.topic)
        if channel is not None:
            channel.push(entry)
        if self._patterns:
            for pattern_channel in list(self._patterns.values()):
                if pattern_channel.pattern.matches(entry.topic):
                    pattern_channel.push(entry)

    # -- subscribing --------------------------------------------------------------------------

    def on(self, topic: str, *, last_event_id: str | None = None) -> Observable[MessageEvent]:
        """A hot stream of the events of ``topic`` (or of every topic a pattern matches).

        With ``last_event_id`` it first replays what came after that id from the log, then
        continues live, with no gap and no duplicate. If that id is unknown or older than the
        log, the stream starts with ``MessageEvent(type="reset")`` (so the client reloads its
        state), then continues live. Subscribe on the event loop.

        Raises:
            ValueError: for an invalid topic or pattern.
        """
        pattern = TopicPattern(topic)

        def subscribe(
            observer: abc.ObserverBase[MessageEvent], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            if not self._started:
                self._start_now()
            subscriber = _Subscriber(observer, replaying=last_event_id is not None)
            channel = self._join(pattern, subscriber)
            replay_task: asyncio.Task[None] | None = None
            if last_event_id is not None:
                upto = self._watermark
                reset = MessageEvent(
                    {"reason": "the resume point is not in the log"},
                    type="reset",
                    id=self.broker.event_id(upto),
                )
                try:
                    replay = self.broker.replay(pattern, last_event_id, upto)
                except Exception as exc:
                    observer.on_error(exc)
                else:
                    if inspect.isawaitable(replay):
                        replay_task = asyncio.get_running_loop().create_task(
                            _finish_later(subscriber, replay, reset)
                        )
                    else:
                        subscriber.finish_replay(replay, reset)

            def dispose() -> None:
                if replay_task is not None:
                    replay_task.cancel()
                self._leave(channel, subscriber)

            return Disposable(dispose)

        return rx.create(subscribe)

    def _join(self, pattern: TopicPattern, subscriber: _Subscriber) -> _Channel:
        channels = self._exact if pattern.is_exact else self._patterns
        channel = channels.get(pattern.text)
        if channel is None:
            channel = channels[pattern.text] = _Channel(pattern)
        channel.subscribers.add(subscriber)
        self._subscribers += 1
        return channel

    def _leave(self, channel: _Channel, subscriber: _Subscriber) -> None:
        if subscriber not in channel.subscribers:
            return
        channel.subscribers.discard(subscriber)
        self._subscribers -= 1
        if not channel.subscribers:  # the last subscriber frees the channel
            channels = self._exact if channel.pattern.is_exact else self._patterns
            if channels.get(channel.pattern.text) is channel:
                del channels[channel.pattern.text]


def _event(topic: str, data: Any, event_id: str, type: str | None) -> MessageEvent:
    """The event as subscribers will see it, encoded now: bad input fails the emit, not a stream."""
    event = MessageEvent(data, id=event_id, type=type)
    try:
        event.encode()
    except TypeError as exc:
        raise ValueError(f"the data emitted on {topic!r} cannot be sent as JSON: {exc}") from exc
    return event


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def _finish_later(
    subscriber: _Subscriber, replay: Awaitable[Replay], reset: MessageEvent
) -> None:
    try:
        entries = await replay
    except Exception as exc:
        subscriber.observer.on_error(exc)
    else:
        subscriber.finish_replay(entries, reset)


class _Subscriber:
    """One ``on()`` subscription: buffers live entries while its replay is out."""

    __slots__ = ("buffer", "observer", "replaying")

    def __init__(self, observer: abc.ObserverBase[MessageEvent], *, replaying: bool) -> None:
        self.observer = observer
        self.replaying = replaying
        self.buffer: list[Entry] = []

    def push(self, entry: Entry) -> None:
        if self.replaying:
            self.buffer.append(entry)
        else:
            self.observer.on_next(entry.event)

    def finish_replay(self, entries: Replay, reset: MessageEvent) -> None:
        if entries is None:
            self.observer.on_next(reset)
        else:
            for entry in entries:
                self.observer.on_next(entry.event)
        for entry in self.buffer:
            self.observer.on_next(entry.event)
        self.buffer = []
        self.replaying = False


class _Channel:
    """The local subscribers of one topic or pattern."""

    __slots__ = ("pattern", "subscribers")

    def __init__(self, pattern: TopicPattern) -> None:
        self.pattern = pattern
        self.subscribers: set[_Subscriber] = set()

    def push(self, entry: Entry) -> None:
        for subscriber in list(self.subscribers):
            try:
                subscriber.push(entry)
            except Exception:  # one broken observer must not starve the others
                logger.exception("a subscriber of %s failed", self.pattern.text)


# -- the in-memory broker -----------------------------------------------------------------------


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


class MemoryBroker:
    """The default broker: one process, no setup. Ids are ``"<seq>-<tag>"`` where the tag is
    random per broker, so an id from an earlier process is recognised as unknown."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._seq = 0
        self._tag = secrets.token_hex(3)
        self._logs: dict[str, _TopicLog] = {}
        self._sink: Sink | None = None
        self._history = 1000
        self._max_age: float | None = None

    def start(self, sink: Sink, *, history: int, max_age: float | None) -> int:
        with self._lock:
            self._sink = sink
            self._history = history
            self._max_age = max_age
            return self._seq

    def event_id(self, seq: int) -> str:
        return f"{seq}-{self._tag}"

    def publish(self, topic: str, data: Any, type: str | None) -> str:
        with self._lock:
            seq = self._seq + 1
            event = _event(topic, data, self.event_id(seq), type)
            self._seq = seq
            entry = Entry(seq, topic, event)
            log = self._logs.get(topic)
            if log is None:
                log = self._logs[topic] = _TopicLog(self._history)
            now = time.monotonic()
            log.append(entry, now)
            if self._max_age is not None:
                log.expire(now - self._max_age)
            if self._sink is not None:
                self._sink(entry)  # under the lock: the sink sees entries in sequence order
            assert event.id is not None
            return event.id

    def replay(self, pattern: TopicPattern, after: str, upto: int) -> Replay:
        start = self._parse(after)
        with self._lock:
            if start is None or start > self._seq:
                return None
            if pattern.is_exact:
                logs = [self._logs[pattern.text]] if pattern.text in self._logs else []
            else:
                logs = [log for topic, log in self._logs.items() if pattern.matches(topic)]
            if self._max_age is not None:
                oldest = time.monotonic() - self._max_age
                for log in logs:
                    log.expire(oldest)
            if any(log.trimmed_upto > start for log in logs):
                return None
            found = [e for log in logs for e in log.entries if start < e.seq <= upto]
        found.sort(key=lambda entry: entry.seq)
        return found

    def _parse(self, event_id: str) -> int | None:
        seq, _, tag = event_id.partition("-")
        if tag != self._tag or not seq.isdigit():
            return None
        return int(seq)

    async def close(self) -> None:
        self._sink = None
