"""NatsBroker under the faults of a real nats-server: killed and restarted mid-stream, its store
wiped (the stream made again) or put back to an older copy, frozen, down at start, and events
it refuses. Every acknowledged event reaches every subscriber once, or a ``reset`` says where
events were lost; an id never names two events."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from typing import Any

import nats
import pytest
import reactivex as rx
from aiohttp import web
from nats.js.api import StreamConfig

import rxsse
from rxsse import EmitError, EventBus, EventSource, MessageEvent, NatsBroker
from tests.bus.failover import check_subscriber, seq
from tests.bus.nats_servers import NatsServer
from tests.conftest import free_port, wait_until


def nats_bus(url: str, *, prefix: str = "", **options: Any) -> tuple[EventBus, NatsBroker]:
    slack = options.pop("reader_slack", 10_000)
    timeout = options.pop("emit_timeout", 1.0)
    broker = NatsBroker(
        url, prefix=prefix or uuid.uuid4().hex, block=0.2, emit_timeout=timeout, reader_slack=slack
    )
    return EventBus(broker, **options), broker


class FreezingProxy:
    """A TCP proxy in front of nats-server that can stop reading what the server sends (the
    client's requests still go through): to the server, a client too slow to take its data."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return f"nats://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        pipes = [
            asyncio.ensure_future(self._pipe(reader, up_writer, frozen=False)),
            asyncio.ensure_future(self._pipe(up_reader, writer, frozen=True)),
        ]
        for task in pipes:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            for side in (writer, up_writer):
                side.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, frozen: bool
    ) -> None:
        while True:
            if frozen:
                await self.flowing.wait()
            data = await reader.read(65536)
            if not data:
                return
            writer.write(data)
            await writer.drain()


def collect(bus: EventBus, topic: str, **kwargs: Any) -> tuple[list[MessageEvent], Any]:
    events: list[MessageEvent] = []
    return events, bus.on(topic, **kwargs).subscribe(events.append)


async def publish_until_acknowledged(bus: EventBus, topic: str, n: int, key: str) -> str:
    """Publish ``n`` until NATS acknowledges it, again with its key after a failure (so it is
    published once at most); returns its id."""
    while True:
        try:
            return await bus.publish(topic, n, key=key)
        except EmitError:
            await asyncio.sleep(0.05)


async def test_subscribers_keep_every_event_across_a_nats_crash(serve, own_nats_server, capsys):
    """nats-server is killed (SIGKILL) mid-stream and started again on its store: the bus's
    subscribers and an HTTP client end with every acknowledged event once (or, had the store
    lost its newest messages, a reset exactly where the loss begins)."""
    server: NatsServer = own_nats_server
    bus, _ = nats_bus(server.url, history=10_000)
    await bus.start()
    received: list[list[MessageEvent]] = [[], []]
    subscriptions = [bus.on("t").subscribe(events.append) for events in received]

    @rxsse.sse("/t")
    def events(bus: EventBus, last_event_id: str | None = None) -> rx.Observable[Any]:
        return bus.on("t", last_event_id=last_event_id)

    app = web.Application()
    rxsse.setup(app, events, bus=bus)
    http = await serve(app)
    over_http: list[MessageEvent] = []

    async def read() -> None:
        async with EventSource(http.url("/t"), retry=0.05) as source:
            async for event in source:
                data = json.loads(event.data) if event.data else None
                over_http.append(MessageEvent(data, id=event.id, type=event.type))

    client = asyncio.ensure_future(read())
    await wait_until(lambda: len(rxsse.open_streams(app)) == 1)
    acknowledged: dict[int, str] = {}
    failed = 0
    try:
        for n in range(300):
            if n == 100:
                server.kill()
            while True:
                try:
                    acknowledged[n] = await bus.publish("t", n, key=f"e-{n}")
                    break
                except EmitError:
                    failed += 1
                    if failed == 3:  # down long enough that the reader's requests fail too
                        server.start()  # back on the same store
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.002)
        assert failed > 0  # the kill landed mid-stream
        last = seq(acknowledged[299])
        everyone = [*received, over_http]
        await wait_until(
            lambda: all(any(e.id and seq(e.id) >= last for e in r) for r in everyone), timeout=30
        )
        names = ["bus subscriber 1", "bus subscriber 2", "the HTTP client"]
        for name, got in zip(names, everyone, strict=True):
            check_subscriber(name, got, acknowledged)
        with capsys.disabled():
            delivered = [sum(1 for e in r if e.type != "reset") for r in everyone]
            resets = [sum(1 for e in r if e.type == "reset") for r in everyone]
            print(
                f"\nnats-server killed mid-stream: {len(acknowledged)} acknowledged, "
                f"{failed} failed attempts retried, delivered {delivered}, resets {resets}"
            )
    finally:
        for subscription in subscriptions:
            subscription.dispose()
        client.cancel()
        await bus.close()


