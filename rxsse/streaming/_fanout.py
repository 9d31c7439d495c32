"""Fan-out: one source, many streams, each event encoded once and written in one join.

A broadcast's cost used to be per delivery: every stream had its own subscription to the
source (a chain of Rx observers), encoded its own frame, queued it and wrote it. A
:class:`Fanout` is what the streams of one loop that follow the same hot source share: each
event is encoded once and appended to the loop iteration's batch; once per iteration the batch
is joined once, and that one ``bytes`` is written to every stream that keeps up, in one write
each. A stream that does not keep up (a write waits for its client, frames still queued) gets
the frames one by one into its outbox, where its lag bounds apply, as before.

Two sources fan out: a plain ``reactivex.subject.Subject`` (see :func:`follow_subject`, one
subscription per loop however many streams follow it) and the event bus's channels.
"""

from __future__ import annotations

import asyncio
from typing import Any

from reactivex import abc
from reactivex.subject import Subject

from .._event import MessageEvent, event_of
from ._coalescing import MAX_BYTES, Coalescer
from ._observing import LoopObserver
from ._writing import PerLoop


class Batch:
    """The frames of one loop iteration for a follower: ``data`` is ``frames`` joined once,
    ``chunk`` the same bytes framed as one HTTP/1.1 chunk; ``last_id`` the id of the last of
    them that had one; ``now``, the loop's time."""

    __slots__ = ("chunk", "data", "frames", "last_id", "now")

    def __init__(self, frames: list[bytes], last_id: str | None, now: float) -> None:
        self.frames = frames
        self.data = data = frames[0] if len(frames) == 1 else b"".join(frames)
        self.chunk = b"%x\r\n%s\r\n" % (len(data), data)
        self.last_id = last_id
        self.now = now


class Follower:
    """A stream a fan-out writes to (a :class:`~rxsse.StreamSession`). A base class,
    not a protocol: the bus asks ``isinstance`` of each stream that catches up."""

    __slots__ = ()

    def take_frames(self, batch: Batch) -> None:
        """Frames for the stream."""
        raise NotImplementedError

    def source_failed(self, error: BaseException) -> None:
        """The source failed."""
        raise NotImplementedError

    def source_completed(self) -> None:
        """The source completed."""
        raise NotImplementedError


