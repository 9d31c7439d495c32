"""The event bus's local fan-out: who in this process listens to which topic or pattern."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from reactivex import abc

from .._event import MessageEvent
from ..streaming._fanout import Fanout, Follower
from ._broker import Entry, Replay, parse_event_id
from ._metrics import BusMetrics
from ._topics import TopicPattern

logger = logging.getLogger("rxsse.bus")


class Subscriber:
    """One ``bus.on()`` subscription: buffers live entries while its replay is out, and skips
    those the client already has (it may resume from a point past this process's watermark,
    when it comes from a process whose reader was ahead)."""

    __slots__ = ("buffer", "channel", "fast", "metrics", "observer", "replaying", "seen")

    def __init__(
        self,
        observer: abc.ObserverBase[MessageEvent],
        metrics: BusMetrics,
        *,
        resume_from: str | None,
    ) -> None:
        self.observer = observer
        self.metrics = metrics
        self.channel: Channel | None = None  # set when it joins one
        self.replaying = resume_from is not None
        point = parse_event_id(resume_from) if resume_from is not None else None
        self.seen = point[0] if point is not None else 0  # entries up to it: the client has them
        self.buffer: list[Entry] = []  # live entries while the replay is out
        # Whether it is in its channel's fan-out: a stream that is caught up takes every entry
        # of the channel from then on, encoded and joined once for all such streams.
        self.fast = False

    def push(self, entry: Entry) -> None:
        if self.replaying:
            self.buffer.append(entry)
        elif entry.topic is None:  # a reset: what follows it is new, whatever its number
            self.seen = entry.seq
            self.observer.on_next(entry.event)
        elif entry.seq > self.seen:
            self.observer.on_next(entry.event)
            if self.channel is not None and isinstance(self.observer, Follower):
                self.channel.promote(self)  # caught up: what follows is all new

    def finish_replay(self, entries: Replay, reset: MessageEvent) -> None:
        """Send the replayed entries (or ``reset`` when there are none to be had), then what
        arrived live meanwhile."""
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


class Channel:
    """The local subscribers of one topic or pattern: the streams that are caught up in one
    :class:`~rxsse.streaming._fanout.Fanout`, the others (resuming, other observers) one by one."""

    __slots__ = ("fanout", "pattern", "slow", "subscribers")

    def __init__(self, pattern: TopicPattern) -> None:
        self.pattern = pattern
        self.subscribers: set[Subscriber] = set()  # all of them
        self.slow: set[Subscriber] = set()  # those not in the fan-out
        self.fanout: Fanout | None = None  # made at the first caught-up stream, on the loop

    def add(self, subscriber: Subscriber) -> None:
        self.subscribers.add(subscriber)
        subscriber.channel = self
        if not subscriber.replaying and isinstance(subscriber.observer, Follower):
            self.promote(subscriber)
        else:
            self.slow.add(subscriber)

    def promote(self, subscriber: Subscriber) -> None:
        """Move a caught-up stream into the fan-out."""
        if self.fanout is None:
            self.fanout = Fanout(asyncio.get_running_loop())
        self.slow.discard(subscriber)
        subscriber.fast = True
        self.fanout.add(cast(Follower, subscriber.observer))

    def discard(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        self.slow.discard(subscriber)
        if subscriber.fast and self.fanout is not None:
            self.fanout.discard(cast(Follower, subscriber.observer))

    def push(self, entry: Entry) -> None:
        if self.fanout is not None and self.fanout:
            try:
                self.fanout.send(entry.event)
            except Exception:  # (events are checked when emitted: this is a bug)
                logger.exception("an event of %s could not be sent", self.pattern.text)
        for subscriber in list(self.slow):
            try:
                subscriber.push(entry)
            except Exception:  # one broken observer must not starve the others
                logger.exception("a subscriber of %s failed", self.pattern.text)

    def complete(self) -> None:
        """Complete every subscriber, after what is pending for them."""
        if self.fanout is not None:
            self.fanout.complete()
        for subscriber in list(self.slow):
            subscriber.observer.on_completed()


class Channels:
    """Every channel with subscribers in this process, by exact topic and by pattern."""

    __slots__ = ("_exact", "_metrics", "_patterns", "subscribers")

    def __init__(self, metrics: BusMetrics) -> None:
        self._metrics = metrics
        self._exact: dict[str, Channel] = {}
        self._patterns: dict[str, Channel] = {}
        self.subscribers = 0  #: how many subscriptions are live

    @property
    def watched(self) -> int:
        """How many distinct topics and patterns have subscribers."""
        return len(self._exact) + len(self._patterns)

    def join(self, pattern: TopicPattern, subscriber: Subscriber) -> None:
        channels = self._exact if pattern.is_exact else self._patterns
        channel = channels.get(pattern.text)
        if channel is None:
            channel = channels[pattern.text] = Channel(pattern)
        channel.add(subscriber)
        self.subscribers += 1

    def leave(self, subscriber: Subscriber) -> None:
        channel = subscriber.channel
        if channel is None or subscriber not in channel.subscribers:
            return
        channel.discard(subscriber)
        self.subscribers -= 1
        if not channel.subscribers:  # the last subscriber frees the channel
            channels = self._exact if channel.pattern.is_exact else self._patterns
            if channels.get(channel.pattern.text) is channel:
                del channels[channel.pattern.text]

    def fan_out(self, entry: Entry) -> None:
        """Hand ``entry`` to the subscribers of its topic and of the patterns matching it (a
        ``reset`` for every topic to all of them)."""
        if entry.topic is None:
            for every in [*self._exact.values(), *self._patterns.values()]:
                self._metrics.resets += len(every.subscribers)
                every.push(entry)
            return
        channel = self._exact.get(entry.topic)
        if channel is not None:
            channel.push(entry)
        if self._patterns:
            for pattern_channel in list(self._patterns.values()):
                if pattern_channel.pattern.matches(entry.topic):
                    pattern_channel.push(entry)

    def complete_all(self) -> None:
        """Complete every subscriber and forget them all."""
        for channel in [*self._exact.values(), *self._patterns.values()]:
            channel.complete()
        self._exact.clear()
        self._patterns.clear()
        self.subscribers = 0