async def test_a_stream_made_again_is_a_reset_and_no_id_names_two_events(own_nats_server):
    """The store is wiped (the stream is made again, its numbers from 1): subscribers get a
    reset, the new events' ids are not the old ones', and a resume from an old id is a reset."""
    server: NatsServer = own_nats_server
    bus, _ = nats_bus(server.url)
    await bus.start()
    events, subscription = collect(bus, "t")
    old = [await bus.publish("t", f"old {n}") for n in range(5)]
    await wait_until(lambda: len(events) == 5)
    server.wipe()
    server.start()
    await wait_until(lambda: any(e.type == "reset" for e in events), timeout=15)
    new = [await publish_until_acknowledged(bus, "t", 0, "new-0")]
    new += [await bus.publish("t", n) for n in range(1, 5)]  # (as the old ones: no key)
    await wait_until(lambda: len(events) == 11, timeout=15)
    reset = events[5]
    assert reset.type == "reset" and seq(str(reset.id)) == 0
    assert [e.data for e in events[6:]] == list(range(5))
    assert [seq(i) for i in new] == [seq(i) for i in old]  # the numbers came again...
    assert not set(new) & set(old)  # ...the ids did not
    subscription.dispose()

    from_old, subscription = collect(bus, "t", last_event_id=old[2])
    from_reset, other = collect(bus, "t", last_event_id=str(reset.id))
    await wait_until(lambda: len(from_old) >= 1 and len(from_reset) == 5)
    assert from_old[0].type == "reset"
    assert [e.data for e in from_reset] == list(range(5))
    subscription.dispose()
    other.dispose()
    await bus.close()


async def test_a_store_put_back_to_an_older_copy_is_a_reset_where_it_parts(own_nats_server):
    """The store goes back to a copy taken before the last events (a restore): subscribers get
    one reset exactly at the copy's last event; a resume from before it that crosses the loss
    is a reset too; a resume from the reset's id gets what came after."""
    server: NatsServer = own_nats_server
    bus, _ = nats_bus(server.url)
    await bus.start()
    events, subscription = collect(bus, "t")
    kept = [await bus.publish("t", f"kept {n}") for n in range(5)]
    server.stop()
    copy = server.directory.parent / f"{server.directory.name}-copy"
    shutil.copytree(server.directory, copy)
    server.start()
    lost = [await publish_until_acknowledged(bus, "t", n, f"lost-{n}") for n in range(5)]
    await wait_until(lambda: len(events) == 10, timeout=15)
    server.stop()
    shutil.rmtree(server.directory)
    shutil.copytree(copy, server.directory)
    server.start()
    await wait_until(lambda: any(e.type == "reset" for e in events), timeout=15)
    after = [await publish_until_acknowledged(bus, "t", n, f"after-{n}") for n in range(3)]
    await wait_until(lambda: len(events) == 14, timeout=15)
    reset = events[10]
    assert reset.type == "reset" and seq(str(reset.id)) == seq(kept[-1])
    assert [e.data for e in events[11:]] == [0, 1, 2]
    assert not set(after) & set(lost)  # the numbers came again, the ids did not
    subscription.dispose()

    resumes = {
        name: collect(bus, "t", last_event_id=i)
        for name, i in [
            ("before the loss", kept[1]),
            ("a lost event", lost[2]),
            ("the reset", str(reset.id)),
        ]
    }
    await wait_until(lambda: all(len(got) >= 1 for got, _ in resumes.values()))
    await wait_until(lambda: len(resumes["the reset"][0]) == 3)
    assert resumes["before the loss"][0][0].type == "reset"
    assert resumes["a lost event"][0][0].type == "reset"
    assert [e.data for e in resumes["the reset"][0]] == [0, 1, 2]
    for _, other in resumes.values():
        other.dispose()
    await bus.close()


