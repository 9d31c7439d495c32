"""The emits a networked broker has not sent yet: a queue bounded by memory, sent in batches, in
order, and failed together when the broker does not answer.

``await publish`` waits for room (back-pressure); ``emit``, which cannot wait, is refused when
the queue is full. A batch that gets no answer fails with everything queued behind it: those
emits have waited as long, and would only wait their own turn to fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from ._broker import EmitError, EmitFailures, Outgoing

# What an emit costs while it waits, beyond its data and topic: the objects holding it.
_OVERHEAD: Final = 200
#: An emit on its way, and who waits for its id (None: an ``emit``, which nobody awaits).
Pending = tuple[Outgoing, "asyncio.Future[str] | None"]


class EmitQueue:
    """Queued emits and the batch under way, holding at most about ``max_bytes``.

    Make it on the loop that sends (its events belong to that loop); :meth:`fail` reports
    through ``failures``, which the broker may replace when the bus binds it.
    """

    __slots__ = ("_max_bytes", "_queued", "_ready", "_room", "bytes", "failures", "in_flight")

    def __init__(self, max_bytes: int, failures: EmitFailures) -> None:
        self._max_bytes = max_bytes
        self.failures = failures
        self.bytes = 0  #: what the queue and the batch under way hold
        self._queued: list[Pending] = []
        self.in_flight: list[Pending] = []  #: the batch being sent
        self._ready = asyncio.Event()  # set when something is queued
        self._room = asyncio.Event()  # set when an awaited publish may queue again

    def __bool__(self) -> bool:
        return bool(self._queued)

    def full(self, event: Outgoing) -> bool:
        """Whether ``event`` would take it past its bound. (An event larger than the bound
        goes alone when nothing waits: else it never would.)"""
        return self.bytes > 0 and self.bytes + cost(event) > self._max_bytes

    async def wait_for_room(self, event: Outgoing, closed: Callable[[], bool]) -> None:
        """Wait until ``event`` fits (back-pressure), or until ``closed()`` is true."""
        while self.full(event) and not closed():
            self._room.clear()
            await self._room.wait()

    def put(self, event: Outgoing, future: asyncio.Future[str] | None) -> None:
        """Queue an emit (its ``future`` gets its id; None: nobody waits)."""
        self.bytes += cost(event)
        self._queued.append((event, future))
        self._ready.set()

    def offer(
        self, event: Outgoing, future: asyncio.Future[str] | None, *, closed: bool, server: str
    ) -> None:
        """Queue an emit, or refuse it at once when its broker is ``closed`` (without
        connecting again) or, for an ``emit`` (no ``future``: it cannot wait), when the queue
        is full. A refusal is counted and logged; ``server`` names the broker's server."""
        if closed:
            error = EmitError(f"the {server} broker is closed")
        elif future is None and self.full(event):
            error = EmitError(
                f"{size_text(self._max_bytes)} of emits are already waiting for {server}"
            )
        else:
            self.put(event, future)
            return
        self.fail([(event, future)], error, rejected=True)

    async def wait_ready(self) -> None:
        """Wait until something is queued."""
        while not self._queued:
            self._ready.clear()
            await self._ready.wait()

    def next_batch(self, count: int, size: int) -> list[Pending]:
        """The next batch, in order: up to ``count`` emits, about ``size`` bytes (at least one)."""
        queued, taken, held = self._queued, 0, 0
        limit = min(len(queued), count)
        while taken < limit and held < size:
            held += cost(queued[taken][0])
            taken += 1
        batch, self._queued = queued[:taken], queued[taken:]
        self.in_flight = batch
        return batch

    def done_with(self, batch: list[Pending]) -> None:
        """Free what ``batch`` held, and let awaited publishes queue again."""
        self.bytes -= sum(cost(event) for event, _ in batch)
        self.in_flight = []
        self._room.set()

    def fail_with_the_rest(self, batch: list[Pending], error: EmitError) -> None:
        """``batch`` got no answer: fail it with every emit queued behind it."""
        failed = batch + self._queued
        self._queued = []
        self.done_with(failed)
        self.fail(failed, error)

    def fail_all(self, error: EmitError) -> None:
        """Fail the batch under way and everything queued (the broker is closing)."""
        waiting = self.in_flight + self._queued
        self.in_flight, self._queued = [], []
        self.done_with(waiting)
        self.fail(waiting, error)

    def fail(self, pending: list[Pending], error: EmitError, *, rejected: bool = False) -> None:
        """Fail these emits: their futures get ``error``; all are counted and logged."""
        futures = [future for _, future in pending if future is not None]
        unawaited = len(pending) - len(futures)
        self.failures.fail(futures, error, rejected=rejected, unawaited=unawaited)


def cost(event: Outgoing) -> int:
    """The bytes an emit holds while it waits (about)."""
    return len(event.data) + len(event.topic) + _OVERHEAD


def size_text(count: int) -> str:
    """A byte count for a message: ``64 MiB``, ``1,000 bytes``."""
    return f"{count / (1 << 20):g} MiB" if count >= 1 << 20 else f"{count:,} bytes"
