"""Presence: who is listening on a topic, in every process of a bus.

Each process keeps its own members per topic (identity -> open subscriptions) and writes them
as one field of the topic's shared record (:mod:`rxsse.bus._shared`), stamped with a deadline it
renews every ``interval``: a process that crashes stops renewing, and its members drop out
``3 * interval`` later. Watchers of a topic read the record after each local change and every
``interval``, and get ``join`` / ``leave`` events when the set of identities changes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from .._checks import check_seconds
from ._shared import SharedState

logger = logging.getLogger("rxsse.bus")


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A change of who listens on ``topic`` (what ``bus.presence(topic)`` emits).

    Attributes:
        kind: ``"sync"`` (the first event of a subscription, and any change of connection
            counts alone), ``"join"`` (``member`` opened its first subscription) or
            ``"leave"`` (``member`` closed its last one, or its process stopped renewing).
        topic: the topic.
        member: who joined or left (None for ``sync``).
        members: every identity present, with its number of open subscriptions.
    """

    kind: Literal["sync", "join", "leave"]
    topic: str
    member: str | None
    members: Mapping[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """How many identities are present (people, not connections)."""
        return len(self.members)

    @property
    def connections(self) -> int:
        """How many subscriptions are open, all identities together."""
        return sum(self.members.values())

    def as_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data (for an SSE frame)."""
        return {
            "kind": self.kind,
            "topic": self.topic,
            "member": self.member,
            "count": self.count,
            "connections": self.connections,
            "members": dict(self.members),
        }


class _Watch:
    """One subscriber to a topic's presence: what it was last told."""

    __slots__ = ("known", "observer", "topic")

    def __init__(self, topic: str, observer: abc.ObserverBase[PresenceEvent]) -> None:
        self.topic = topic
        self.observer = observer
        self.known: dict[str, int] | None = None

    def update(self, members: dict[str, int]) -> None:
        known, self.known = self.known, members
        if known is None:
            self.observer.on_next(PresenceEvent("sync", self.topic, None, dict(members)))
            return
        changed = False
        for member in known.keys() - members.keys():
            changed = True
            self.observer.on_next(PresenceEvent("leave", self.topic, member, dict(members)))
        for member in members.keys() - known.keys():
            changed = True
            self.observer.on_next(PresenceEvent("join", self.topic, member, dict(members)))
        if not changed and known != members:
            self.observer.on_next(PresenceEvent("sync", self.topic, None, dict(members)))


class PresenceTracker:
    """The presence of one bus in this process (see :meth:`rxsse.EventBus.presence`).

    Args:
        state: the shared records.
        interval: seconds between renewals and reads; a crashed process's members drop out
            within about four of them.
    """

    def __init__(self, state: SharedState, *, interval: float = 1.0) -> None:
        check_seconds("presence_interval", interval)
        self.interval = interval
        self.process = uuid.uuid4().hex[:12]
        self.state = state
        self._local: dict[str, collections.Counter[str]] = {}
        self._dirty: set[str] = set()
        self._watches: dict[str, list[_Watch]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._closed = False

    def join(self, topic: str, member: str) -> abc.DisposableBase:
        """Count one subscription of ``member`` on ``topic`` until the disposable is disposed."""
        check_member(member)
        self._local.setdefault(topic, collections.Counter())[member] += 1
        self._changed(topic)

        def leave() -> None:
            members = self._local.get(topic)
            if members is None:
                return
            members[member] -= 1
            if members[member] <= 0:
                del members[member]
            if not members:
                del self._local[topic]
            self._changed(topic)

        return Disposable(leave)

    def observe(self, topic: str, member: str | None = None) -> Observable[PresenceEvent]:
        """The presence of ``topic``: a ``sync`` event, then a ``join`` / ``leave`` for each
        change. With ``member``, the subscription is present itself, as that identity."""

        def subscribe(
            observer: abc.ObserverBase[PresenceEvent], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            watch = _Watch(topic, observer)
            self._watches.setdefault(topic, []).append(watch)
            joined = self.join(topic, member) if member is not None else None
            self._changed(topic)

            def dispose() -> None:
                watches = self._watches.get(topic, [])
                if watch in watches:
                    watches.remove(watch)
                if not watches:
                    self._watches.pop(topic, None)
                if joined is not None:
                    joined.dispose()

            return Disposable(dispose)

        return Observable(subscribe)

    async def members(self, topic: str) -> dict[str, int]:
        """Who is present on ``topic`` now, in every process (identity -> subscriptions)."""
        fields = await self.state.read(_record(topic))
        return _merge(map(_stamp, fields.values()), time.time())

    def _changed(self, topic: str) -> None:
        self._dirty.add(topic)
        self._wake.set()
        if self._closed:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rxsse-presence")

    async def _run(self) -> None:
        renewed = 0.0
        while (self._local or self._watches or self._dirty) and not self._closed:
            self._wake.clear()
            now = time.monotonic()
            try:
                renew = now - renewed >= self.interval
                if renew:
                    renewed = now
                await self._write(set(self._local) | self._dirty if renew else set(self._dirty))
                await self._read()
                self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # presence is soft state: try again at the next turn
                if not self._failing:
                    logger.warning("presence could not reach its shared state: %s", exc)
                self._failing = True
            # (asyncio.timeout, not wait_for: 3.11's wait_for may swallow a cancel)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()

    async def _write(self, topics: set[str]) -> None:
        ttl = 3 * self.interval
        for topic in topics:
            self._dirty.discard(topic)
            members = self._local.get(topic)
            if members:
                stamp = {"until": time.time() + ttl, "members": dict(members)}
                await self.state.put(_record(topic), {self.process: json.dumps(stamp)}, ttl)
            else:
                await self.state.remove(_record(topic), [self.process])

    async def _read(self) -> None:
        for topic, watches in list(self._watches.items()):
            fields = await self.state.read(_record(topic))
            now = time.time()
            stamps = {process: _stamp(raw) for process, raw in fields.items()}
            members = _merge(stamps.values(), now)
            gone = [p for p, st in stamps.items() if st is None or st[0] < now - _GONE_AFTER]
            if gone:  # processes that stopped renewing long ago (crashed): tidy the record
                await self.state.remove(_record(topic), gone)
            for watch in list(watches):
                watch.update(members)

    async def close(self) -> None:
        """Stop renewing, and take this process's members out of the shared records."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        topics, self._local = list(self._local), {}
        for topic in topics:
            with contextlib.suppress(Exception):
                await self.state.remove(_record(topic), [self.process])
        self._closed = False  # (a bus may be started again, on another loop)


def check_member(member: str | None) -> str | None:
    """``member`` if it is None or an identity (a non-empty string).

    Raises:
        ValueError: for anything else.
    """
    if member is not None and (not isinstance(member, str) or not member):
        raise ValueError(f"a presence member must be a non-empty string, not {member!r}")
    return member


def _record(topic: str) -> str:
    return f"presence:{topic}"


#: A process's field of a record: its deadline, and its members (None: a field this version
#: cannot read, which counts no one).
_Stamp = tuple[float, "dict[str, int] | None"]
#: A field this long past its deadline belongs to a process that is gone: it is removed.
_GONE_AFTER = 60.0


def _stamp(raw: str) -> _Stamp | None:
    """A field read once (None when not even its deadline can be read)."""
    try:
        stamp = json.loads(raw)
        until = float(stamp["until"])
    except (ValueError, KeyError, TypeError):
        return None
    try:
        return until, {str(k): int(v) for k, v in stamp["members"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return until, None


def _merge(stamps: Iterable[_Stamp | None], now: float) -> dict[str, int]:
    """The members of every process whose stamp has not run out."""
    members: collections.Counter[str] = collections.Counter()
    for stamp in stamps:
        if stamp is not None and stamp[1] is not None and stamp[0] > now:
            members.update(stamp[1])
    return dict(members)