async def test_an_emit_retried_with_its_key_is_published_once(nats_server):
    bus, _ = nats_bus(nats_server.url)
    await bus.start()
    events, subscription = collect(bus, "orders")
    first = await bus.publish("orders", {"id": 7}, key="order-7")
    again = await bus.publish("orders", {"id": 7}, key="order-7")
    other = await bus.publish("orders", {"id": 8}, key="order-8")
    await wait_until(lambda: len(events) == 2)
    assert again == first and other != first
    assert [e.id for e in events] == [first, other]
    assert bus.metrics.emitted == 2
    subscription.dispose()
    await bus.close()


async def test_an_event_larger_than_max_payload_fails_alone(tmp_path):
    server = NatsServer(tmp_path, config="max_payload: 4096\n")
    server.start()
    try:
        bus, broker = nats_bus(server.url)
        await bus.start()
        events, subscription = collect(bus, "t")
        bus.emit("t", "small 1")
        big = asyncio.ensure_future(bus.publish("t", "x" * 10_000))
        last = await bus.publish("t", "small 2")
        with pytest.raises(EmitError, match="max_payload"):
            await big
        await wait_until(lambda: len(events) == 2)
        assert [e.data for e in events] == ["small 1", "small 2"]
        assert seq(last) == 2  # the big one took no number
        assert broker._batches.waiting == 0  # and left nothing waiting for an answer
        assert bus.metrics.emit_failures == 1
        subscription.dispose()
        await bus.close()
    finally:
        server.stop()


async def test_start_and_emits_are_bounded_when_nats_is_down_or_frozen(own_nats_server):
    """Nothing listens: start() fails, within emit_timeout; emits fail the same way. A frozen
    server (it takes the connection, answers nothing) is bounded too."""
    nobody = f"nats://127.0.0.1:{free_port()}"
    bus, _ = nats_bus(nobody)
    with pytest.raises(ConnectionError, match="cannot be reached"):
        await asyncio.wait_for(bus.start(), 30)  # (a hang guard, not a timing threshold)
    with pytest.raises(EmitError):
        await asyncio.wait_for(bus.publish("t", 1), 30)
    await bus.close()

    own_nats_server.pause()
    try:
        frozen, _ = nats_bus(own_nats_server.url)
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(frozen.start(), 30)
        await frozen.close()
    finally:
        own_nats_server.resume()


async def test_close_fails_the_emits_waiting_and_later_ones_at_once(own_nats_server):
    # (Emits that wait longer than the test: only close() ends them.)
    bus, broker = nats_bus(own_nats_server.url, emit_timeout=60)
    await bus.start()
    own_nats_server.pause()  # what is emitted now waits for an answer that does not come
    waiting = [asyncio.ensure_future(bus.publish("t", n)) for n in range(20)]
    await wait_until(lambda: broker._batches.waiting > 0 or broker._queue.bytes > 0)
    await bus.close()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, EmitError) for r in results), results
    assert broker._batches.waiting == 0 and broker._queue.bytes == 0
    own_nats_server.resume()
    rejected = bus.metrics.emits_rejected
    bus.emit("t", "after close")  # refused at once, counted, without connecting again
    assert bus.metrics.emits_rejected == rejected + 1
    with pytest.raises(EmitError, match="closed"):
        await bus.publish("t", "after close")
    assert broker._nc is None


async def test_what_jetstream_cannot_take_is_refused_at_once(nats_server):
    with pytest.raises(ValueError, match="prefix"):
        NatsBroker(nats_server.url, prefix="has.dots")
    with pytest.raises(ValueError, match="max_age"):
        EventBus(NatsBroker(nats_server.url), max_age=0.05)
    # A stream of the bus's name that takes other subjects too: its numbers are not the bus's.
    prefix = uuid.uuid4().hex
    nc = await nats.connect(nats_server.url)
    await nc.jetstream().add_stream(
        StreamConfig(name=f"RXSSE_{prefix}", subjects=[f"{prefix}.>", "elsewhere.>"])
    )
    await nc.close()
    bus = EventBus(NatsBroker(nats_server.url, prefix=prefix))
    with pytest.raises(ConnectionError, match="not only"):
        await bus.start()
    await bus.close()


