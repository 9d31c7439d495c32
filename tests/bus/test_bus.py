"""The event bus, against every broker: the in-memory default, Redis (a real redis-server),
Redis Cluster (six real nodes) and NATS JetStream (a real nats-server): the broker contract,
one suite."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from typing import Any

import pytest
import reactivex as rx
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import ConnectionError as RedisConnectionError

import rxsse
from rxsse import EmitError, EventBus, MessageEvent, NatsBroker, RedisBroker
from rxsse.bus._broker import Entry
from tests.conftest import FrameReader, RedisServer, wait_until


@pytest.fixture(params=["memory", "redis", "cluster", "nats"])
async def make_bus(request) -> Any:
    """Builds started buses on each broker (Redis, NATS: a prefix of their own)."""
    url = ""
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url
    elif request.param == "cluster":
        url = request.getfixturevalue("redis_cluster").url
    elif request.param == "nats":
        url = request.getfixturevalue("nats_server").url
    buses: list[EventBus] = []

    async def make(**options: Any) -> EventBus:
        broker: rxsse.Broker | None = None
        if request.param == "nats":
            broker = NatsBroker(url, prefix=uuid.uuid4().hex)
        elif request.param != "memory":
            broker = RedisBroker(url, prefix=uuid.uuid4().hex)
        bus = EventBus(broker, **options)
        await bus.start()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close()


@pytest.fixture
async def bus(make_bus) -> EventBus:
    return await make_bus()


def bus_app(bus: EventBus) -> web.Application:
    """GET /topics/{topic} streams bus.on(topic) (a pattern too), resuming from Last-Event-ID."""

    @rxsse.sse("/topics/{topic}")
    def events(topic: str, last_event_id: str | None = None) -> rx.Observable[MessageEvent]:
        return bus.on(topic, last_event_id=last_event_id)

    app = web.Application()
    rxsse.setup(app, events, options=rxsse.StreamOptions(heartbeat=None))
    return app


def collect(bus: EventBus, topic: str, **kwargs: Any) -> tuple[list[MessageEvent], Any]:
    events: list[MessageEvent] = []
    subscription = bus.on(topic, **kwargs).subscribe(events.append)
    return events, subscription


async def test_events_carry_ordered_ids_and_their_type(bus):
    events, subscription = collect(bus, "orders.created")
    ids = [await bus.publish("orders.created", {"n": n}, type="created") for n in range(3)]
    await wait_until(lambda: len(events) == 3)
    assert [e.id for e in events] == ids
    assert [e.data for e in events] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert {e.type for e in events} == {"created"}
    seqs = [int(i.split("-")[0]) for i in ids]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    subscription.dispose()


async def test_replay_after_reconnect_gets_exactly_what_was_missed_then_live(bus, serve):
    client = await serve(bus_app(bus))
    first = await client.get("/topics/news")
    reader = FrameReader(first)
    await wait_until(lambda: bus.live_subscriptions == 1)
    ids = [await bus.publish("news", n) for n in range(1, 6)]
    assert [f.data for f in await reader.take(5)] == ["1", "2", "3", "4", "5"]
    first.close()
    await wait_until(lambda: bus.live_subscriptions == 0)
    for n in range(6, 11):
        await bus.publish("news", n)
    second = await client.get("/topics/news", headers={"Last-Event-ID": ids[-1]})
    reader = FrameReader(second)
    replayed = await reader.take(5)
    assert [f.data for f in replayed] == ["6", "7", "8", "9", "10"]
    await bus.publish("news", 11)
    assert (await reader.next()).data == "11"
    second.close()


async def test_reset_when_the_id_has_fallen_out_of_the_log(make_bus):
    bus = await make_bus(history=3)
    old = await bus.publish("log", 0)
    for n in range(1, 10):
        await bus.publish("log", n)
    events, subscription = collect(bus, "log", last_event_id=old)
    await wait_until(lambda: len(events) >= 1)
    assert events[0].type == "reset"
    await bus.publish("log", "live")
    await wait_until(lambda: events[-1].data == "live")
    subscription.dispose()


async def test_resume_inside_the_log_is_no_reset(make_bus):
    bus = await make_bus(history=3)
    ids = [await bus.publish("log", n) for n in range(10)]
    events, subscription = collect(bus, "log", last_event_id=ids[-3])
    await wait_until(lambda: len(events) == 2)
    assert [e.data for e in events] == [8, 9]
    subscription.dispose()


async def test_events_older_than_max_age_leave_the_log(make_bus):
    bus = await make_bus(max_age=0.1)  # (the least JetStream takes)
    old = await bus.publish("aging", "old")
    await bus.publish("aging", "also old")
    aged = time.monotonic() + 0.2
    await wait_until(lambda: time.monotonic() > aged, message="the events are past max_age")
    events, subscription = collect(bus, "aging", last_event_id=old)
    await wait_until(lambda: len(events) >= 1)
    assert events[0].type == "reset"
    subscription.dispose()


@pytest.mark.parametrize(
    "bad_id",
    [
        "nonsense",
        "999999-0",
        "5",
        "",
        "-1",
        "1-other",
        "9" * 5000 + "-0",  # past int()'s digit limit: a reset, not a 500
        "\u00b2-0",  # a digit to str.isdigit(), not to int()
    ],
    ids=[
        *("nonsense", "unknown", "no-epoch", "empty", "negative", "other-epoch"),
        *("5000-digits", "superscript"),
    ],
)
async def test_reset_when_the_id_is_unknown(bus, bad_id):
    await bus.publish("t", "before")
    events, subscription = collect(bus, "t", last_event_id=bad_id)
    await wait_until(lambda: len(events) >= 1)
    assert events[0].type == "reset"  # (the live "before" may follow: Redis delivers it later)
    subscription.dispose()


async def test_reset_carries_an_id_to_resume_from(bus):
    events, subscription = collect(bus, "t", last_event_id="bogus")
    await wait_until(lambda: len(events) == 1)
    subscription.dispose()
    await bus.publish("t", "after the reset")
    resumed, subscription = collect(bus, "t", last_event_id=events[0].id)
    await wait_until(lambda: len(resumed) == 1)
    assert resumed[0].data == "after the reset"
    subscription.dispose()


async def test_no_gap_no_duplicate_while_emitting_during_resumes(bus):
    """Property-style: events are emitted continuously while subscribers resume from random
    points; each must see exactly the events after its resume point, in order."""
    rng = random.Random(7)
    total = 400
    ids: list[str] = []
    watchers: list[tuple[int, list[MessageEvent], Any]] = []
    for n in range(total):
        ids.append(await bus.publish("prop", n))
        if rng.random() < 0.05:
            start = rng.randrange(len(ids))
            events, subscription = collect(bus, "prop", last_event_id=ids[start])
            watchers.append((start, events, subscription))
        if rng.random() < 0.3:
            await asyncio.sleep(0)  # let replays interleave with emits
    assert len(watchers) >= 10
    for start, events, subscription in watchers:
        expected = list(range(start + 1, total))
        await wait_until(lambda events=events, expected=expected: len(events) >= len(expected))
        assert [e.data for e in events] == expected
        assert [e.id for e in events] == ids[start + 1 :]
        subscription.dispose()


async def test_patterns_match_one_segment_or_any_depth(bus):
    one, sub_one = collect(bus, "orders.*")
    deep, sub_deep = collect(bus, "orders.**")
    exact, sub_exact = collect(bus, "orders.eu")
    for topic in ("orders.eu", "orders.eu.paid", "orders", "payments.eu", "orders.us"):
        await bus.publish(topic, topic)
    await wait_until(lambda: len(deep) == 3)
    await bus.publish("orders.eu", "end")
    await wait_until(lambda: len(exact) == 2 and len(one) == 3 and len(deep) == 4)
    assert [e.data for e in one] == ["orders.eu", "orders.us", "end"]
    assert [e.data for e in deep] == ["orders.eu", "orders.eu.paid", "orders.us", "end"]
    assert [e.data for e in exact] == ["orders.eu", "end"]
    for subscription in (sub_one, sub_deep, sub_exact):
        subscription.dispose()


async def test_resume_across_a_pattern_is_in_global_order(bus):
    first = await bus.publish("shop.a", "a0")
    for topic, data in [("shop.b", "b1"), ("shop.a", "a2"), ("other", "x"), ("shop.c", "c3")]:
        await bus.publish(topic, data)
    events, subscription = collect(bus, "shop.*", last_event_id=first)
    await wait_until(lambda: len(events) == 3)
    assert [e.data for e in events] == ["b1", "a2", "c3"]
    subscription.dispose()


@pytest.mark.parametrize("topic", ["", "a..b", "a.*", "with space", "a.**"])
def test_emit_rejects_a_topic_that_is_not_a_name(topic):
    with pytest.raises(ValueError, match="topic"):
        EventBus().emit(topic, 1)


@pytest.mark.parametrize("pattern", ["", "a..b", "a.*x", "a b"])
def test_on_rejects_a_bad_pattern(pattern):
    with pytest.raises(ValueError, match="pattern"):
        EventBus().on(pattern)


def test_emit_rejects_data_that_is_not_json():
    with pytest.raises(ValueError, match="JSON"):
        EventBus().emit("t", object())


def test_emit_rejects_a_type_with_a_line_break():
    with pytest.raises(ValueError, match="type"):
        EventBus().emit("t", 1, type="a\nb")


async def test_emitting_from_threads(bus):
    events, subscription = collect(bus, "threads")
    per_thread, threads = 500, 4
    errors: list[BaseException] = []

    def produce(name: int) -> None:
        try:
            for n in range(per_thread):
                bus.emit("threads", [name, n])  # fire and forget, from a thread
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    await wait_until(lambda: len(events) == per_thread * threads, timeout=30)
    await wait_until(lambda: not any(worker.is_alive() for worker in workers), timeout=30)
    assert errors == []
    for name in range(threads):  # each thread's emits in the order it made them
        assert [e.data[1] for e in events if e.data[0] == name] == list(range(per_thread))
    seqs = [int(e.id.split("-")[0]) for e in events]
    assert seqs == sorted(seqs)
    # (Redis: an event may reach the reader before its publisher has read the answer.)
    await wait_until(lambda: bus.metrics.emitted == per_thread * threads)
    subscription.dispose()


async def test_publishing_from_a_thread_with_a_loop_of_its_own(bus):
    events, subscription = collect(bus, "threads")

    async def produce() -> list[str]:  # runs on the thread's own loop
        return [await bus.publish("threads", n) for n in range(50)]

    ids = await asyncio.to_thread(asyncio.run, produce())
    await wait_until(lambda: len(events) == 50)
    assert [e.id for e in events] == ids
    assert [e.data for e in events] == list(range(50))
    subscription.dispose()


async def test_no_leak_when_subscribers_come_and_go(bus, serve):
    client = await serve(bus_app(bus))
    for _round in range(3):
        responses = await asyncio.gather(
            *(client.get(f"/topics/{topic}") for topic in ["a", "b", "a.*", "c"] * 25)
        )
        await wait_until(lambda: bus.live_subscriptions == 100)
        assert bus.topics_watched == 4
        await bus.publish("a", "ping")
        for resp in responses:
            resp.close()
        await wait_until(lambda: bus.live_subscriptions == 0)
        assert bus.topics_watched == 0


async def test_a_failing_subscriber_does_not_starve_the_others(bus):
    def explode(event: MessageEvent) -> None:
        raise RuntimeError("observer bug")

    bad = bus.on("t").subscribe(explode)
    events, good = collect(bus, "t")
    await bus.publish("t", 1)
    await wait_until(lambda: len(events) == 1)
    bad.dispose()
    good.dispose()


async def test_bus_is_bound_by_annotation_and_started_by_setup(serve, redis_server):
    bus = EventBus(RedisBroker(redis_server.url, prefix=uuid.uuid4().hex))

    @rxsse.controller("/bus")
    class UsesBus:
        @rxsse.sse("/{topic}")
        def events(self, topic: str, bus: EventBus) -> rx.Observable[MessageEvent]:
            return bus.on(topic)

        @rxsse.post("/{topic}")
        async def publish(self, topic: str, body: Any, bus: EventBus) -> dict[str, str]:
            return {"id": await bus.publish(topic, body)}

    app = web.Application()
    rxsse.setup(app, UsesBus(), bus=bus)
    client = await serve(app)
    stream = await client.get("/bus/greetings")
    await wait_until(lambda: bus.live_subscriptions == 1)
    async with client.post("/bus/greetings", json={"hello": "world"}) as resp:
        event_id = (await resp.json())["id"]
    frame = await FrameReader(stream).next()
    assert frame.get("id") == event_id
    assert frame.data == '{"hello":"world"}'
    stream.close()
    await client.close()
    assert bus.live_subscriptions == 0


async def emit_when_up(bus: EventBus, topic: str, data: Any) -> str:
    """Emit, retrying while Redis is still coming back (poll with a deadline)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return await asyncio.wait_for(bus.publish(topic, data), timeout=5)
        except (RedisConnectionError, OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("persistent", [True, False], ids=["with-aof", "data-lost"])
async def test_subscribers_keep_receiving_after_redis_restarts(tmp_path, persistent):
    server = RedisServer(tmp_path, persistent=persistent)
    server.start()
    bus = EventBus(RedisBroker(server.url, block_ms=100))
    try:
        await bus.start()
        events, subscription = collect(bus, "t")
        await bus.publish("t", "before")
        await wait_until(lambda: len(events) == 1)
        server.stop()
        with pytest.raises((RedisConnectionError, OSError)):
            await bus.publish("t", "while down")  # emits fail loudly while Redis is down
        server.start()
        await emit_when_up(bus, "t", "after")
        expected = ["before", "after"] if persistent else ["before", "reset", "after"]
        await wait_until(lambda: len(events) == len(expected), timeout=10)
        # Redis that came back without its data: the subscriber is told, with a reset.
        assert [e.type if e.type == "reset" else e.data for e in events] == expected
        assert bus.live_subscriptions == 1
        subscription.dispose()
    finally:
        await bus.close()
        server.stop()


async def test_a_bus_starts_itself_at_its_first_subscriber(redis_server):
    prefix = uuid.uuid4().hex
    bus = EventBus(RedisBroker(redis_server.url, prefix=prefix))
    try:
        early = [collect(bus, "t"), collect(bus, "t", last_event_id="0-0")]
        publisher = EventBus(RedisBroker(redis_server.url, prefix=prefix))
        await wait_until(lambda: bus.live_subscriptions == 2)
        ids = [await publisher.publish("t", n) for n in range(3)]
        for events, _ in early:
            await wait_until(lambda events=events: len(events) >= 3)
            assert [e.id for e in events if e.type != "reset"] == ids
        await publisher.close()
    finally:
        await bus.close()


async def test_emitting_from_an_rx_callback_keeps_the_global_order(make_bus):
    bus = await make_bus()
    everything, all_subscription = collect(bus, "chain.**")
    # Each "chain.a" event makes a subscriber emit a "chain.b" event from inside on_next.
    relay = bus.on("chain.a").subscribe(lambda e: bus.emit("chain.b", e.data * 10))
    for n in range(1, 6):
        await bus.publish("chain.a", n)
    await wait_until(lambda: len(everything) == 10)
    seqs = [int(e.id.split("-")[0]) for e in everything]
    assert seqs == sorted(seqs)
    assert sorted(e.data for e in everything) == [1, 2, 3, 4, 5, 10, 20, 30, 40, 50]
    relay.dispose()
    all_subscription.dispose()


async def test_emit_on_a_closed_redis_bus_fails_at_once(redis_server):
    bus = EventBus(RedisBroker(redis_server.url, prefix=uuid.uuid4().hex))
    await bus.start()
    await bus.close()
    bus.emit("t", 1)  # refused and counted, without connecting again
    assert bus.metrics.emits_rejected == 1
    with pytest.raises(EmitError, match="closed"):
        await bus.publish("t", 2)
    assert bus.metrics.emits_rejected == 2
    assert not bus.broker._tasks  # no publisher started again


async def test_the_bus_counters_are_served_with_the_stream_counters(serve):
    bus = EventBus()
    app = bus_app(bus)
    rxsse.setup(app, bus=bus, metrics="/metrics")
    client = await serve(app)
    stream = await client.get("/topics/t", headers={"Last-Event-ID": "unknown"})
    assert (await FrameReader(stream).next()).get("event") == "reset"
    bus.emit("t", 1)
    async with client.get("/metrics") as response:
        text = await response.text()
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["rxsse_bus_emitted_total"] == 1
    assert samples["rxsse_bus_resets_total"] == 1
    assert samples["rxsse_open_streams"] == 1


class BehindBroker:
    """A broker whose reader is behind: the client resumes from an id this process has not
    delivered yet (it comes from a process whose reader was ahead). A Broker of the test's
    own, as the contract in rxsse.bus._broker describes it, so the bus's side can be pinned down."""

    def __init__(self) -> None:
        self.sink: Any = None

    def bind(self, log: Any, metrics: Any) -> None:
        pass

    async def start(self, sink: Any) -> int:
        self.sink = sink
        return 10  # this process has delivered up to 10

    async def publish(self, event: Any) -> str:
        raise NotImplementedError

    async def replay(self, pattern: Any, after: str, upto: int) -> list[Any]:
        return []  # nothing between the client's 15 and this process's 10

    def event_id(self, seq: int) -> str:
        return f"{seq}-e"

    def deliver(self, seq: int) -> None:
        self.sink(Entry(seq, "t", MessageEvent(seq, id=f"{seq}-e")))

    async def close(self) -> None:
        pass


async def test_live_events_a_resumed_client_already_has_are_not_sent_again():
    broker = BehindBroker()
    bus = EventBus(broker)  # type: ignore[arg-type]
    await bus.start()
    events, subscription = collect(bus, "t", last_event_id="15-e")
    for seq in range(11, 21):  # the reader catches up: 11..15 the client has, 16..20 it lacks
        broker.deliver(seq)
    await wait_until(lambda: len(events) >= 5)
    assert [e.data for e in events] == [16, 17, 18, 19, 20]
    subscription.dispose()


async def test_a_subscriber_runs_outside_the_brokers_lock():
    # A subscriber whose code waits for an emit from another thread: under the broker's lock
    # that thread would wait for the subscriber, and the subscriber for it.
    bus = EventBus()
    done: list[bool] = []

    def on_event(event: MessageEvent) -> None:
        emitter = threading.Thread(target=lambda: bus.emit("from.thread", {"n": 1}))
        emitter.start()
        emitter.join(timeout=10)
        done.append(not emitter.is_alive())

    subscription = bus.on("from.loop").subscribe(on_event)
    later: list[MessageEvent] = []
    bus.on("from.thread").subscribe(later.append)
    try:
        bus.emit("from.loop", {"n": 0})
        assert done == [True], "the other thread's emit waited for the subscriber"
        await wait_until(lambda: len(later) == 1)  # and its event was delivered, on the loop
    finally:
        subscription.dispose()
