"""Stream limits: too many streams (503 with Retry-After, nothing subscribed), a maximum
lifetime (a clean end the client resumes from) and a send timeout (a stuck client dropped)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import reactivex as rx
from aiohttp import web
from reactivex import operators as ops

import rxsse
from rxsse import EventSource, MessageEvent, StreamOptions
from tests.conftest import LiveSubscriptions, raw_get, wait_until


async def test_route_and_app_limits_answer_503_with_retry_after(serve):
    live = LiveSubscriptions()

    @rxsse.controller()
    class Limited:
        @rxsse.sse("/one", max_streams=2)
        def one(self) -> rx.Observable[int]:
            return live.track(rx.never())

        @rxsse.sse("/two")
        def two(self) -> rx.Observable[int]:
            return live.track(rx.never())

    app = web.Application()
    rxsse.setup(app, Limited(), limits=rxsse.Limits(max_streams=3, retry_after=7))
    client = await serve(app)
    first, second = await client.get("/one"), await client.get("/one")
    async with client.get("/one") as resp:  # the route's limit
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "7"
        assert "error" in await resp.json()
    third = await client.get("/two")
    async with client.get("/two") as resp:  # the app's limit
        assert resp.status == 503
    assert live.total == 3
    assert rxsse.metrics(app).rejected == 2
    first.close()
    await wait_until(lambda: live.live == 2)
    await wait_until(lambda: rxsse.metrics(app).open_streams == 2)
    fourth = await client.get("/one")  # a slot is free again
    assert fourth.status == 200
    for resp in (second, third, fourth):
        resp.close()


async def test_rejected_guard_gives_its_slot_back(serve):
    async def deny(request: web.Request) -> bool:
        return False

    @rxsse.sse("/guarded", guards=[deny], max_streams=1)
    def guarded() -> rx.Observable[int]:
        return rx.never()

    app = web.Application()
    rxsse.setup(app, guarded)
    client = await serve(app)
    for _ in range(3):
        async with client.get("/guarded") as resp:
            assert resp.status == 403  # never 503: the failed request left no slot taken


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_bad_limits_are_rejected(bad):
    with pytest.raises(ValueError, match="max_streams"):
        rxsse.sse("/x", max_streams=bad)
    with pytest.raises(ValueError, match="max_streams"):
        rxsse.Limits(max_streams=bad)


@pytest.mark.parametrize("bad", [-1, True, 1.5, "5"])
def test_a_bad_retry_after_is_rejected(bad):
    with pytest.raises(ValueError, match="retry_after"):
        rxsse.Limits(retry_after=bad)


# -- max lifetime ---------------------------------------------------------------------------


def test_lifetimes_are_spread_below_the_maximum():
    options = StreamOptions(max_lifetime=100.0, lifetime_jitter=0.2)
    lifetimes = [options.lifetime() for _ in range(1000)]
    assert all(80.0 <= t <= 100.0 for t in lifetimes)
    assert max(lifetimes) - min(lifetimes) > 10.0  # spread, not all at one instant
    assert StreamOptions(max_lifetime=5.0, lifetime_jitter=0).lifetime() == 5.0
    assert StreamOptions().lifetime() is None


async def test_stream_past_its_lifetime_ends_cleanly_and_the_client_resumes(serve):
    bus = rxsse.EventBus()
    live = LiveSubscriptions()
    seen: list[str | None] = []

    @rxsse.sse("/feed", max_lifetime=0.2, lifetime_jitter=0.5)
    def feed(request: web.Request, last_event_id: str | None = None) -> rx.Observable[Any]:
        seen.append(last_event_id)
        return live.track(bus.on("feed", last_event_id=last_event_id))

    app = web.Application()
    rxsse.setup(app, feed, options=rxsse.StreamOptions(heartbeat=None), bus=bus)
    server = await serve(app)
    total = 400
    received: list[int] = []

    async def emit() -> None:
        await wait_until(lambda: live.live == 1)  # the client is subscribed: none missed
        for n in range(total):
            bus.emit("feed", n)
            await asyncio.sleep(0.002)

    async def receive() -> None:
        # Starting from the log's origin, even a first connection that ends before any event
        # resumes with an id.
        url, origin = server.url("/feed"), bus.origin_id
        async with EventSource(url, retry=0.01, last_event_id=origin) as events:
            async for event in events:
                received.append(int(event.data))
                if len(received) == total:
                    # Read before this client leaves: its leaving is a disconnect of its own.
                    counters = rxsse.metrics(app)
                    ends.extend([counters.errors, counters.disconnects])
                    break

    ends: list[int] = []
    await asyncio.wait_for(asyncio.gather(emit(), receive()), timeout=60)
    assert received == list(range(total))  # every event once, in order, across the ends
    counters = rxsse.metrics(app)
    assert counters.expired >= 2
    assert len(seen) >= 3 and all(seen)  # every connection resumed from an id
    assert ends == [0, 0]  # no error and no disconnect until then
    await wait_until(lambda: live.live == 0)


async def test_a_stream_past_its_lifetime_ends_its_response_cleanly(serve):
    @rxsse.sse("/quiet", max_lifetime=0.1, lifetime_jitter=0)
    def quiet() -> rx.Observable[Any]:
        return rx.concat(rx.of(MessageEvent("hello", id=1)), rx.never())

    app = web.Application()
    rxsse.setup(app, quiet, options=rxsse.StreamOptions(heartbeat=None))
    server = await serve(app)
    async with server.get("/quiet") as resp:
        body = await asyncio.wait_for(resp.read(), timeout=10)  # a cut body would raise
    # (The event is ready when the headers go: it is the first line, no ": open" before it.)
    assert body.removeprefix(b": open\n") == b"id: 1\ndata: hello\n\n"
    counters = rxsse.metrics(app)
    assert counters.expired == 1 and counters.disconnects == counters.errors == 0


# -- send timeout ---------------------------------------------------------------------------


FRAME = 256 * 1024


def stuck_client_app(**options: Any) -> web.Application:
    """``GET /big?count=N&period=S``: N frames of 256 KiB, one every S seconds (0: all at once,
    then the end), to a client that reads little or nothing; the buffer is larger than all of
    them, so only the send timeout can act."""

    async def big(request: web.Request) -> web.StreamResponse:
        count, period = int(request.query["count"]), float(request.query["period"])
        payload = "z" * FRAME
        if period == 0:
            source = rx.from_iterable([f"{n} {payload}" for n in range(count)])
        else:
            numbers = rx.interval(period).pipe(ops.take(count))
            source = numbers.pipe(ops.map(lambda n: f"{n} {payload}"))
        return await rxsse.stream(
            request, source, heartbeat=None, max_buffer_bytes=1 << 30, **options
        )

    app = web.Application()
    app.router.add_get("/big", big)
    rxsse.setup(app)
    return app


async def read_to_the_end(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(-1), timeout=30)
    except ConnectionResetError:
        return b""


@pytest.mark.parametrize("overflow", ["disconnect", "drop_oldest"])
async def test_client_taking_no_data_is_dropped_after_the_send_timeout(serve, overflow):
    app = stuck_client_app(send_timeout=0.3, overflow=overflow)
    server = await serve(app)
    reader, writer = await raw_get(server.base_url, "/big?count=100000&period=0.005")
    counters = rxsse.metrics(app)
    await wait_until(lambda: counters.send_timeouts == 1, timeout=30)
    await wait_until(lambda: counters.open_streams == 0)
    assert counters.overflows == 0 and sum(counters.frames_dropped.values()) == 0
    await read_to_the_end(reader)  # the server closed the connection
    writer.close()


async def test_a_stuck_client_cannot_hold_a_finished_stream_open(serve):
    # The source emits everything and completes before the headers are even sent, so all of
    # it is written by the stream's ending: that last write is under the send timeout too.
    app = stuck_client_app(send_timeout=0.3)
    server = await serve(app)
    reader, writer = await raw_get(server.base_url, "/big?count=200&period=0")
    counters = rxsse.metrics(app)
    await wait_until(lambda: counters.completed == 1, timeout=30)
    await wait_until(lambda: counters.open_streams == 0, timeout=30)
    assert counters.send_timeouts == 1
    received = await read_to_the_end(reader)  # closed, short of the 50 MiB sent
    assert len(received) < 200 * FRAME
    writer.close()


async def test_a_slow_client_that_keeps_reading_is_not_dropped(serve):
    # 20 MiB at once, read 256 KiB at a time with a pause between reads: the write waits for
    # this client far longer than the send timeout, but the client takes data every period.
    app = stuck_client_app(send_timeout=0.3)
    server = await serve(app)
    reader, writer = await raw_get(server.base_url, "/big?count=80&period=0")
    received = 0
    while chunk := await asyncio.wait_for(reader.read(FRAME), timeout=30):
        received += len(chunk)
        await asyncio.sleep(0.02)  # a slow reader: about 12 MiB/s at most
    counters = rxsse.metrics(app)
    assert counters.send_timeouts == 0
    assert counters.completed == 1 and counters.events_sent == 80
    assert received > 80 * FRAME  # everything, with the HTTP framing
    writer.close()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("send_timeout", 0),
        ("send_timeout", -1.0),
        ("send_timeout", float("nan")),
        ("send_timeout", float("inf")),
        ("max_lifetime", 0),
        ("max_lifetime", "60"),
        ("lifetime_jitter", 1.0),
        ("lifetime_jitter", -0.1),
        ("lifetime_jitter", True),
    ],
)
async def test_bad_time_limits_are_rejected(option, value):
    with pytest.raises(ValueError, match=option):
        await rxsse.stream(None, rx.never(), **{option: value})  # type: ignore[arg-type]
