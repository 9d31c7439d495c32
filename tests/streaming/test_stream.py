"""The session: stream() over real sockets, from subscription to disposal."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
import reactivex as rx
from aiohttp import web
from reactivex import operators as ops
from reactivex.disposable import Disposable
from reactivex.subject import Subject

import rxsse
from rxsse import MessageEvent
from tests.conftest import FrameReader, LiveSubscriptions, wait_until


def app_streaming(make_source, **options: Any) -> web.Application:
    """An app whose GET /s streams ``make_source(request)`` through rxsse.stream()."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await rxsse.stream(request, make_source(request), **options)

    app = web.Application()
    app.router.add_get("/s", handler)
    rxsse.setup(app)
    return app


async def test_headers_are_those_of_an_event_stream(serve):
    client = await serve(app_streaming(lambda r: rx.never(), headers={"X-Extra": "1"}))
    async with client.get("/s") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.headers["X-Accel-Buffering"] == "no"
        assert resp.headers["X-Extra"] == "1"
        assert "Content-Encoding" not in resp.headers
        assert "Content-Length" not in resp.headers


async def test_idle_stream_sends_headers_at_once(serve):
    # rx.never() emits nothing: the headers must still arrive, so a browser fires "open".
    client = await serve(app_streaming(lambda r: rx.never()))
    resp = await asyncio.wait_for(client.get("/s"), timeout=5)
    assert resp.status == 200
    resp.close()


async def test_completion_ends_the_response(serve):
    client = await serve(app_streaming(lambda r: rx.of("a", "b", "c")))
    async with client.get("/s") as resp:
        frames = await FrameReader(resp).rest()
    assert [f.data for f in frames] == ["a", "b", "c"]


async def test_plain_values_are_wrapped_as_message_events(serve):
    client = await serve(app_streaming(lambda r: rx.of({"n": 1}, 2, "three")))
    async with client.get("/s") as resp:
        frames = await FrameReader(resp).rest()
    assert [f.data for f in frames] == ['{"n":1}', "2", "three"]


async def test_message_event_fields_reach_the_wire(serve):
    event = MessageEvent({"a": 1}, id="7", type="update", retry=1500)
    client = await serve(app_streaming(lambda r: rx.of(event)))
    async with client.get("/s") as resp:
        (frame,) = await FrameReader(resp).rest()
    expected = [("id", "7"), ("event", "update"), ("retry", "1500"), ("data", '{"a":1}')]
    assert frame.fields == expected


async def test_many_frames_arrive_in_order(serve):
    client = await serve(app_streaming(lambda r: rx.range(0, 2000)))
    async with client.get("/s") as resp:
        frames = await FrameReader(resp).rest()
    assert [int(f.data) for f in frames] == list(range(2000))


async def test_client_disconnect_disposes_idle_subscription(serve):
    live = LiveSubscriptions()
    client = await serve(app_streaming(lambda r: live.track(rx.never())))
    resp = await client.get("/s")
    assert resp.status == 200
    await wait_until(lambda: live.live == 1, message="subscribed")
    resp.close()  # closes the socket; the stream never writes, so only the watch can notice
    await wait_until(lambda: live.live == 0, timeout=1.0, message="disposed within a second")
    assert live.disposed == 1


async def test_client_disconnect_disposes_busy_subscription(serve):
    live = LiveSubscriptions()
    client = await serve(app_streaming(lambda r: live.track(rx.interval(0.001))))
    resp = await client.get("/s")
    await FrameReader(resp).take(5)
    resp.close()
    await wait_until(lambda: live.live == 0, timeout=1.0, message="disposed within a second")


async def test_subscription_is_disposed_exactly_once(serve):
    disposals = []

    def source(request: web.Request) -> rx.Observable[Any]:
        def subscribe(observer, scheduler=None):
            return Disposable(lambda: disposals.append(1))

        return rx.create(subscribe)

    app = app_streaming(source)
    client = await serve(app)
    resp = await client.get("/s")
    await wait_until(lambda: len(rxsse.open_streams(app)) == 1)
    resp.close()
    await wait_until(lambda: disposals == [1], timeout=1.0)
    await client.close()  # shutdown must not dispose a second time
    assert disposals == [1]


