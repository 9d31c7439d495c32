"""Heartbeats for every stream of a loop, from one timer.

A stream gets a ``: ping`` line each time it has been silent for its ``heartbeat``. Instead of
a timer per stream (about half a kilobyte each, for streams that are mostly idle), the streams
of a loop wait in slots of :data:`TICK` seconds by when they are next due, and one timer wakes
for the earliest slot. A ping is at most :data:`TICK` late, plus whatever delays the loop.
"""

from __future__ import annotations

import asyncio
import math
from typing import Final, Protocol

#: The width of a slot in seconds: the most a heartbeat is late because of the slots.
TICK: Final = 0.05


# A timer may fire this early (the loop's clock resolution): still on time.
_TIMER_SLACK: Final = 0.001


class Pinged(Protocol):
    """What a pulse pings: a stream's writer on a server, the run of a stream in virtual time
    (``rxsse.testing``), which is timed by the same pulse."""

    last_output: float  # when the client last got bytes (loop time)

    def ping(self) -> None:
        """Send a heartbeat line (unless frames are waiting, or the stream ended)."""


class Pulse:
    """The heartbeat of one stream: pings it when it has been silent for ``period`` seconds.

    Writes only note the time: nothing to pay per event. The next look is a period after the
    last output, so a silent stream pings every period, not every other one.
    """

    __slots__ = ("heartbeat_slot", "period", "writer")

    def __init__(self, writer: Pinged, period: float) -> None:
        self.writer = writer
        self.period = period
        self.heartbeat_slot = 0

    def beat(self, now: float) -> float | None:
        """Ping if silent for a period; return when to look again."""
        last_output = self.writer.last_output
        if now - last_output >= self.period - _TIMER_SLACK:
            self.writer.ping()
            return now + self.period
        return last_output + self.period


class Heartbeats:
    """The streams of one loop that have a heartbeat, by the slot they are next due in."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slots: dict[int, set[Pulse]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_slot = 0

    def add(self, stream: Pulse, due: float) -> None:
        """Look at ``stream`` at loop time ``due`` (at the latest a tick after)."""
        slot = stream.heartbeat_slot = math.ceil(due / TICK)
        members = self._slots.get(slot)
        if members is None:
            members = self._slots[slot] = set()
        members.add(stream)
        if self._timer is None or slot < self._timer_slot:
            self._arm(slot)

    def discard(self, stream: Pulse) -> None:
        """Forget a stream that ended (before its slot came)."""
        members = self._slots.get(stream.heartbeat_slot)
        if members is not None:
            members.discard(stream)
            if not members:
                del self._slots[stream.heartbeat_slot]

    def _arm(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_slot = slot
        self._timer = self._loop.call_at(slot * TICK, self._wake)

    def _wake(self) -> None:
        self._timer = None
        now = self._loop.time()
        reached = math.floor(now / TICK + 1e-6)  # a timer may fire a hair early
        for slot in sorted(s for s in self._slots if s <= reached):
            for stream in self._slots.pop(slot):
                due = stream.beat(now)
                if due is not None:
                    self.add(stream, due)  # (which may arm the timer for a later slot)
        if self._slots:
            first = min(self._slots)
            if self._timer is None or first < self._timer_slot:
                self._arm(first)
