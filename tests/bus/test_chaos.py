"""Chaos resume: a proxy cuts the client's connections at random points (often mid-frame)
while the bus emits 50,000 events; the reconnecting client still gets every id exactly once,
in order, on every broker. With Redis, the same while Redis restarts, freezes, rolls back to
an older snapshot and comes back empty: every event exactly once, or a reset exactly where
data was lost, never a silent gap."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from typing import Any

import pytest
from aiohttp import web

import rxsse
from rxsse import EmitError, EventBus, EventSource, MessageEvent, NatsBroker, RedisBroker
from tests.conftest import LiveSubscriptions, wait_until

EVENTS = 50_000
LEAD = 5_000


class CuttingProxy:
    """A TCP proxy that forwards a random number of the server's bytes on each connection (from
    none to ``max_bytes``), then aborts both sides: the client sees the stream break wherever
    the cut falls, headers and frames included."""

    def __init__(self, target_port: int, *, max_bytes: int, seed: int) -> None:
        self.target_port = target_port
        self.max_bytes = max_bytes
        self.random = random.Random(seed)
        self.cuts = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        budget = self.random.randint(0, self.max_bytes)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        upstream = asyncio.ensure_future(self._pipe(reader, up_writer, None))
        downstream = asyncio.ensure_future(self._pipe(up_reader, writer, budget))
        for task in (upstream, downstream):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await downstream
        finally:
            upstream.cancel()
            for side in (writer, up_writer):
                side.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, budget: int | None
    ) -> None:
        while data := await reader.read(65536):
            if budget is not None:
                if len(data) >= budget:
                    writer.write(data[:budget])  # part of a frame, then the cut
                    self.cuts += 1
                    return
                budget -= len(data)
            writer.write(data)
            await writer.drain()


@pytest.fixture(params=["memory", "redis", "nats"])
async def bus(request: Any) -> Any:
    broker: rxsse.Broker | None = None
    if request.param == "redis":
        broker = RedisBroker(request.getfixturevalue("redis_server").url, prefix=uuid.uuid4().hex)
    elif request.param == "nats":
        broker = NatsBroker(request.getfixturevalue("nats_server").url, prefix=uuid.uuid4().hex)
    # The log holds every event, so a resume point is never trimmed: the test is about cuts.
    bus = EventBus(broker, history=EVENTS)
    yield bus


async def behind_a_cutting_proxy(
    serve: Any, bus: EventBus, seed: int
) -> tuple[CuttingProxy, str, LiveSubscriptions]:
    """``GET /events`` streams the topic "chaos" of ``bus`` (resuming from Last-Event-ID),
    served behind a proxy that cuts every connection at random: the proxy, the stream's URL
    through it, and the stream's live subscriptions."""
    live = LiveSubscriptions()

    @rxsse.sse("/events")
    def events(last_event_id: str | None = None) -> Any:
        return live.track(bus.on("chaos", last_event_id=last_event_id))

    app = web.Application()
    rxsse.setup(app, events, options=rxsse.StreamOptions(heartbeat=None), bus=bus)
    server = await serve(app)
    proxy = CuttingProxy(int(server.base_url.rsplit(":", 1)[1]), max_bytes=48_000, seed=seed)
    return proxy, f"http://127.0.0.1:{await proxy.start()}/events", live


async def test_every_id_exactly_once_in_order_through_random_cuts(serve, bus):
    proxy, proxy_url, live = await behind_a_cutting_proxy(serve, bus, seed=6)
    received: list[int] = []

    async def emit() -> None:
        await wait_until(lambda: live.live == 1)  # the first connection is subscribed
        for start in range(0, EVENTS, 100):
            for n in range(start, start + 100):
                bus.emit("chaos", n)
            await asyncio.sleep(0.001)  # let the stream, the proxy and the client run
            # Never more than a few thousand ahead of the client: the test is about cuts, and
            # a client cut every few dozen kilobytes cannot catch up with an unbounded lead.
            await wait_until(
                lambda n=start: n - (received[-1] if received else 0) <= LEAD, timeout=60
            )

    async def receive() -> None:
        async with EventSource(proxy_url, retry=0.001) as source:
            async for event in source:
                assert event.type == "message", f"{event.type}: {event.data}"  # no reset
                received.append(int(event.data))
                if received[-1] == EVENTS - 1:
                    return

    try:
        await asyncio.wait_for(asyncio.gather(emit(), receive()), timeout=180)
    finally:
        await proxy.close()
    assert proxy.cuts >= 20, f"only {proxy.cuts} cuts: the chaos did not happen"
    if received != list(range(EVENTS)):
        duplicates = len(received) - len(set(received))
        missing = sorted(set(range(EVENTS)) - set(received))[:10]
        out_of_order = next(
            (i for i in range(1, len(received)) if received[i] <= received[i - 1]), None
        )
        raise AssertionError(
            f"{len(received)} events, {duplicates} duplicates, first missing {missing}, "
            f"first out of order at {out_of_order}"
        )
    await wait_until(lambda: live.live == 0)  # every cut connection was disposed