async def test_200_clients_that_disconnect_leave_zero_live_subscriptions(serve):
    live = LiveSubscriptions()
    ticks: Subject[int] = Subject()
    client = await serve(app_streaming(lambda r: live.track(ticks)))
    responses = await asyncio.gather(*(client.get("/s") for _ in range(200)))
    assert all(resp.status == 200 for resp in responses)
    await wait_until(lambda: live.live == 200, message="all subscribed")
    ticks.on_next(1)
    readers = [FrameReader(resp) for resp in responses]
    firsts = await asyncio.gather(*(reader.next() for reader in readers))
    assert all(frame is not None and frame.data == "1" for frame in firsts)
    for resp in responses:
        resp.close()
    await wait_until(lambda: live.live == 0, message="all disposed")
    assert live.total == 200
    assert not ticks.observers


async def test_error_before_first_frame_is_http_500_without_internals(serve, caplog):
    client = await serve(app_streaming(lambda r: rx.throw(RuntimeError("db password"))))
    async with client.get("/s") as resp:
        assert resp.status == 500
        assert resp.content_type == "application/json"
        body = await resp.text()
    assert "db password" not in body
    assert json.loads(body) == {"error": "internal server error"}
    assert "db password" in caplog.text  # the traceback goes to the log


async def test_http_exception_before_first_frame_keeps_its_status(serve):
    client = await serve(app_streaming(lambda r: rx.throw(web.HTTPForbidden())))
    async with client.get("/s") as resp:
        assert resp.status == 403


async def test_error_after_first_frame_is_an_error_event_then_the_end(serve, caplog):
    subject: Subject[str] = Subject()
    client = await serve(app_streaming(lambda r: subject))
    async with client.get("/s") as resp:
        assert resp.status == 200
        reader = FrameReader(resp)
        subject.on_next("first")
        assert (await reader.next()).data == "first"
        subject.on_error(RuntimeError("secret internals"))
        frames = await reader.rest()
    assert len(frames) == 1
    # Not "error", which a browser's EventSource hands to onerror, its lost-connection handler.
    assert frames[0].get("event") == "stream-error"
    assert json.loads(frames[0].data) == {
        "status": 500,
        "message": "internal server error",
        "failures": 1,
    }
    assert frames[0].get("id") == "rxsse-failed:1:"  # no event had an id
    assert frames[0].get("retry") == "2000"
    assert "secret internals" in caplog.text


async def test_unencodable_value_fails_the_stream_with_an_error_event(serve):
    subject: Subject[Any] = Subject()
    client = await serve(app_streaming(lambda r: subject))
    async with client.get("/s") as resp:
        reader = FrameReader(resp)
        subject.on_next("ok")
        await reader.next()
        subject.on_next(object())
        frames = await reader.rest()
    assert [f.get("event") for f in frames] == ["stream-error"]
    assert not subject.observers  # the failed stream let go of its subscription


async def test_interval_without_scheduler_ticks_on_the_loop(serve):
    threads: list[int] = []

    def source(request: web.Request) -> rx.Observable[Any]:
        return rx.interval(0.01).pipe(
            ops.do_action(lambda _: threads.append(threading.get_ident())), ops.take(3)
        )

    client = await serve(app_streaming(source))
    async with client.get("/s") as resp:
        frames = await FrameReader(resp).rest()
    assert [f.data for f in frames] == ["0", "1", "2"]
    assert set(threads) == {threading.get_ident()}  # the test's loop runs the server too


async def test_on_next_from_a_worker_thread_arrives(serve):
    subject: Subject[int] = Subject()
    client = await serve(app_streaming(lambda r: subject))

    def produce() -> None:
        for n in range(500):
            subject.on_next(n)
        subject.on_completed()

    async with client.get("/s") as resp:
        worker = threading.Thread(target=produce)
        worker.start()
        frames = await FrameReader(resp).rest()
        worker.join()
    assert [int(f.data) for f in frames] == list(range(500))


