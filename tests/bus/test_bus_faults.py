"""The bus under real faults: a real redis-server that the tests stop, kill, pause, wipe and roll
back to an older snapshot. No event is lost silently, no bad event poisons a stream, and a
failed emit can be retried without creating a duplicate."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import uuid
from typing import Any

import pytest
import reactivex as rx
from aiohttp import web
from redis.asyncio import Redis

import rxsse
from rxsse import EmitError, EventBus, MessageEvent, RedisBroker, controller, post, sse
from rxsse.testing import EventReader
from tests.conftest import RedisServer, wait_until


def orders_app(bus: EventBus) -> web.Application:
    """The Orders example of docs/bus.md: POST /orders publishes its body (idempotent with an
    ``Idempotency-Key``), GET /orders/events streams it, resuming from Last-Event-ID."""

    @controller()
    class Orders:
        @post("/orders")
        async def create(self, request: web.Request, body: Any, bus: EventBus) -> dict[str, str]:
            key = request.headers.get("Idempotency-Key")
            return {"id": await bus.publish("orders.created", body, key=key)}

        @sse("/orders/events")
        def events(
            self, bus: EventBus, last_event_id: str | None = None
        ) -> rx.Observable[MessageEvent]:
            return bus.on("orders.*", last_event_id=last_event_id)

    app = web.Application()
    rxsse.setup(app, Orders(), options=rxsse.StreamOptions(heartbeat=None), bus=bus)
    return app


def new_bus(kind: str, redis: RedisServer, **broker_options: Any) -> EventBus:
    if kind == "memory":
        return EventBus()
    return EventBus(RedisBroker(redis.url, prefix=uuid.uuid4().hex, **broker_options))


async def post_order(client: Any, order: Any, **kwargs: Any) -> tuple[int, Any]:
    async with client.post("/orders", json=order, **kwargs) as response:
        return response.status, await response.json()


async def post_until_up(client: Any, order: Any, **kwargs: Any) -> str:
    """POST an order, again while Redis is still coming back (503), with a deadline."""
    for _ in range(300):
        status, body = await post_order(client, order, **kwargs)
        if status == 200:
            return str(body["id"])
        assert status == 503, body
        await asyncio.sleep(0.05)
    raise AssertionError("Redis did not come back")


def numbers(events: list[MessageEvent]) -> list[Any]:
    """Each event's order number, or "reset"."""
    return ["reset" if e.type == "reset" else json.loads(e.data)["n"] for e in events]


# -- 1, 2: bad events are refused alone, before anything is stored -------------------------------


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_what_json_cannot_carry_is_refused_before_anything_is_stored(
    serve, redis_server, kind
):
    bus = new_bus(kind, redis_server)
    client = await serve(orders_app(bus))
    stream = EventReader(await client.get("/orders/events"))
    await wait_until(lambda: bus.live_subscriptions == 1)
    for body in (b'{"x": NaN}', b'{"x": Infinity}', b"[-Infinity]", b'{"x": "\\ud800"}'):
        async with client.post("/orders", data=body) as response:
            assert response.status == 400, body
            assert "not valid JSON" in (await response.json())["error"]
    for data in ({"x": float("nan")}, [float("inf")], {"x": "\ud800"}, {"x": object()}):
        with pytest.raises(ValueError, match="cannot be sent"):
            bus.emit("orders.created", data)
    status, body = await post_order(client, {"n": 1})
    assert status == 200
    event = await stream.next()
    assert (event.type, event.id, json.loads(event.data)) == ("message", body["id"], {"n": 1})
    # A resume from before it all replays the one good event, and the stream lives on.
    resumed = EventReader(
        await client.get("/orders/events", headers={"Last-Event-ID": bus.origin_id})
    )
    assert numbers(await resumed.take(1)) == [1]
    await post_order(client, {"n": 2})
    assert numbers(await resumed.take(1)) == [2]


