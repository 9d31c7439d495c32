"""The event bus: topics, ordered ids, a replay log, and resume from ``Last-Event-ID``.

``bus.emit(topic, data)`` gives the event an id and publishes it through a broker;
``bus.on(topic_or_pattern, last_event_id=...)`` is a hot Observable of the topic's events that
first replays what the client missed. Ids are ``"<seq>-<epoch>"``: totally ordered sequence
numbers, so one resume point is meaningful across every topic a pattern spans, and the epoch of
the data set that issued them (see :mod:`rxsse.broker`).

How resume stays free of gaps and duplicates: the bus delivers entries to local subscribers in
sequence order, on the event loop, and remembers the last sequence number it delivered (the
watermark ``W``). A new subscriber joins the live fan-out at ``W`` and asks the broker's log for
the entries in ``(last_event_id, W]``; everything after ``W`` reaches it live, buffered until the
replay is out. If the log no longer holds everything after ``last_event_id`` the subscriber gets
a ``reset`` event (with id ``W``) instead, then the live events. If the broker's data set loses
events (a Redis that restarts empty, or from an older snapshot), every subscriber gets a
``reset`` where the loss begins, then the new data set's events: a gap is always announced.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import inspect
import logging
import threading
import time
from collections.abc import Awaitable
from typing import Any, Final

from reactivex import Observable, abc

from . import payload
from .broker import Broker, Emitted, Entry, LogConfig, Outgoing, Replay, parse_event_id
from .brokers.memory import MemoryBroker
from .event import MessageEvent
from .metrics import BusMetrics
from .sources import Attachable
from .topics import TopicPattern, check_topic

__all__ = ["EventBus"]

logger = logging.getLogger(__name__)

#: How long a resume keeps retrying a broker it cannot reach before the stream fails.
REPLAY_PATIENCE: Final = 30.0
_MAX_KEY_LENGTH: Final = 256
_MAX_KEY_TTL: Final = 10 * 365 * 24 * 3600  # ten years: far within what Redis's PX takes


class EventBus:
    """Publish events by topic; subscribe to topics or patterns, resuming from an event id.

    Args:
        broker: where events travel and are logged: the in-memory :class:`MemoryBroker`
            (default) or ``rxsse.brokers.redis.RedisBroker`` for several processes.
        history: how many events the replay log keeps per topic.
        max_age: if set, events older than this many seconds leave the log too.
        key_ttl: how many seconds an emit's ``key`` is remembered: an emit repeated with the
            same key within that time is published once.

    Example:
        >>> bus = EventBus()
        >>> bus.emit("orders.created", {"id": 7})
        '1-...'
        >>> bus.on("orders.*", last_event_id="1-...")  # doctest: +SKIP
    """

    def __init__(
        self,
        broker: Broker | None = None,
        *,
        history: int = 1000,
        max_age: float | None = None,
        key_ttl: float = 3600.0,
    ) -> None:
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ValueError(f"history must be a positive int, not {history!r}")
        for name, value in (("max_age", max_age), ("key_ttl", key_ttl)):
            if value is not None and not _positive(value):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if not 0.001 <= key_ttl <= _MAX_KEY_TTL:
            raise ValueError(f"key_ttl must be between 0.001 and {_MAX_KEY_TTL:,} seconds")
        self.broker: Broker = broker if broker is not None else MemoryBroker()
        self.history = history
        self.max_age = max_age
        self.log = LogConfig(history=history, max_age=max_age, key_ttl=key_ttl)
        #: Live counters: emits published, failed and refused; resets sent.
        self.metrics = BusMetrics()
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
        self._loop = asyncio.get_running_loop()
        head = self.broker.start(self._accept, self.log, self.metrics)
        self._watermark = await head if inspect.isawaitable(head) else head
        self._started = True

    def _start_now(self) -> None:
        """Start a broker that needs no I/O (the in-memory one) from a sync subscribe."""
        with self._start_lock:
            if self._started:
                return
            head = self.broker.start(self._accept, self.log, self.metrics)
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

    def emit(
        self, topic: str, data: Any, *, type: str | None = None, key: str | None = None
    ) -> Emitted:
        """Publish ``data`` on ``topic`` and return its id.

        ``data`` is checked and encoded as JSON here, once, whatever the broker: what cannot be
        sent to a browser is refused before anything is stored. With a broker that must ask a
        server for the id (Redis) the result is an awaitable of it, or a
        ``concurrent.futures.Future`` when called off the loop's thread. Safe from Rx callbacks
        and other threads.

        ``key`` makes the emit idempotent: an emit with a key that was published within
        ``key_ttl`` seconds is not published again, and gets the first one's id. If an emit
        fails with :class:`EmitError` the event may or may not have been published (the
        server may have run it before the answer was lost): emit it again with the same key
        to publish it exactly once.

        Raises:
            ValueError: for a topic that is not a concrete name, a bad ``type`` or ``key``, or
                data that cannot be sent as JSON (NaN, infinity, a lone surrogate, an object
                ``json`` cannot serialise).
        """
        event = _outgoing(topic, data, type, key)
        if not self._started and self._loop is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass  # no loop here: the event is logged; subscribers start later
            else:
                self._start_now()
        return self.broker.publish(event)

    async def publish(
        self, topic: str, data: Any, *, type: str | None = None, key: str | None = None
    ) -> str:
        """``emit`` for async code, with any broker: wait until the event is published and
        return its id.

        Raises:
            EmitError: the broker could not confirm the emit (see :meth:`emit`).

        Example:
            >>> await bus.publish("orders.created", {"id": 7}, key="order-7")  # doctest: +SKIP
            '2-...'
        """
        result = self.emit(topic, data, type=type, key=key)
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
        if entry.topic is None:  # the data set lost events: every subscriber is told
            for every in [*self._exact.values(), *self._patterns.values()]:
                self.metrics.resets += len(every.subscribers)
                every.push(entry)
            return
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
        return _TopicStream(self, TopicPattern(topic), last_event_id)

    def _subscribe(
        self,
        pattern: TopicPattern,
        last_event_id: str | None,
        observer: abc.ObserverBase[MessageEvent],
    ) -> abc.DisposableBase:
        if not self._started:
            self._start_now()
        subscriber = _Subscriber(observer, self.metrics, resume_from=last_event_id)
        channel = self._join(pattern, subscriber)
        leave = _Leave(self, channel, subscriber)
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
                    retry = _Retry(self.broker, pattern, last_event_id, upto)
                    leave.replay_task = asyncio.get_running_loop().create_task(
                        _finish_later(subscriber, replay, retry, reset)
                    )
                else:
                    subscriber.finish_replay(replay, reset)
        return leave

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


def _outgoing(topic: str, data: Any, type: str | None, key: str | None) -> Outgoing:
    """Check an event and encode its data, once, before any broker sees it."""
    check_topic(topic)
    if type is not None:
        MessageEvent(type=type)  # the checks a frame's type gets
    if key is not None and (
        not isinstance(key, str)
        or not 0 < len(key) <= _MAX_KEY_LENGTH
        or not key.isprintable()
        or not key.isascii()
    ):
        raise ValueError(f"an emit key must be 1 to {_MAX_KEY_LENGTH} printable ASCII characters")
    try:
        text = payload.dumps(data)
    except ValueError as exc:
        raise ValueError(f"the data emitted on {topic!r} {exc}") from None
    return Outgoing(topic, text, type, key)


def _positive(value: object) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")
    )


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class _TopicStream(Attachable[MessageEvent]):
    """What ``bus.on()`` returns. A class rather than ``rx.create`` and closures: an idle
    stream holds its subscription for hours, and closures and reactivex's disposables (each
    with a lock) cost it hundreds of bytes."""

    def __init__(self, bus: EventBus, pattern: TopicPattern, last_event_id: str | None) -> None:
        super().__init__()
        self._bus = bus
        self._pattern = pattern
        self._last_event_id = last_event_id

    def _subscribe_core(
        self,
        observer: abc.ObserverBase[MessageEvent],
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        return self._bus._subscribe(self._pattern, self._last_event_id, observer)


class _Leave(abc.DisposableBase):
    """Disposing a subscription: its replay (if still out) is cancelled, and it leaves its
    channel (the last one out frees it)."""

    __slots__ = ("bus", "channel", "replay_task", "subscriber")

    def __init__(self, bus: EventBus, channel: _Channel, subscriber: _Subscriber) -> None:
        self.bus = bus
        self.channel = channel
        self.subscriber = subscriber
        self.replay_task: asyncio.Task[None] | None = None

    def dispose(self) -> None:
        if self.replay_task is not None:
            self.replay_task.cancel()
        self.bus._leave(self.channel, self.subscriber)


class _Retry:
    """Asks a broker for the same replay again."""

    __slots__ = ("after", "broker", "pattern", "upto")

    def __init__(self, broker: Broker, pattern: TopicPattern, after: str, upto: int) -> None:
        self.broker = broker
        self.pattern = pattern
        self.after = after
        self.upto = upto

    def __call__(self) -> Replay | Awaitable[Replay]:
        return self.broker.replay(self.pattern, self.after, self.upto)


async def _finish_later(
    subscriber: _Subscriber, replay: Awaitable[Replay], retry: _Retry, reset: MessageEvent
) -> None:
    """Wait for a replay; while the broker cannot be reached (a Redis restarting), ask again
    with backoff for up to :data:`REPLAY_PATIENCE` seconds: the client's stream stays open
    and its live events wait in its buffer."""
    deadline = time.monotonic() + REPLAY_PATIENCE
    delay = 0.05
    while True:
        try:
            entries = await replay
        except (ConnectionError, TimeoutError) as exc:
            if time.monotonic() + delay > deadline:
                subscriber.observer.on_error(exc)
                return
            logger.info("a resume could not reach the broker (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            next_try = retry()
            if not inspect.isawaitable(next_try):
                subscriber.finish_replay(next_try, reset)
                return
            replay = next_try
        except Exception as exc:
            subscriber.observer.on_error(exc)
            return
        else:
            subscriber.finish_replay(entries, reset)
            return


class _Subscriber:
    """One ``on()`` subscription: buffers live entries while its replay is out, and skips
    those the client already has (it may resume from a point past this process's watermark,
    when it comes from a process whose reader was ahead)."""

    __slots__ = ("buffer", "metrics", "observer", "replaying", "seen")

    def __init__(
        self,
        observer: abc.ObserverBase[MessageEvent],
        metrics: BusMetrics,
        *,
        resume_from: str | None,
    ) -> None:
        self.observer = observer
        self.metrics = metrics
        self.replaying = resume_from is not None
        point = parse_event_id(resume_from) if resume_from is not None else None
        self.seen = point[0] if point is not None else 0  # entries up to it: the client has them
        self.buffer: list[Entry] = []  # live entries while the replay is out

    def push(self, entry: Entry) -> None:
        if self.replaying:
            self.buffer.append(entry)
        elif entry.topic is None:  # a reset: what follows it is new, whatever its number
            self.seen = entry.seq
            self.observer.on_next(entry.event)
        elif entry.seq > self.seen:
            self.observer.on_next(entry.event)

    def finish_replay(self, entries: Replay, reset: MessageEvent) -> None:
        if entries is None:  # the client's point is not in the log: its number means nothing
            self.seen = 0
            self.metrics.resets += 1
            self.observer.on_next(reset)
        else:
            for entry in entries:
                self.observer.on_next(entry.event)
        self.replaying = False
        buffer, self.buffer = self.buffer, []
        for entry in buffer:
            self.push(entry)


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
