"""Fan-out: the streams that follow one Subject (or one bus topic) share one subscription, one
encoding and one joined write per loop iteration, and each still gets exactly its events, in
order, over real sockets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web
from reactivex.subject import Subject

import rxsse
from rxsse import EventBus, MemoryBroker, MessageEvent
from tests.conftest import FrameReader, raw_get, wait_until


def subject_app(subject: Subject[Any], **options: Any) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        if "announce" in request.query:  # tell the streams already there, then follow
            subject.on_next(f"joined {request.query['announce']}")
        return await rxsse.stream(request, subject, heartbeat=None, **options)

    app = web.Application()
    app.router.add_get("/s", handler)
    rxsse.setup(app)
    return app


async def test_many_streams_share_one_subscription_and_let_go_of_it(serve):
    subject: Subject[Any] = Subject()
    client = await serve(subject_app(subject))
    responses = await asyncio.gather(*(client.get("/s") for _ in range(50)))
    await wait_until(lambda: len(rxsse.open_streams(client.app)) == 50)
    assert len(subject.observers) == 1
    for n in range(100):
        subject.on_next({"n": n})
    for resp in responses:
        frames = await FrameReader(resp).take(100)
        assert [json.loads(f.data)["n"] for f in frames] == list(range(100))
        resp.close()
    await wait_until(lambda: not rxsse.open_streams(client.app), message="all ended")
    assert not subject.observers  # the last stream out let go of the subject


async def test_a_stream_gets_nothing_sent_before_it_followed(serve):
    subject: Subject[Any] = Subject()
    client = await serve(subject_app(subject))
    first = await client.get("/s")
    await wait_until(lambda: len(rxsse.open_streams(client.app)) == 1)
    # The second request announces itself to the first (in the iteration it follows in).
    second = await client.get("/s?announce=second")
    await wait_until(lambda: len(rxsse.open_streams(client.app)) == 2)
    subject.on_next("after")
    assert [f.data for f in await FrameReader(first).take(2)] == ["joined second", "after"]
    assert (await FrameReader(second).next()).data == "after"
    first.close()
    second.close()


async def test_a_shutdown_event_comes_after_what_the_subject_sent_before(serve):
    subject: Subject[Any] = Subject()
    client = await serve(subject_app(subject))
    responses = [await client.get("/s") for _ in range(3)]
    await wait_until(lambda: len(rxsse.open_streams(client.app)) == 3)
    subject.on_next("last news")  # pending in this iteration's batch when the streams close
    for session in rxsse.open_streams(client.app):
        session.close(MessageEvent("bye", type="shutdown"))
    for resp in responses:
        frames = await FrameReader(resp).rest()
        assert [(f.get("event"), f.data) for f in frames] == [
            (None, "last news"),
            ("shutdown", "bye"),
        ]


async def test_bad_data_fails_every_stream_after_the_events_before_it(serve):
    subject: Subject[Any] = Subject()
    client = await serve(subject_app(subject))
    responses = [await client.get("/s") for _ in range(3)]
    await wait_until(lambda: len(rxsse.open_streams(client.app)) == 3)
    subject.on_next("fine")
    subject.on_next(object())  # in the same iteration: not JSON
    for resp in responses:
        frames = await FrameReader(resp).rest()
        assert [f.data for f in frames][:1] == ["fine"]
        assert [f.get("event") for f in frames] == [None, "stream-error"]
    assert not subject.observers


async def test_an_http_1_0_client_reads_plain_frames(serve):
    subject: Subject[Any] = Subject()
    client = await serve(subject_app(subject))
    host, port = client.base_url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /s HTTP/1.0\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.0 200") and b"chunked" not in head.lower()
    await wait_until(lambda: len(rxsse.open_streams(client.app)) == 1)
    subject.on_next("one")
    subject.on_next("two")
    subject.on_completed()
    body = await asyncio.wait_for(reader.read(), 5)  # (the server closes: the end of an 1.0 body)
    assert body == b": open\ndata: one\n\ndata: two\n\n"
    writer.close()


async def test_a_client_that_reads_nothing_is_dropped_while_the_others_get_everything(serve):
    subject: Subject[Any] = Subject()
    client = await serve(subject_app(subject, max_buffer_bytes=1 << 20))
    _, stuck_writer = await raw_get(client.base_url.rstrip("/"), "/s")
    reader = await client.get("/s")
    await wait_until(lambda: len(rxsse.open_streams(client.app)) == 2)
    payload = "x" * 100_000
    count = 400  # 40 MB: far past the socket buffers and the stuck client's bound

    async def produce() -> None:
        for n in range(count):
            subject.on_next(f"{n} {payload}")
            await asyncio.sleep(0)  # one event per loop iteration

    producing = asyncio.create_task(produce())
    numbers = []
    frames = FrameReader(reader)
    while len(numbers) < count:
        frame = await frames.next(timeout=30)
        assert frame is not None
        numbers.append(int(frame.data.split(" ", 1)[0]))
    await producing
    assert numbers == list(range(count))
    await wait_until(lambda: rxsse.metrics(client.app).overflows == 1, timeout=30)
    stuck_writer.close()
    reader.close()


class GatedReplays(MemoryBroker):
    """The in-memory broker, whose replays wait until the test opens the gate: live events
    then certainly arrive while a resume's replay is out."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def replay(self, *span: Any) -> Any:
        await self.gate.wait()
        return await super().replay(*span)


async def test_a_resumed_bus_stream_joins_the_fan_out_without_a_gap_or_a_duplicate(serve):
    broker = GatedReplays()
    bus = EventBus(broker)

    async def handler(request: web.Request) -> web.StreamResponse:
        last = request.headers.get("Last-Event-ID")
        return await rxsse.stream(request, bus.on("t", last_event_id=last), heartbeat=None)

    app = web.Application()
    app.router.add_get("/s", handler)
    rxsse.setup(app, bus=bus)
    client = await serve(app)
    live = await client.get("/s")
    await wait_until(lambda: bus.live_subscriptions == 1)
    ids = [await bus.publish("t", n) for n in range(5)]
    resumed = await client.get("/s", headers={"Last-Event-ID": ids[1]})
    await wait_until(lambda: bus.live_subscriptions == 2)
    for n in range(5, 10):  # while the resume's replay is out
        await bus.publish("t", n)
    assert [int(f.data) for f in await FrameReader(live).take(10)] == list(range(10))
    broker.gate.set()
    assert [int(f.data) for f in await FrameReader(resumed).take(8)] == list(range(2, 10))
    for n in range(10, 12):  # and live, in the fan-out, once caught up
        await bus.publish("t", n)
    assert [int(f.data) for f in await FrameReader(resumed).take(2)] == [10, 11]
    live.close()
    resumed.close()


async def test_events_from_many_threads_reach_every_stream_whole(serve):
    subject: Subject[Any] = Subject()
    client = await serve(subject_app(subject))
    session = aiohttp.ClientSession()
    try:
        responses = [await session.get(client.url("/s")) for _ in range(10)]
        await wait_until(lambda: len(rxsse.open_streams(client.app)) == 10)
        threads, each = 4, 500

        def produce(name: int) -> None:
            for n in range(each):
                subject.on_next([name, n])

        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, produce, t) for t in range(threads)))
        for resp in responses:
            received = [json.loads(f.data) for f in await FrameReader(resp).take(threads * each)]
            for name in range(threads):
                assert [n for who, n in received if who == name] == list(range(each))
            resp.close()
    finally:
        await session.close()