class Fanout:
    """The followers of one source on one loop, and the frames of this loop iteration."""

    __slots__ = (
        "_batch",
        "_bytes",
        "_followers",
        "_hot",
        "_id_at",
        "_last_id",
        "_late",
        "_loop",
        "_scheduled",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._followers: dict[Follower, None] = {}  # (ordered: streams are served as they came)
        self._batch: list[bytes] = []
        self._bytes = 0
        self._last_id: str | None = None  # the batch's last event id, and where it is
        self._id_at = -1
        # Followers that joined, or caught up, while a batch was pending: how much of it they
        # already have (they get only what came after).
        self._late: dict[Follower, int] = {}
        self._scheduled: asyncio.Handle | None = None
        self._hot = Coalescer(loop)  # (a source faster than the loop: see there)

    def __len__(self) -> int:
        return len(self._followers)

    def add(self, follower: Follower) -> None:
        """Write the events sent from now on to ``follower``."""
        self._followers[follower] = None
        if self._batch:
            self._late[follower] = len(self._batch)

    def discard(self, follower: Follower) -> None:
        """Write nothing more to ``follower``."""
        self._followers.pop(follower, None)
        self._late.pop(follower, None)

    def catch_up(self, follower: Follower) -> None:
        """Give ``follower`` what is pending for it now (before a last frame of its own)."""
        if follower not in self._followers:
            return
        start = self._late.get(follower, 0)
        frames = self._batch[start:]
        if frames:
            self._late[follower] = len(self._batch)
            last_id = _id_after(start, self._last_id, self._id_at)
            follower.take_frames(Batch(frames, last_id, self._loop.time()))

    def send(self, event: MessageEvent) -> None:
        """Encode ``event`` once and queue it for every follower.

        Raises:
            ValueError: for data that cannot be encoded (nothing is queued).
        """
        frame = event.encode()
        if event.id is not None:
            self._last_id = event.id
            self._id_at = len(self._batch)
        self._batch.append(frame)
        self._bytes += len(frame)
        if self._scheduled is None and (not self._hot.holding or self._bytes >= MAX_BYTES):
            self._scheduled = self._loop.call_soon(self._flush_soon)

    def flush(self) -> None:
        """Write what is pending to every follower now."""
        self._hot.cancel()
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        batch = self._batch
        if not batch:
            return
        self._hot.last = now = self._loop.time()
        last_id, id_at = self._last_id, self._id_at
        late, self._late = self._late, {}
        self._batch, self._bytes, self._last_id, self._id_at = [], 0, None, -1
        whole = Batch(batch, last_id, now)
        if not late:
            for follower in tuple(self._followers):
                follower.take_frames(whole)
            return
        for follower in tuple(self._followers):
            start = late.get(follower, 0)
            if not start:
                follower.take_frames(whole)
            elif start < len(batch):
                follower_id = _id_after(start, last_id, id_at)
                follower.take_frames(Batch(batch[start:], follower_id, now))

    def fail(self, error: BaseException) -> None:
        """The source failed: write what is pending, then fail every follower."""
        self.flush()
        for follower in tuple(self._followers):
            follower.source_failed(error)

    def complete(self) -> None:
        """The source completed: write what is pending, then complete every follower."""
        self.flush()
        for follower in tuple(self._followers):
            follower.source_completed()

    # -- internals ------------------------------------------------------------------------------

    def _flush_soon(self) -> None:
        self._scheduled = None
        if not self._hot.hold(self._bytes, self.flush):
            self.flush()


def _id_after(start: int, last_id: str | None, id_at: int) -> str | None:
    """The last event id among a batch's frames from ``start`` on (``last_id`` is that of the
    frame at ``id_at``)."""
    return last_id if id_at >= start else None


class _SubjectFeed(LoopObserver):
    """The one subscription of a loop's streams to a plain ``Subject``."""

    __slots__ = ("_feeds", "_key", "_subscription", "fanout", "loop")

    def __init__(
        self, subject: Subject[Any], loop: asyncio.AbstractEventLoop, feeds: dict[int, Any]
    ) -> None:
        self.loop = loop
        super().__init__()
        self.fanout = Fanout(loop)
        self._feeds = feeds
        self._key = id(subject)
        self._subscription: abc.DisposableBase | None = None

    def subscribe(self, subject: Subject[Any]) -> None:
        self._subscription = subject.subscribe(self.on_next, self.on_error, self.on_completed)

    def leave(self, follower: Follower) -> None:
        self.fanout.discard(follower)
        if not self.fanout and self._feeds.get(self._key) is self:
            del self._feeds[self._key]  # the last one out lets go of the subject
            subscription, self._subscription = self._subscription, None
            if subscription is not None:
                subscription.dispose()

    def _loop(self) -> asyncio.AbstractEventLoop:
        return self.loop

    def _next(self, value: Any) -> None:
        event = event_of(value)
        try:
            self.fanout.send(event)
        except Exception as exc:  # unencodable data fails the streams, like any Rx error
            self._fail(exc)

    def _fail(self, error: BaseException) -> None:
        self.fanout.fail(error)

    def _completed(self) -> None:
        self.fanout.complete()


class Following(abc.DisposableBase):
    """A stream's place among a source's followers; disposing it leaves."""

    __slots__ = ("_feed", "_follower")

    def __init__(self, feed: _SubjectFeed, follower: Follower) -> None:
        self._feed: _SubjectFeed | None = feed
        self._follower = follower

    def catch_up(self) -> None:
        """Take what is pending for this stream now."""
        if self._feed is not None:
            self._feed.fanout.catch_up(self._follower)

    def dispose(self) -> None:
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.leave(self._follower)


def is_plain_subject(source: object) -> bool:
    """Whether ``source`` is a ``Subject`` whose subscribers all get the same events (not a
    Behavior, Replay or Async subject, which give each subscriber something of its own)."""
    return type(source) is Subject


def follow_subject(subject: Subject[Any], follower: Follower) -> Following:
    """Make ``follower`` follow ``subject`` through its loop's one subscription to it."""
    loop = asyncio.get_running_loop()
    feeds = _feeds(loop)
    feed = feeds.get(id(subject))
    new = feed is None
    if feed is None:
        feed = feeds[id(subject)] = _SubjectFeed(subject, loop, feeds)
    feed.fanout.add(follower)
    following = Following(feed, follower)
    if new:
        feed.subscribe(subject)  # (a completed subject completes the follower here)
    return following


_feeds = PerLoop(lambda loop: dict[int, Any]()).of