class FaultyRedisRun:
    """Emits EVENTS events with keys (retrying what fails, as a careful producer does) while
    Redis is restarted with its AOF, frozen for 5 s, rolled back to an older snapshot and
    restarted empty; records what was acknowledged and when each fault struck."""

    def __init__(self, bus: EventBus, redis: Any, received: list[MessageEvent]) -> None:
        self.bus = bus
        self.redis = redis
        self.received = received
        self.acked: dict[int, str] = {}
        self.first_loss_at: int | None = None  # len(received) when data was first lost
        self._freeze: asyncio.Task[None] | None = None

    async def emit_all(self) -> None:
        for start in range(0, EVENTS, 100):
            pending = list(range(start, min(start + 100, EVENTS)))
            while pending:
                results = await asyncio.gather(
                    *(self.bus.publish("chaos", n, key=str(n)) for n in pending),
                    return_exceptions=True,
                )
                failed = []
                for n, result in zip(pending, results, strict=True):
                    if isinstance(result, EmitError):
                        failed.append(n)  # may or may not be out: the key makes a retry safe
                    elif isinstance(result, BaseException):
                        raise result
                    else:
                        self.acked[n] = result
                pending = failed
                if failed:
                    await asyncio.sleep(0.05)
            await self._fault(start + 100)
            await wait_until(lambda n=start: n - self._client_at() <= LEAD, timeout=60)
        if self._freeze is not None:
            await self._freeze

    def _client_at(self) -> int:
        for event in reversed(self.received):
            if event.type == "message":
                return int(event.data)
        return 0

    async def _fault(self, emitted: int) -> None:
        redis = self.redis
        if emitted == 10_000:  # a clean restart: the AOF keeps everything
            await asyncio.to_thread(redis.stop)
            await asyncio.to_thread(redis.start)
        elif emitted == 20_000:  # frozen for 5 s while emits go on
            self._freeze = asyncio.ensure_future(self._frozen(5.0))
        elif emitted == 27_000:
            await asyncio.to_thread(redis.save)
        elif emitted == 30_000:  # a crash, and a restart from the older snapshot
            self.first_loss_at = len(self.received)
            await asyncio.to_thread(redis.kill)
            await asyncio.to_thread(redis.start, from_snapshot=True)
        elif emitted == 40_000:  # a restart with no data at all
            await asyncio.to_thread(redis.wipe)
            await asyncio.to_thread(redis.start)

    async def _frozen(self, seconds: float) -> None:
        self.redis.pause()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.redis.resume()


def check_no_silent_gap(received: list[MessageEvent], first_loss_at: int | None) -> int:
    """The client's events, split at each reset: within each part the sequence numbers follow
    each other with no gap and no repeat (Redis gives every event of a data set the next
    one), no order number comes twice, the first part starts at the first event and each
    later part right after its reset's id. Returns the number of resets."""
    resets = [i for i, event in enumerate(received) if event.type == "reset"]
    assert all(i >= (first_loss_at or len(received)) for i in resets), (
        f"a reset at {resets} before any data was lost (at {first_loss_at})"
    )
    bounds = [-1, *resets, len(received)]
    for before, after in itertools.pairwise(bounds):
        part = received[before + 1 : after]
        if not part:
            continue
        seqs = [int(str(event.id).split("-")[0]) for event in part]
        first = 1 if before < 0 else int(str(received[before].id).split("-")[0]) + 1
        assert seqs[0] == first, f"the part after index {before} starts at {seqs[0]}, not {first}"
        gaps = [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1]
        assert not gaps, f"silent gaps or repeats after index {before}: {gaps[:5]}"
        orders = [int(event.data) for event in part]
        assert len(orders) == len(set(orders)), "an event delivered twice without a reset"
    return len(resets)


async def test_redis_faults_and_random_cuts_never_make_a_silent_gap(serve, own_redis_server):
    bus = EventBus(RedisBroker(own_redis_server.url, block_ms=100, emit_timeout=1), history=EVENTS)
    proxy, proxy_url, live = await behind_a_cutting_proxy(serve, bus, seed=7)
    received: list[MessageEvent] = []
    run = FaultyRedisRun(bus, own_redis_server, received)

    async def receive() -> None:
        async with EventSource(proxy_url, retry=0.001) as source:
            async for event in source:
                received.append(event)
                if event.type == "message" and int(event.data) == EVENTS - 1:
                    return

    async def emit() -> None:
        await wait_until(lambda: live.live == 1)
        await run.emit_all()

    try:
        await asyncio.wait_for(asyncio.gather(emit(), receive()), timeout=180)
    finally:
        await proxy.close()
    assert proxy.cuts >= 20, f"only {proxy.cuts} cuts: the chaos did not happen"
    assert len(run.acked) == EVENTS
    assert len(set(run.acked.values())) == EVENTS, "an id was given to two events"
    resets = check_no_silent_gap(received, run.first_loss_at)
    assert resets <= 4, f"{resets} resets for two losses"
    await wait_until(lambda: live.live == 0)
