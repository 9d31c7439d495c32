"""Chaos resume: a proxy cuts the client's connections at random points (often mid-frame)
while the bus emits 50,000 events; the reconnecting client still gets every id exactly once,
in order, on both brokers."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest
from aiohttp import web

import rxsse
from rxsse import EventBus, EventSource
from rxsse.redis import RedisBroker
from tests.conftest import LiveSubscriptions, wait_until

EVENTS = 50_000


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


@pytest.fixture(params=["memory", "redis"])
async def bus(request: Any, redis_server: Any) -> Any:
    broker = None
    if request.param == "redis":
        broker = RedisBroker(redis_server.url, prefix=uuid.uuid4().hex)
    # The log holds every event, so a resume point is never trimmed: the test is about cuts.
    bus = EventBus(broker, history=EVENTS)
    yield bus


async def test_every_id_exactly_once_in_order_through_random_cuts(serve, bus):
    live = LiveSubscriptions()

    @rxsse.sse("/events")
    def events(last_event_id: str | None = None) -> Any:
        return live.track(bus.on("chaos", last_event_id=last_event_id))

    app = web.Application()
    rxsse.setup(app, events, bus=bus, heartbeat=None)
    server = await serve(app)
    proxy = CuttingProxy(int(server.base_url.rsplit(":", 1)[1]), max_bytes=48_000, seed=6)
    proxy_url = f"http://127.0.0.1:{await proxy.start()}/events"
    received: list[int] = []

    async def emit() -> None:
        await wait_until(lambda: live.live == 1)  # the first connection is subscribed
        for start in range(0, EVENTS, 100):
            for n in range(start, start + 100):
                bus.emit("chaos", n)
            await asyncio.sleep(0.001)  # let the stream, the proxy and the client run

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
