"""The loop's heartbeats: one timer for every stream, each looked at when it is due."""

from __future__ import annotations

import asyncio

from rxsse.streaming._heartbeat import TICK, Heartbeats
from tests.conftest import wait_until


class Stream:
    """Asks to be looked at again after ``period`` seconds; records when it was."""

    def __init__(self, period: float | None) -> None:
        self.period = period
        self.heartbeat_slot = 0
        self.looked: list[float] = []

    def beat(self, now: float) -> float | None:
        self.looked.append(now)
        return None if self.period is None else now + self.period


async def test_each_stream_is_looked_at_when_due_whatever_the_others_ask():
    loop = asyncio.get_running_loop()
    beats = Heartbeats(loop)
    soon, later = Stream(period=60.0), Stream(period=None)
    start = loop.time()
    beats.add(soon, start + TICK)
    beats.add(later, start + 6 * TICK)
    # `soon` comes first and asks for a minute from now: `later` is still looked at in time.
    await wait_until(lambda: len(later.looked) == 1, timeout=2)
    assert later.looked[0] >= start + 6 * TICK
    assert len(soon.looked) == 1


async def test_a_stream_that_ended_is_not_looked_at():
    loop = asyncio.get_running_loop()
    beats = Heartbeats(loop)
    gone, staying = Stream(period=None), Stream(period=None)
    beats.add(gone, loop.time() + TICK)
    beats.add(staying, loop.time() + 2 * TICK)
    beats.discard(gone)
    await wait_until(lambda: len(staying.looked) == 1, timeout=2)
    assert gone.looked == []