async def test_an_idle_stream_opens_with_a_comment_then_pings_with_comment_lines(serve):
    client = await serve(app_streaming(lambda r: rx.never(), heartbeat=0.05))
    async with client.get("/s") as resp:
        # Lines with no blank line after them: no client can take them for an event.
        assert await resp.content.readexactly(len(b": open\n: ping\n")) == b": open\n: ping\n"


async def test_no_heartbeat_when_disabled(serve):
    subject: Subject[str] = Subject()

    async def quiet(request: web.Request) -> web.StreamResponse:
        return await rxsse.stream(request, subject, heartbeat=None)

    async def beating(request: web.Request) -> web.StreamResponse:
        return await rxsse.stream(request, rx.never(), heartbeat=0.02)

    app = web.Application()
    app.router.add_get("/quiet", quiet)
    app.router.add_get("/beating", beating)
    rxsse.setup(app)  # (rxsse.stream() needs it)
    client = await serve(app)
    async with client.get("/quiet") as quiet_resp, client.get("/beating") as beating_resp:
        control = FrameReader(beating_resp)
        assert (await control.next(comments=True)).fields == [("", "open")]
        for _ in range(3):  # three heartbeat periods pass on the control stream...
            assert (await control.next(comments=True)).is_comment
        subject.on_next("only")
        subject.on_completed()
        frames = []
        reader = FrameReader(quiet_resp)
        while (frame := await reader.next(comments=True)) is not None:
            frames.append(frame)
    # ...and none on this one.
    assert [f.fields for f in frames] == [[("", "open")], [("data", "only")]]


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True])
def test_heartbeat_that_is_not_a_positive_finite_number_is_rejected(bad):
    async def run() -> None:
        await rxsse.stream(None, rx.never(), heartbeat=bad)  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="heartbeat"):
        asyncio.run(run())


async def test_async_iterator_source_streams_and_is_closed_on_disconnect(serve):
    closed = asyncio.Event()

    async def numbers():
        try:
            n = 0
            while True:
                yield n
                n += 1
                await asyncio.sleep(0.001)
        finally:
            closed.set()

    client = await serve(app_streaming(lambda r: numbers()))
    resp = await client.get("/s")
    frames = await FrameReader(resp).take(3)
    assert [f.data for f in frames] == ["0", "1", "2"]
    resp.close()
    await asyncio.wait_for(closed.wait(), timeout=2)


async def test_shutdown_ends_open_streams(serve):
    live = LiveSubscriptions()
    app = app_streaming(lambda r: live.track(rx.never()))
    client = await serve(app, shutdown_timeout=30)
    responses = [await client.get("/s") for _ in range(3)]
    await wait_until(lambda: live.live == 3)
    shutdown = asyncio.create_task(client.close())
    # Every stream ends normally (EOF), long before aiohttp's 30 s timeout would cancel it.
    for resp in responses:
        assert await FrameReader(resp).rest() == []
    await shutdown
    assert live.live == 0
    assert rxsse.open_streams(app) == []


async def test_frames_emitted_before_the_headers_are_sent_once_though_the_end_must_wait(serve):
    # The source emits 12 MiB and completes within subscribe(): the stream's ending writes it
    # all, and waits for the client while doing so.
    payload = "y" * (256 * 1024)
    frames = [f"{n} {payload}" for n in range(50)]
    app = app_streaming(lambda r: rx.from_iterable(frames), max_buffer_bytes=1 << 30)
    client = await serve(app)
    resp = await client.get("/s")
    frames = await FrameReader(resp).rest(timeout=30)
    assert [int(f.data.split()[0]) for f in frames] == list(range(50))
    assert rxsse.metrics(app).events_sent == 50


async def test_a_burst_before_the_headers_is_no_lag_and_arrives_whole(serve, caplog):
    # The bounds measure how far a client lags behind, not how many frames a source emits at
    # once: 100 frames before the headers, with room for 10 lagging ones, all arrive.
    frames = [f"{n} {'y' * 1000}" for n in range(100)]
    app = app_streaming(lambda r: rx.from_iterable(frames), max_buffer_frames=10)
    client = await serve(app)
    resp = await client.get("/s")
    received = await FrameReader(resp).rest()
    assert [int(f.data.split()[0]) for f in received] == list(range(100))
    assert rxsse.metrics(app).overflows == 0
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