async def test_an_entry_no_process_can_read_is_a_reset_not_a_poisoned_stream(serve, redis_server):
    prefix = uuid.uuid4().hex
    bus = EventBus(RedisBroker(redis_server.url, prefix=prefix))
    client = await serve(orders_app(bus))
    stream = EventReader(await client.get("/orders/events"))
    await wait_until(lambda: bus.live_subscriptions == 1)
    _, first = await post_order(client, {"n": 1})
    # Another writer (an older version, a script) appends an entry that is not JSON.
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    epoch = await redis.get(f"{{{prefix}}}:epoch")
    seq = await redis.incr(f"{{{prefix}}}:seq")
    fields = {"t": "orders.created", "d": "NaN", "y": "", "e": epoch}
    await redis.xadd(f"{{{prefix}}}:t:orders.created", {**fields, "ts": "0"}, id=f"{seq}-0")
    await redis.xadd(f"{{{prefix}}}:all", fields, id=f"{seq}-0")
    await redis.aclose()
    await post_order(client, {"n": 3})
    live = await stream.take(3)
    assert numbers(live) == [1, "reset", 3]
    assert live[1].id == f"{seq}-{epoch}"
    resumed = await client.get("/orders/events", headers={"Last-Event-ID": first["id"]})
    assert numbers(await EventReader(resumed).take(2)) == ["reset", 3]


async def test_one_bad_emit_in_a_round_trip_fails_alone(serve, redis_server):
    bus = new_bus("redis", redis_server)
    client = await serve(orders_app(bus))
    stream = EventReader(await client.get("/orders/events"))
    await wait_until(lambda: bus.live_subscriptions == 1)

    async def send(n: int) -> int:
        body = b'{"n": "\\ud800"}' if n == 25 else b'{"n": %d}' % n
        async with client.post("/orders", data=body) as response:
            return response.status

    statuses = await asyncio.gather(*(send(n) for n in range(50)))
    assert statuses[25] == 400
    assert statuses[:25] + statuses[26:] == [200] * 49
    received = await stream.take(49)
    assert sorted(numbers(received)) == [n for n in range(50) if n != 25]


# -- 3: a data set that goes back in time is announced, never skipped ----------------------------


async def test_a_resume_into_a_redis_that_came_back_empty_is_a_reset(serve, own_redis_server):
    bus = EventBus(RedisBroker(own_redis_server.url, block_ms=100, emit_timeout=1))
    client = await serve(orders_app(bus))
    seen = [await post_until_up(client, {"n": n}) for n in range(10)]
    own_redis_server.wipe()
    own_redis_server.start()
    for n in range(100, 130):  # a new data set: its counter starts again at 1
        await post_until_up(client, {"n": n})
    resumed = EventReader(await client.get("/orders/events", headers={"Last-Event-ID": seen[-1]}))
    await post_until_up(client, {"n": 200})
    events = [await resumed.next()]
    while numbers(events)[-1] != 200:
        events.append(await resumed.next())
    # Not events 11..30 of the new data set as if they came after 10: a reset first (the
    # reader's own reset may follow), then whatever comes after the last reset's id.
    assert events[0].type == "reset"
    last = max(i for i, event in enumerate(events) if event.type == "reset")
    after = [int(str(event.id).split("-")[0]) for event in events[last:]]
    assert after == list(range(after[0], after[0] + len(after)))


async def test_connected_subscribers_get_a_reset_when_redis_rolls_back(serve, own_redis_server):
    """SAVE, 300 more acknowledged events, kill -9, restart from the snapshot: the 20
    connected subscribers had those 300; the next events reuse no id of theirs, and a reset
    tells them where the data set they knew ends."""
    bus = EventBus(RedisBroker(own_redis_server.url, block_ms=100, emit_timeout=1))
    client = await serve(orders_app(bus))
    readers = [EventReader(await client.get("/orders/events")) for _ in range(20)]
    await wait_until(lambda: bus.live_subscriptions == 20)
    ids = [await bus.publish("orders.created", {"n": n}) for n in range(100)]
    own_redis_server.save()
    ids += [await bus.publish("orders.created", {"n": n}) for n in range(100, 400)]
    for reader in readers:
        assert numbers(await reader.take(400)) == list(range(400))
    own_redis_server.kill()
    own_redis_server.start(from_snapshot=True)
    later = [await post_until_up(client, {"n": n}) for n in range(400, 450)]
    assert not set(later) & set(ids)  # no id names two events
    for reader in readers:
        events = await reader.take(51)
        assert numbers(events) == ["reset", *range(400, 450)]
        assert events[0].id == ids[99]  # the last event the snapshot kept
    # A client that saw the lost events and resumes is told too.
    resumed = await client.get("/orders/events", headers={"Last-Event-ID": ids[-1]})
    assert numbers(await EventReader(resumed).take(1)) == ["reset"]
    # One that resumes from the reset's id misses nothing of the new data set.
    resumed = await client.get("/orders/events", headers={"Last-Event-ID": ids[99]})
    assert numbers(await EventReader(resumed).take(50)) == list(range(400, 450))