async def test_a_message_no_process_can_read_is_a_reset_not_a_poisoned_stream(nats_server):
    """A message on a topic's subject that is not the bus's JSON (written by another client):
    its subscribers get a reset in its place, then the events after it, live and on resume."""
    bus, broker = nats_bus(nats_server.url)
    await bus.start()
    events, subscription = collect(bus, "t")
    first = await bus.publish("t", "before")
    nc = await nats.connect(nats_server.url)
    await nc.jetstream().publish(f"{broker._names.subject('t')}", b"{not json")
    await nc.close()
    await bus.publish("t", "after")
    await wait_until(lambda: len(events) == 3)
    assert [e.type for e in events] == [None, "reset", None]
    assert events[2].data == "after"
    resumed, other = collect(bus, "t", last_event_id=first)
    await wait_until(lambda: len(resumed) == 2)
    assert [e.type for e in resumed] == ["reset", None]
    subscription.dispose()
    other.dispose()
    await bus.close()


async def test_a_reader_too_slow_for_nats_gets_a_reset_where_its_events_were_cut(tmp_path):
    """The server cuts off a client that does not take its data (a NATS slow consumer); by
    the time that process reads again, its topic's events it had not read have left the
    stream (history 5, no slack). Its subscribers get a reset exactly after the last event
    they had, then the events after it: never a silent gap."""
    server = NatsServer(tmp_path, config='write_deadline: "500ms"\nmax_pending: 1MB\n')
    server.start()
    proxy = FreezingProxy(server.port)
    prefix = uuid.uuid4().hex
    slow, _ = nats_bus(await proxy.start(), prefix=prefix, history=5, reader_slack=0)
    publisher, _ = nats_bus(server.url, prefix=prefix, history=5, reader_slack=0)
    try:
        await slow.start()
        events, subscription = collect(slow, "t")
        acknowledged = {0: await publisher.publish("t", 0)}
        await wait_until(lambda: len(events) == 1)
        proxy.flowing.clear()
        payload = "x" * 50_000
        for n in range(1, 200):  # 10 MB it does not read: the server gives up on it
            acknowledged[n] = await publisher.publish("t", [n, payload])
        proxy.flowing.set()
        acknowledged[200] = await publisher.publish("t", [200, "after"])
        await wait_until(lambda: any(e.id == acknowledged[200] for e in events), timeout=30)
        got = [  # (each event's number, for the check)
            e if e.type == "reset" or isinstance(e.data, int) else MessageEvent(e.data[0], id=e.id)
            for e in events
        ]
        check_subscriber("the slow process's subscriber", got, acknowledged)
        resets = [e for e in events if e.type == "reset"]
        assert len(resets) == 1
        subscription.dispose()
    finally:
        await slow.close()
        await publisher.close()
        await proxy.close()
        server.stop()


async def test_keys_and_types_keep_their_white_space(nats_server):
    """NATS strips white space around a header's value: keys that differ only by it are two
    events, and a type keeps it (as on every broker)."""
    bus, _ = nats_bus(nats_server.url)
    await bus.start()
    events, subscription = collect(bus, "t")
    first = await bus.publish("t", "A", key="order-7", type="created")
    second = await bus.publish("t", "B", key="order-7 ", type=" created ")
    await wait_until(lambda: len(events) == 2)
    assert first != second and [e.id for e in events] == [first, second]
    assert [e.type for e in events] == ["created", " created "]
    resumed, other = collect(bus, "t", last_event_id=first)
    await wait_until(lambda: len(resumed) == 1)
    assert resumed[0].id == second and resumed[0].type == " created "
    subscription.dispose()
    other.dispose()
    await bus.close()


async def test_a_stream_made_without_direct_gets_is_used_as_it_is(nats_server):
    """An operator's stream of the bus's name, without allow_direct: reads fall back to the
    ordinary API, and resume works."""
    prefix = uuid.uuid4().hex
    nc = await nats.connect(nats_server.url)
    await nc.jetstream().add_stream(
        StreamConfig(name=f"RXSSE_{prefix}", subjects=[f"{prefix}.>"], max_msgs_per_subject=100)
    )
    await nc.close()
    bus, _ = nats_bus(nats_server.url, prefix=prefix)
    await bus.start()
    ids = [await bus.publish("t", n) for n in range(3)]
    resumed, subscription = collect(bus, "t", last_event_id=ids[0])
    await wait_until(lambda: len(resumed) == 2)
    assert [e.data for e in resumed] == [1, 2]
    subscription.dispose()
    await bus.close()