async def test_a_client_that_reads_late_gets_every_frame_in_order(serve):
    # 20 MB: more than the kernel's socket buffers can hold (5 MB sometimes fit, and then
    # the server never had to wait), all of it allowed to queue, so no overflow policy acts.
    payload = "x" * 1000
    count = 20_000
    app = app_streaming(
        lambda r: rx.range(0, count).pipe(ops.map(lambda n: f"{n} {payload}")),
        max_buffer_frames=count,
        max_buffer_bytes=1 << 26,
    )
    client = await serve(app)
    resp = await client.get("/s")
    # (Held from the start: the source may complete, and the stream leave the open ones,
    # while its last frames still wait for the client.)
    (session,) = rxsse.open_streams(app)
    # Do not read until the server's writes wait for the transport to drain.
    await wait_until(
        lambda: session.waiting_for_client, message="the server blocked on a full transport"
    )
    frames = await FrameReader(resp).rest(timeout=30)
    assert [int(f.data.split()[0]) for f in frames] == list(range(count))
    assert all(f.data.endswith(payload) for f in frames)


def start_producers(subject: Subject[Any], threads: int, per_thread: int) -> list[threading.Thread]:
    """Threads that each emit ``[their number, n]`` for n in range(per_thread), started."""

    def produce(name: int) -> None:
        for n in range(per_thread):
            subject.on_next([name, n])

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    return workers


async def test_four_threads_emitting_10000_each_into_one_stream_all_arrive_in_order(serve):
    subject: Subject[Any] = Subject()
    per_thread, threads = 10_000, 4
    client = await serve(app_streaming(lambda r: subject, heartbeat=None))
    resp = await client.get("/s")
    await wait_until(lambda: len(rxsse.open_streams(client.app)) == 1)

    workers = start_producers(subject, threads, per_thread)
    frames = await FrameReader(resp).take(per_thread * threads, timeout=60)
    await wait_until(lambda: not any(worker.is_alive() for worker in workers))
    received = [json.loads(f.data) for f in frames]
    for name in range(threads):
        assert [n for who, n in received if who == name] == list(range(per_thread))
    resp.close()


async def test_threads_into_one_subject_reach_every_stream_in_order_then_completion(serve):
    # Calls from other threads hop to the loop in batches: each stream still gets each
    # thread's events in order, and the completion a thread sends after its events comes last.
    subject: Subject[Any] = Subject()
    per_thread, threads, streams = 2_000, 4, 20
    client = await serve(app_streaming(lambda r: subject, heartbeat=None))
    responses = [await client.get("/s") for _ in range(streams)]
    await wait_until(lambda: len(rxsse.open_streams(client.app)) == streams)

    workers = start_producers(subject, threads, per_thread)
    await wait_until(lambda: not any(worker.is_alive() for worker in workers), timeout=60)
    finisher = threading.Thread(target=subject.on_completed)
    finisher.start()
    for resp in responses:
        frames = await FrameReader(resp).rest(timeout=60)  # to the end: completion came last
        received = [json.loads(f.data) for f in frames]
        assert len(received) == per_thread * threads
        for name in range(threads):
            assert [n for who, n in received if who == name] == list(range(per_thread))
    finisher.join()


async def test_stream_without_setup_says_what_it_needs(serve, caplog):
    # Without setup, the app has no counters and no shutdown hook for its streams: rxsse says
    # so rather than run a stream that shutdown would not end.
    async def handler(request: web.Request) -> web.StreamResponse:
        return await rxsse.stream(request, rx.never())

    app = web.Application()
    app.router.add_get("/s", handler)
    client = await serve(app)
    async with client.get("/s") as resp:
        assert resp.status == 500
    assert "rxsse.stream() needs rxsse.setup(app)" in caplog.text