# -- 5, 6: a stalled Redis: bounded waits, bounded memory, retries that do not duplicate --------


async def test_an_emit_retried_after_redis_stalled_is_delivered_once(serve, own_redis_server):
    bus = EventBus(RedisBroker(own_redis_server.url, emit_timeout=1))
    client = await serve(orders_app(bus))
    stream = EventReader(await client.get("/orders/events"))
    await wait_until(lambda: bus.live_subscriptions == 1)
    assert (await post_order(client, {"n": 0}))[0] == 200
    assert numbers(await stream.take(1)) == [0]
    own_redis_server.pause()
    try:
        status, body = await post_order(client, {"n": 1}, headers={"Idempotency-Key": "order-1"})
    finally:
        own_redis_server.resume()
    assert status == 503
    assert "may or may not have been published" in body["error"]
    # Redis runs the emit it had received before it froze: the event is out.
    (published,) = await stream.take(1)
    assert numbers([published]) == [1]
    status, retried = await post_order(client, {"n": 1}, headers={"Idempotency-Key": "order-1"})
    assert (status, retried["id"]) == (200, published.id)  # the first one's id: not again
    status, _ = await post_order(client, {"n": 2}, headers={"Idempotency-Key": "order-2"})
    assert numbers(await stream.take(1)) == [2]  # not a second 1
    assert bus.metrics.emit_failures == 1


async def test_emits_waiting_for_a_frozen_redis_are_bounded_and_fail_fast(own_redis_server, caplog):
    caplog.set_level(logging.WARNING)
    # Each emit below holds 207 bytes while it waits (its data "0001", its topic, 200 more):
    # 1,000 of them fit.
    bus = EventBus(RedisBroker(own_redis_server.url, max_pending_bytes=207_000, emit_timeout=1))
    await bus.start()
    try:
        own_redis_server.pause()
        for n in range(5000):
            bus.emit("t", f"{n:04d}")  # fire and forget
        assert bus.metrics.emits_rejected == 4000  # at once: no more than 1,000 wait
        # An awaited publish waits for room (back-pressure) instead, then fails with its own
        # round trip to the frozen server.
        waiting = asyncio.ensure_future(bus.publish("t", "waits"))
        await wait_until(lambda: bus.metrics.emit_failures == 1000, timeout=10)
        with pytest.raises(EmitError):
            await waiting
        assert bus.metrics.emits_rejected == 4000 and bus.metrics.emit_failures == 1001
        own_redis_server.resume()
        await wait_until(lambda: own_redis_server.ping())
        assert await bus.publish("t", "after") is not None
        assert bus.metrics.emitted == 1  # the frozen server confirmed none of the 5,000
    finally:
        own_redis_server.resume()
        await bus.close()
    gc.collect()
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "never retrieved" in m]
    failures = [m for m in messages if "emit(s) to Redis" in m]
    assert 1 <= len(failures) <= 3, failures  # a line per burst, not one per emit


# -- several processes, several restarts ----------------------------------------------------------


async def test_a_rollback_is_announced_whichever_process_writes_first(own_redis_server):
    """Process 1 serves a subscriber that saw 100 events; Redis comes back from a snapshot of
    90; a process that started after the restart, and so saw none of them, writes first. The
    subscriber still gets a reset at 90, then the new events: the new 91..100 are not taken
    for the ones it had."""
    url = own_redis_server.url
    serving = EventBus(RedisBroker(url, block_ms=100, emit_timeout=1))
    await serving.start()
    events: list[MessageEvent] = []
    subscription = serving.on("t").subscribe(events.append)
    ids = [await serving.publish("t", {"n": n}) for n in range(90)]
    own_redis_server.save()
    ids += [await serving.publish("t", {"n": n}) for n in range(90, 100)]
    await wait_until(lambda: len(events) == 100)
    own_redis_server.kill()
    own_redis_server.start(from_snapshot=True)
    newcomer = EventBus(RedisBroker(url, emit_timeout=1))
    await newcomer.start()
    try:
        later = [await newcomer.publish("t", {"n": n}) for n in range(100, 120)]
        await wait_until(lambda: len(events) == 121)
        assert [e.type if e.type == "reset" else e.data["n"] for e in events] == [
            *range(100), "reset", *range(100, 120),
        ]  # fmt: skip
        assert events[100].id == ids[89]  # the last event the snapshot kept
        assert not set(later) & set(ids)
    finally:
        subscription.dispose()
        await newcomer.close()
        await serving.close()


