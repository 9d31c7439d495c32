"""The event bus: topics, ordered ids, a replay log, and resume from ``Last-Event-ID``.

``bus.emit(topic, data)`` gives the event an id and publishes it through a broker;
``bus.on(topic_or_pattern, last_event_id=...)`` is a hot Observable of the topic's events that
first replays what the client missed. Ids are ``"<seq>-<epoch>"``: totally ordered sequence
numbers, so one resume point is meaningful across every topic a pattern spans, and the epoch of
the data set that issued them (see :mod:`rxsse.bus._broker`).

How resume stays free of gaps and duplicates: the bus delivers entries to local subscribers in
sequence order, on the event loop, and remembers the last sequence number it delivered (the
watermark ``W``). A new subscriber joins the live fan-out at ``W`` and asks the broker's log for
the entries in ``(last_event_id, W]``; everything after ``W`` reaches it live, buffered until the
replay is out. If the log no longer holds everything after ``last_event_id`` the subscriber gets
a ``reset`` event (with id ``W``) instead, then the live events. If the broker's data set loses
events (a Redis that restarts empty, or from an older snapshot), every subscriber gets a
``reset`` where the loss begins, then the new data set's events: a gap is always announced.

A bus belongs to the first event loop it is used on. It reads from its broker only once
someone subscribes (or ``start()`` is awaited, as ``setup`` does): a process that only
publishes runs no reader.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, Final

from reactivex import Observable, abc

from .._checks import check_count, check_seconds
from .._event import MessageEvent
from ..streaming._eager import Waiting, first_step
from ..streaming._observing import inbox_of
from ..streaming._sources import Attachable
from ._broker import Broker, Entry, LogConfig, Replay, Span
from ._channels import Channels, Subscriber
from ._memory import MemoryBroker
from ._metrics import BusMetrics
from ._presence import PresenceEvent, PresenceTracker, check_member
from ._publishing import Publisher, on_loop, outgoing
from ._retry import retry
from ._shared import SharedState, shared_state_of
from ._topics import TopicPattern

logger = logging.getLogger("rxsse.bus")

#: How long a resume keeps retrying a broker it cannot reach before the stream fails.
REPLAY_PATIENCE: Final = 30.0
_MAX_KEY_TTL: Final = 10 * 365 * 24 * 3600  # ten years: far within what Redis's PX takes


class EventBus:
    """Publish events by topic; subscribe to topics or patterns, resuming from an event id.

    Args:
        broker: where events travel and are logged: the in-memory :class:`MemoryBroker`
            (default) or ``rxsse.RedisBroker`` for several processes.
        history: how many events the replay log keeps per topic.
        max_age: if set, events older than this many seconds leave the log too.
        key_ttl: how many seconds an emit's ``key`` is remembered: an emit repeated with the
            same key within that time is published once.
        presence_interval: how often (seconds) this process renews its members' presence and
            reads other processes' (see :meth:`presence`).

    Example:
        >>> bus = EventBus()
        >>> bus.emit("orders.created", {"id": 7})
        >>> bus.on("orders.*", last_event_id="1-...")  # doctest: +SKIP
    """

    def __init__(
        self,
        broker: Broker | None = None,
        *,
        history: int = 1000,
        max_age: float | None = None,
        key_ttl: float = 3600.0,
        presence_interval: float = 1.0,
    ) -> None:
        check_count("history", history)
        check_seconds("max_age", max_age, optional=True)
        check_seconds("key_ttl", key_ttl)
        if not 0.001 <= key_ttl <= _MAX_KEY_TTL:
            raise ValueError(f"key_ttl must be between 0.001 and {_MAX_KEY_TTL:,} seconds")
        self.broker: Broker = broker if broker is not None else MemoryBroker()
        self.history = history
        self.max_age = max_age
        self.log = LogConfig(history=history, max_age=max_age, key_ttl=key_ttl)
        #: Live counters: emits published, failed and refused; resets sent.
        self.metrics = BusMetrics()
        self.broker.bind(self.log, self.metrics)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._starting: asyncio.Task[None] | None = None
        self._channels = Channels(self.metrics)
        self._watermark = 0
        self._queue: collections.deque[Entry] = collections.deque()  # from the broker, in order
        self._draining = False
        self._publisher = Publisher(self.broker, self.metrics)
        #: The records this bus's processes share (presence, producers): in this process
        #: with the in-memory broker, in Redis with ``RedisBroker``.
        self.shared: SharedState = shared_state_of(self.broker)
        self._presence = PresenceTracker(self.shared, interval=presence_interval)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start reading from the broker now rather than at the first subscriber: ``setup``
        does, so that a broker that cannot be reached is found when the app starts."""
        await self._ensure_started()

    async def close(self) -> None:
        """Complete every subscriber and close the broker."""
        self._channels.complete_all()
        await self._presence.close()
        await self.broker.close()
        self._started = False
        self._loop = None

    @property
    def live_subscriptions(self) -> int:
        """How many ``on()`` subscriptions are live in this process."""
        return self._channels.subscribers

    @property
    def topics_watched(self) -> int:
        """How many distinct topics and patterns have live subscribers here."""
        return self._channels.watched

    def _own_loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop this bus runs on: the running one, when it is first used on one."""
        loop = self._loop
        if loop is None or loop.is_closed():  # (a bus that outlived its loop: take the new one)
            try:
                loop = self._loop = asyncio.get_running_loop()
            except RuntimeError:
                return None
            inbox_of(loop)  # made here, on the loop's thread, for emits from other threads
        return loop

    async def _ensure_started(self) -> None:
        if self._started:
            return
        loop = self._own_loop()
        if loop is None or not on_loop(loop):
            raise RuntimeError("subscribe to a bus on the event loop it runs on")
        if self._starting is None:
            step = first_step(self._start_broker())
            if not isinstance(step, Waiting):
                return  # started at once (the in-memory broker)
            self._starting = loop.create_task(step.finish(), name="rxsse-bus-start")
            self._starting.add_done_callback(_retrieve)
        await asyncio.shield(self._starting)  # a subscriber that leaves does not stop it

    async def _start_broker(self) -> None:
        try:
            self._watermark = await self.broker.start(self._accept)
            self._started = True
        finally:
            self._starting = None

    # -- publishing ---------------------------------------------------------------------------

    def emit(
        self, topic: str, data: Any, *, type: str | None = None, key: str | None = None
    ) -> None:
        """Publish ``data`` on ``topic`` and go on: fire and forget.

        ``data`` is checked and encoded as JSON here, once, whatever the broker. In memory the
        event is published and delivered here before ``emit`` returns. An emit the broker
        cannot confirm (Redis unreachable) is counted in ``bus.metrics.emit_failures`` and
        logged (``await bus.publish(...)`` to learn its id or its failure). Safe from Rx
        callbacks and from other threads (published on the bus's loop, in order).

        ``key`` makes the emit idempotent: a key published within ``key_ttl`` seconds is not
        published again. An emit that failed may or may not have been published: emit it
        again with the same key to publish it exactly once.

        Raises:
            ValueError: a topic that is not a concrete name, a bad ``type`` or ``key``, or
                data JSON cannot carry (NaN, infinity, a lone surrogate, unserialisable).
        """
        self._publisher.emit(outgoing(topic, data, type, key), self._own_loop())

    async def publish(
        self, topic: str, data: Any, *, type: str | None = None, key: str | None = None
    ) -> str:
        """Publish like :meth:`emit`, wait until the broker confirms it, and return its id.

        Raises:
            ValueError: as :meth:`emit`.
            EmitError: the broker could not confirm it (see :meth:`emit`).

        Example:
            >>> await bus.publish("orders.created", {"id": 7}, key="order-7")  # doctest: +SKIP
            '2-...'
        """
        return await self._publisher.publish(outgoing(topic, data, type, key), self._own_loop())

    @property
    def origin_id(self) -> str:
        """An id before every event: ``on(topic, last_event_id=bus.origin_id)`` replays the
        topic's whole log (or starts with ``reset`` if the log was trimmed). Exact once the
        bus has started."""
        return self.broker.event_id(0)

    def _accept(self, entry: Entry) -> None:
        """The broker's sink (on the loop): deliver in sequence order."""
        self._queue.append(entry)
        if self._draining:
            return  # an emit from inside a subscriber: the outer loop delivers it, in order
        self._draining = True
        try:
            queue = self._queue
            while queue:
                entry = queue.popleft()
                self._watermark = entry.seq
                self._channels.fan_out(entry)
        finally:
            self._draining = False

    # -- subscribing --------------------------------------------------------------------------

    def on(
        self, topic: str, *, last_event_id: str | None = None, member: str | None = None
    ) -> Observable[MessageEvent]:
        """A hot stream of the events of ``topic`` (or of every topic a pattern matches).

        With ``last_event_id`` it first replays what came after that id from the log, then
        continues live, with no gap and no duplicate. If that id is unknown or older than the
        log, the stream starts with ``MessageEvent(type="reset")`` (so the client reloads its
        state), then continues live. Subscribe on the event loop; the first subscriber starts
        the bus if it is not started.

        With ``member`` (an identity, such as the user a guard put on the request), the
        subscription counts in the topic's :meth:`presence` for as long as it lasts.

        Raises:
            ValueError: for an invalid topic or pattern, or an empty ``member``.
        """
        return _TopicStream(self, TopicPattern(topic), last_event_id, check_member(member))

    def presence(self, topic: str, *, member: str | None = None) -> Observable[PresenceEvent]:
        """Who listens on ``topic`` in every process: a ``sync`` :class:`PresenceEvent`, then a
        ``join`` or ``leave`` for each identity (the ``member`` of an ``on()`` subscription, or
        of a ``presence()`` one) that comes or goes (a crashed process's members leave within
        about four ``presence_interval``). Subscribe on the bus's loop.

        Raises:
            ValueError: for an invalid topic or pattern, or an empty ``member``.
        """
        TopicPattern(topic)  # (checks it)
        return self._presence.observe(topic, check_member(member))

    async def members(self, topic: str) -> dict[str, int]:
        """Who is present on ``topic`` now: identity -> open subscriptions, all processes."""
        return await self._presence.members(topic)


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a start's failure as seen: its waiters have it (if they are still waiting)."""
    if not task.cancelled():
        task.exception()


class _TopicStream(Attachable[MessageEvent]):
    """What ``bus.on()`` returns. A class rather than ``rx.create`` and closures: an idle
    stream holds its subscription for hours, and closures and reactivex's disposables (each
    with a lock) cost it hundreds of bytes."""

    def __init__(
        self,
        bus: EventBus,
        pattern: TopicPattern,
        last_event_id: str | None,
        member: str | None,
    ) -> None:
        super().__init__()
        self._bus = bus
        self._pattern = pattern
        self._last_event_id = last_event_id
        self._member = member

    def _subscribe_core(
        self,
        observer: abc.ObserverBase[MessageEvent],
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        bus = self._bus
        subscriber = Subscriber(observer, bus.metrics, resume_from=self._last_event_id)
        leave = _Leave(bus._channels, subscriber)
        if self._member is not None:
            leave.presence = bus._presence.join(self._pattern.text, self._member)
        step = first_step(self._attach(subscriber))
        if isinstance(step, Waiting):  # for the broker to start, or for the replay
            leave.task = asyncio.get_running_loop().create_task(step.finish())
        return leave

    async def _attach(self, subscriber: Subscriber) -> None:
        """Join the channel at the bus's watermark ``W``; with a resume point, send the log's
        entries up to ``W`` (or a ``reset``), then what arrived live meanwhile."""
        bus, pattern, after = self._bus, self._pattern, self._last_event_id
        try:
            await bus._ensure_started()
            bus._channels.join(pattern, subscriber)
            if after is None:
                return
            upto = bus._watermark  # (read as it joins: no await in between)
            reset = MessageEvent(
                {"reason": "the resume point is not in the log"},
                type="reset",
                id=bus.broker.event_id(upto),
            )
            entries = await _replay_patiently(bus.broker, Span(pattern, after, upto))
        except Exception as exc:
            subscriber.observer.on_error(exc)
            return
        subscriber.finish_replay(entries, reset)


async def _replay_patiently(broker: Broker, span: Span) -> Replay:
    """The broker's replay. While the broker cannot be reached (a Redis restarting), ask again
    with backoff for up to :data:`REPLAY_PATIENCE` seconds: the client's stream stays open and
    its live events wait in its buffer."""

    def said(exc: BaseException) -> None:
        logger.info("a resume could not reach the broker (%s); retrying", exc)

    return await retry(
        lambda: broker.replay(*span), (ConnectionError, TimeoutError), REPLAY_PATIENCE, said
    )


class _Leave(abc.DisposableBase):
    """Disposing a subscription: what it still waits for (a start, a replay) is cancelled,
    and it leaves its channel (the last one out frees it)."""

    __slots__ = ("channels", "presence", "subscriber", "task")

    def __init__(self, channels: Channels, subscriber: Subscriber) -> None:
        self.channels = channels
        self.subscriber = subscriber
        self.task: asyncio.Task[None] | None = None
        self.presence: abc.DisposableBase | None = None

    def dispose(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.channels.leave(self.subscriber)
        if self.presence is not None:
            self.presence.dispose()
            self.presence = None
