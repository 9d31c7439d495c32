"""Publishing through Redis at the broker's speed: a round trip of emits is one script, bursts
are not refused, an awaited publish waits for room (a bound on memory), an emit Redis refuses
fails alone, and a Redis that lost its scripts is given them again."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from rxsse import EmitError, EventBus, MessageEvent, RedisBroker
from tests.conftest import wait_until


def redis_bus(url: str, **options: Any) -> tuple[EventBus, str]:
    prefix = uuid.uuid4().hex
    return EventBus(RedisBroker(url, prefix=prefix, **options)), prefix


def sequence_numbers(ids: list[str]) -> list[int]:
    return [int(event_id.partition("-")[0]) for event_id in ids]


async def test_bursts_of_emits_are_all_published_in_order(redis_server):
    """A producer of 20,000 events in bursts of 1,000 per loop iteration: none is refused, and
    every subscriber gets them all, once, in order."""
    bus, _ = redis_bus(redis_server.url)
    await bus.start()
    got: list[MessageEvent] = []
    subscription = bus.on("prices").subscribe(got.append)
    try:
        for start in range(0, 20_000, 1000):
            for n in range(start, start + 1000):
                bus.emit("prices", n)
            await asyncio.sleep(0)  # one loop iteration per burst
        await bus.publish("prices", "last")
        await wait_until(lambda: len(got) == 20_001, timeout=30)
        assert [event.data for event in got] == [*range(20_000), "last"]
        ids = sequence_numbers([str(event.id) for event in got])
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert bus.metrics.emits_rejected == 0 and bus.metrics.emit_failures == 0
        assert bus.metrics.emitted == 20_001
    finally:
        subscription.dispose()
        await bus.close()


async def test_an_awaited_publish_waits_for_room_instead_of_failing(redis_server):
    """5,000 publishes at once through a broker that may hold about 40 KB of them: each waits
    for room, none fails, and what waits never holds more than the bound."""
    bound = 40_000
    bus, _ = redis_bus(redis_server.url, max_pending_bytes=bound)
    broker = bus.broker
    peak = 0

    def sample() -> None:  # every loop iteration while the publishes run
        nonlocal peak
        peak = max(peak, broker._outbox.bytes)
        if not done.is_set():
            asyncio.get_running_loop().call_soon(sample)

    done = asyncio.Event()
    try:
        asyncio.get_running_loop().call_soon(sample)
        ids = await asyncio.gather(*(bus.publish("t", {"n": n}) for n in range(5000)))
        done.set()
        numbers = sequence_numbers(list(ids))
        assert numbers == sorted(numbers) and len(set(numbers)) == 5000  # in order, once each
        assert bus.metrics.emits_rejected == 0 and bus.metrics.emit_failures == 0
        assert 0 < peak <= bound
    finally:
        done.set()
        await bus.close()


async def test_an_event_larger_than_the_bound_goes_alone(redis_server):
    """An awaited publish of more than max_pending_bytes does not wait for ever: it goes when
    nothing else waits."""
    bus, _ = redis_bus(redis_server.url, max_pending_bytes=1000)
    try:
        big = "x" * 5000
        both = asyncio.gather(bus.publish("t", big), bus.publish("t", big))
        first, second = await asyncio.wait_for(both, 10)  # (a deadline: it would hang)
        assert sequence_numbers([second]) == [sequence_numbers([first])[0] + 1]
        bus.emit("t", big)  # nothing waits now: taken
        assert bus.metrics.emits_rejected == 0
        await bus.publish("t", "last")
        assert bus.metrics.emitted == 4
    finally:
        await bus.close()


async def test_an_emit_redis_refuses_fails_alone(redis_server):
    """A topic whose key holds something else than a stream: its emit fails with Redis's error,
    the emits beside it in the same round trip are published, and no sequence number is
    used twice."""
    bus, prefix = redis_bus(redis_server.url)
    redis_server.command("SET", f"{{{prefix}}}:t:broken", "not-a-stream")
    await bus.start()  # (its origin_id is exact once started)
    try:
        results = await asyncio.gather(
            bus.publish("fine", 1),
            bus.publish("broken", 2),
            bus.publish("fine", 3),
            return_exceptions=True,
        )
        first, failed, third = results
        assert isinstance(failed, EmitError) and "WRONGTYPE" in str(failed)
        assert isinstance(first, str) and isinstance(third, str)
        after = await bus.publish("fine", 4)
        assert sequence_numbers([first, third, after]) == [
            sequence_numbers([first])[0] + n for n in (0, 1, 2)
        ]
        replayed: list[MessageEvent] = []
        subscription = bus.on("fine", last_event_id=bus.origin_id).subscribe(replayed.append)
        await wait_until(lambda: len(replayed) == 3)
        subscription.dispose()
        assert [event.data for event in replayed] == [1, 3, 4]
        assert bus.metrics.emit_failures == 1
    finally:
        await bus.close()


async def test_a_round_trip_stopped_midway_uses_no_sequence_number_twice(redis_server):
    """The firehose's key holds something else: the first emit goes into its log, then the
    script stops. The emits after it fail with the error; once the key is fixed, publishing
    goes on after the number the first one took (none is given twice)."""
    bus, prefix = redis_bus(redis_server.url)
    first = await bus.publish("t", 0)
    redis_server.command("DEL", f"{{{prefix}}}:all")
    redis_server.command("SET", f"{{{prefix}}}:all", "not-a-stream")
    try:
        results = await asyncio.gather(
            *(bus.publish("t", n) for n in (1, 2, 3)), return_exceptions=True
        )
        answered, *stopped = results
        assert isinstance(answered, str)  # in its log before the firehose failed
        assert all(isinstance(r, EmitError) and "WRONGTYPE" in str(r) for r in stopped)
        redis_server.command("DEL", f"{{{prefix}}}:all")
        after = await bus.publish("t", 4)
        assert sequence_numbers([first, answered, after]) == [
            sequence_numbers([first])[0] + n for n in (0, 1, 2)
        ]
        assert bus.metrics.emit_failures == 2
    finally:
        await bus.close()


async def test_a_redis_that_lost_its_scripts_gets_them_again(redis_server):
    bus, _ = redis_bus(redis_server.url)
    try:
        first = await bus.publish("t", 1)
        redis_server.command("SCRIPT", "FLUSH")  # as a restarted or replaced Redis
        second = await bus.publish("t", 2)
        assert sequence_numbers([second]) == [sequence_numbers([first])[0] + 1]
        assert bus.metrics.emit_failures == 0
    finally:
        await bus.close()


def test_max_pending_is_now_a_bound_in_bytes():
    with pytest.raises(TypeError, match=r"RedisBroker\(max_pending_bytes=...\)"):
        RedisBroker(max_pending=1000)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="max_pending_bytes"):
        RedisBroker(max_pending_bytes=0)