async def test_only_a_restart_of_redis_begins_an_epoch(own_redis_server):
    """Fences run before every round trip of emits and on every reconnect of every reader;
    only the first after each start of the server begins an epoch (no storm of them)."""
    url = own_redis_server.url
    buses = [EventBus(RedisBroker(url, block_ms=50, emit_timeout=1)) for _ in range(3)]
    for bus in buses:
        await bus.start()
    try:
        for restart in range(3):
            for n, bus in enumerate(buses):
                await bus.publish("t", n)
            own_redis_server.stop()  # a clean restart: nothing is lost
            own_redis_server.start()
            for bus in buses:  # each one's first round trip after the restart
                while True:
                    try:
                        await bus.publish("t", "again")
                        break
                    except EmitError:
                        await asyncio.sleep(0.05)
            # One epoch for the first start, and one for each restart.
            assert own_redis_server.command("LLEN", "{rxsse}:epochs") == b":%d" % (restart + 2)
    finally:
        for bus in buses:
            await bus.close()


def readers(server: RedisServer) -> int:
    """How many connections follow the firehose (their last command was XREAD)."""
    return sum(" cmd=xread " in line for line in server.clients())


async def test_subscribers_before_the_bus_started_start_one_reader(own_redis_server):
    bus = EventBus(RedisBroker(own_redis_server.url, emit_timeout=1))
    try:
        early = []
        for _ in range(3):  # all before the bus has connected: they wait for one start
            events: list[MessageEvent] = []
            early.append((events, bus.on("t").subscribe(events.append)))
        await wait_until(lambda: bus.live_subscriptions == 3)
        for n in range(3):
            await bus.publish("t", n)
        for events, _ in early:
            await wait_until(lambda events=events: len(events) >= 3)
            assert [e.data for e in events] == [0, 1, 2]  # once each: no second reader
        assert readers(own_redis_server) == 1
        for _, subscription in early:
            subscription.dispose()
    finally:
        await bus.close()


async def test_a_process_that_only_publishes_runs_no_reader(own_redis_server):
    serving = EventBus(RedisBroker(own_redis_server.url))
    publishing = EventBus(RedisBroker(own_redis_server.url))
    await serving.start()
    try:
        events: list[MessageEvent] = []
        subscription = serving.on("t").subscribe(events.append)
        publishing.emit("t", "fire and forget")  # no start(): it connects to publish
        first = await publishing.publish("t", "awaited")
        await wait_until(lambda: len(events) == 2)
        assert [e.data for e in events] == ["fire and forget", "awaited"]
        assert events[1].id == first
        assert readers(own_redis_server) == 1  # the serving process's alone
        subscription.dispose()
    finally:
        await publishing.close()
        await serving.close()


async def test_a_publish_whose_caller_gave_up_does_not_stop_the_others(own_redis_server):
    bus = EventBus(RedisBroker(own_redis_server.url, emit_timeout=2))
    await bus.start()
    try:
        own_redis_server.pause()
        given_up = asyncio.ensure_future(bus.publish("t", "given up"))
        await asyncio.sleep(0)  # (it is queued)
        given_up.cancel()
        own_redis_server.resume()
        assert await bus.publish("t", "after") is not None
    finally:
        own_redis_server.resume()
        await bus.close()


async def test_clients_moving_between_processes_see_each_event_once(redis_server):
    """Events are emitted through one process; clients resume on another, from ids the first
    one just handed out (often past what the second one's reader has delivered yet)."""
    prefix = uuid.uuid4().hex
    emitting = EventBus(RedisBroker(redis_server.url, prefix=prefix))
    serving = EventBus(RedisBroker(redis_server.url, prefix=prefix))
    await emitting.start()
    await serving.start()
    try:
        ids: list[str] = []
        watchers: list[tuple[int, list[MessageEvent], Any]] = []
        for n in range(300):
            ids.append(await emitting.publish("t", n))
            if n % 10 == 5:
                events: list[MessageEvent] = []
                subscription = serving.on("t", last_event_id=ids[-1]).subscribe(events.append)
                watchers.append((n, events, subscription))
        for n, events, subscription in watchers:
            expected = list(range(n + 1, 300))
            await wait_until(lambda e=events, x=expected: len(e) >= len(x))
            assert [e.data for e in events] == expected, f"resumed after {n}"
            subscription.dispose()
    finally:
        await emitting.close()
        await serving.close()
