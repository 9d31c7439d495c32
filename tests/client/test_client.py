"""The reactive client against real servers: rxsse apps, and a server replaying the WPT vectors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import reactivex as rx
from aiohttp import web
from reactivex import operators as ops

import rxsse
from rxsse import EventSource, EventSourceError, MessageEvent, observe
from tests.conftest import LiveSubscriptions, free_port, wait_until

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "conformance" / "wpt_vectors.json").read_text()
)


def resumable_app(seen: list[str | None], *, per_connection: int = 3, total: int = 9) -> Any:
    """An rxsse app whose stream sends ``per_connection`` events after the client's
    Last-Event-ID and then ends the response; 204 once ``total`` were sent."""

    @rxsse.sse("/numbers")
    def numbers(request: web.Request, last_event_id: int | None = None) -> Any:
        seen.append(request.headers.get("Last-Event-ID"))
        first = 0 if last_event_id is None else last_event_id + 1
        if first >= total:
            return web.Response(status=204)
        count = min(per_connection, total - first)
        return rx.range(first, first + count).pipe(ops.map(lambda n: MessageEvent(n, id=n)))

    app = web.Application()
    rxsse.setup(app, numbers, options=rxsse.StreamOptions(heartbeat=None))
    return app


async def test_reconnects_with_last_event_id_after_the_server_ends_the_stream(serve):
    seen: list[str | None] = []
    server = await serve(resumable_app(seen))
    async with EventSource(server.url("/numbers"), retry=0.01) as events:
        received = [event async for event in events]  # ends on the final 204
    assert [e.data for e in received] == [str(n) for n in range(9)]
    assert [e.id for e in received] == [str(n) for n in range(9)]
    assert seen == [None, "2", "5", "8"]
    assert events.connections == 3


async def test_reconnects_after_the_server_drops_the_connection_abruptly(serve):
    seen: list[str | None] = []
    live = LiveSubscriptions()

    @rxsse.sse("/flaky")
    def flaky(request: web.Request, last_event_id: int | None = None) -> Any:
        seen.append(last_event_id)
        first = 0 if last_event_id is None else last_event_id + 1
        if first >= 6:
            return web.Response(status=204)

        def cut(n: int) -> None:
            if n == first + 1:  # after two events, kill the TCP connection mid-stream
                loop = asyncio.get_running_loop()
                transport = request.transport
                assert transport is not None
                loop.call_later(0.01, transport.abort)

        # (ids stop at 5: an event 6 racing the cut would otherwise reach the client)
        events = rx.interval(0.005).pipe(
            ops.map(lambda i: first + i), ops.take_while(lambda n: n < 6), ops.do_action(cut)
        )
        return live.track(events.pipe(ops.map(lambda n: MessageEvent(n, id=n))))

    app = web.Application()
    rxsse.setup(app, flaky, options=rxsse.StreamOptions(heartbeat=None))
    server = await serve(app)
    async with EventSource(server.url("/flaky"), retry=0.01) as source:
        received = [int(e.data) async for e in source]
    # every id exactly once, in order, although each connection was cut after some events
    assert received == sorted(set(received)) == list(range(received[0], 6))
    assert received[0] == 0
    assert len(seen) >= 3
    await wait_until(lambda: live.live == 0)


async def test_retry_from_the_server_is_honoured(serve):
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls > 1:
            return web.Response(status=204)
        return await rxsse.stream(request, rx.of(MessageEvent("first", retry=20)))

    app = web.Application()
    app.router.add_get("/r", handler)
    rxsse.setup(app)  # (rxsse.stream() needs it)
    server = await serve(app)
    # The client's own delay is an hour: it reconnects in time only by obeying retry: 20.
    async with EventSource(server.url("/r"), retry=3600) as source:
        received = await asyncio.wait_for(_all(source), timeout=30)
        assert source.retry == 0.02
    assert [e.data for e in received] == ["first"]
    assert calls == 2


async def _all(source: EventSource) -> list[MessageEvent]:
    return [event async for event in source]


async def test_http_204_stops_for_good(serve):
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/stop", handler)
    server = await serve(app)
    async with EventSource(server.url("/stop"), retry=0) as source:
        assert [e async for e in source] == []
        assert [e async for e in source] == []  # and stays stopped
    assert calls == 1


async def test_wrong_content_type_fails_with_a_clear_error(serve):
    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/html", html)
    server = await serve(app)
    with pytest.raises(EventSourceError, match="text/html") as failure:
        async with EventSource(server.url("/html")) as source:
            await source.__anext__()
    assert failure.value.status == 200
    assert failure.value.content_type.startswith("text/html")


async def test_error_status_fails_with_a_clear_error(serve):
    app = web.Application()
    rxsse.setup(app)
    server = await serve(app)
    with pytest.raises(EventSourceError, match="404") as failure:
        async with EventSource(server.url("/nowhere")) as source:
            await source.__anext__()
    assert failure.value.status == 404


async def test_gives_up_after_max_reconnects_when_nothing_listens():
    port = free_port()  # nothing listens there
    with pytest.raises(aiohttp.ClientConnectionError):
        async with EventSource(f"http://127.0.0.1:{port}/", retry=0, max_reconnects=2) as source:
            await source.__anext__()


async def test_sends_accept_and_the_initial_last_event_id(serve):
    headers: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        headers.append(dict(request.headers))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/h", handler)
    server = await serve(app)
    async with EventSource(server.url("/h"), last_event_id="41", headers={"X-Token": "t"}) as s:
        assert [e async for e in s] == []
    assert headers[0]["Accept"] == "text/event-stream"
    assert headers[0]["Last-Event-ID"] == "41"
    assert headers[0]["X-Token"] == "t"


def ticks_app(live: LiveSubscriptions) -> web.Application:
    """``GET /ticks``: a tick every 10 ms, its subscriptions counted by ``live``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await rxsse.stream(request, live.track(rx.interval(0.01)), heartbeat=None)

    app = web.Application()
    app.router.add_get("/ticks", handler)
    rxsse.setup(app)  # (rxsse.stream() needs it)
    return app


async def test_observe_emits_events_and_disposal_closes_the_connection(serve):
    live = LiveSubscriptions()
    server = await serve(ticks_app(live))
    received: list[MessageEvent] = []
    subscription = observe(server.url("/ticks")).subscribe(received.append)
    await wait_until(lambda: len(received) >= 3)
    assert live.live == 1
    subscription.dispose()
    await wait_until(lambda: live.live == 0, message="the server saw the subscription disposed")
    assert [e.data for e in received[:3]] == ["0", "1", "2"]


async def test_observe_completes_on_204_and_fails_on_a_bad_status(serve):
    seen: list[str | None] = []
    server = await serve(resumable_app(seen, per_connection=2, total=4))
    done = asyncio.get_running_loop().create_future()
    received: list[str] = []
    observe(server.url("/numbers"), retry=0.01).subscribe(
        lambda e: received.append(e.data), done.set_exception, lambda: done.set_result(True)
    )
    assert await asyncio.wait_for(done, timeout=10)
    assert received == ["0", "1", "2", "3"]
    failed = asyncio.get_running_loop().create_future()
    observe(server.url("/missing")).subscribe(on_error=failed.set_result)
    assert isinstance(await asyncio.wait_for(failed, timeout=10), EventSourceError)


# -- the WPT vectors that describe connections, statuses and content types ----------------------


def client_vectors() -> list[Any]:
    chosen = []
    for vector in VECTORS:
        if "status" not in vector and "connections" not in vector:
            continue  # parser-only vectors (fromReadableStream): see test_parser.py
        for writing in ("whole", "byte-by-byte"):
            chosen.append(pytest.param(vector, writing, id=f"{vector['name']}-{writing}"))
    return chosen


def vector_app(vector: dict[str, Any], writing: str, seen: list[str | None]) -> web.Application:
    """Answers successive requests with the vector's connections (then 204)."""
    connections = vector.get("connections") or [
        {"status": vector.get("status", 200), "body": vector["stream"]}
    ]

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Last-Event-ID"))
        if len(seen) > len(connections):
            return web.Response(status=204)
        connection = connections[len(seen) - 1]
        status = connection.get("status", vector.get("status", 200))
        content_type = vector.get("content_type", "text/event-stream")
        response = web.StreamResponse(
            status=status, reason="HAHAHAHA", headers={"Content-Type": content_type}
        )
        await response.prepare(request)
        body = connection["body"].encode()
        if status not in (204, 205):
            pieces = [body] if writing == "whole" else [body[i : i + 1] for i in range(len(body))]
            for piece in pieces:
                await response.write(piece)
        await response.write_eof()
        return response

    async def redirect(request: web.Request) -> web.Response:
        status = vector["redirect_status"]
        return web.Response(status=status, headers={"Location": "/final"})

    app = web.Application()
    app.router.add_get("/final", handler)
    app.router.add_get("/start", redirect if "redirect_status" in vector else handler)
    return app


@pytest.mark.parametrize(("vector", "writing"), client_vectors())
async def test_wpt_vector_against_the_client(serve, vector, writing):
    seen: list[str | None] = []
    server = await serve(vector_app(vector, writing, seen))
    expected = [e for e in vector["expected"] if e["type"] not in ("open", "error")]
    outcome = vector.get("expected_connection")
    if outcome == "open":
        expected = [{"type": "message", "data": "data", "lastEventId": ""}]
    received: list[MessageEvent] = []
    source = EventSource(server.url("/start"), retry=3600)  # the vectors' own retry: decides
    try:
        if outcome == "fail" and vector.get("status") != 204:
            with pytest.raises(EventSourceError):
                await asyncio.wait_for(source.__anext__(), timeout=10)
        else:
            async with asyncio.timeout(20):
                async for event in source:
                    received.append(event)
                    if len(received) == len(expected):
                        break
    finally:
        await source.close()
    assert [(e.type, e.data, e.id) for e in received] == [
        (e["type"], e["data"], e["lastEventId"]) for e in expected
    ]
    for number, connection in enumerate(vector.get("connections", [])):
        if "request_last_event_id" in connection and number < len(seen):
            assert seen[number] == connection["request_last_event_id"]
    if "expected_reconnection_time_ms" in vector:
        assert source.retry * 1000 == vector["expected_reconnection_time_ms"]


async def test_a_stream_gone_silent_is_reconnected_after_the_read_timeout(serve):
    # One event, then nothing, not even a heartbeat: a connection that went half-open looks so.
    seen: list[str | None] = []

    @rxsse.sse("/quiet")
    def quiet(request: web.Request) -> Any:
        seen.append(request.headers.get("Last-Event-ID"))
        return rx.concat(rx.of(MessageEvent("hello", id=len(seen))), rx.never())

    app = web.Application()
    rxsse.setup(app, quiet, options=rxsse.StreamOptions(heartbeat=None))
    server = await serve(app)
    async with EventSource(server.url("/quiet"), read_timeout=0.3, retry=0.01) as events:
        first = await events.__anext__()
        second = await asyncio.wait_for(events.__anext__(), 10)  # after a reconnect
    assert (first.id, second.id) == ("1", "2")
    assert seen == [None, "1"]  # it resumed where it was
    assert events.connections == 2


async def test_failures_in_a_row_back_off_exponentially_up_to_the_cap():
    port = free_port()  # nothing listens: every attempt fails at once
    source = EventSource(f"http://127.0.0.1:{port}/s", retry=0.05, max_backoff=0.2)
    reading = asyncio.ensure_future(source.__anext__())
    try:
        seen: dict[int, float] = {}  # failures in a row -> the backoff then
        await wait_until(lambda: source.failures >= 1, timeout=20)
        first = asyncio.get_running_loop().time()

        def note() -> bool:
            seen[source.failures] = source.backoff
            return source.failures >= 6

        await wait_until(note, timeout=20)
        waited = asyncio.get_running_loop().time() - first
    finally:
        reading.cancel()
        await source.close()
    assert {n: seen[n] for n in seen if 0 < n <= 6} == {
        n: min(0.2, 0.05 * 2 ** (n - 1)) for n in seen if 0 < n <= 6
    }
    assert max(seen) >= 6 and seen.get(6, 0.2) == 0.2  # doubled, then capped
    # It did wait so: five waits after failures 1 to 5, each at least half its backoff (a
    # lower bound, which a sleep keeps; at a fixed 0.05 s it would be 0.25 s).
    assert waited >= (0.05 + 0.1 + 0.2 + 0.2 + 0.2) / 2 - 0.01


def test_a_bad_read_timeout_or_backoff_is_refused():
    with pytest.raises(ValueError, match="read_timeout"):
        EventSource("http://127.0.0.1:1/s", read_timeout=0)
    with pytest.raises(ValueError, match="max_backoff"):
        EventSource("http://127.0.0.1:1/s", max_backoff=-1)


CLIENT = Path(__file__).resolve().parents[2] / "docs" / "client.md"


def readme_observe_example() -> str:
    section = CLIENT.read_text()
    blocks = section.split("```python\n")[1:]
    (block,) = [b.split("```", 1)[0] for b in blocks if "observe(" in b.split("```", 1)[0]]
    return block


async def test_the_readme_observe_example_runs_as_written_without_a_loop(serve):
    from examples import demo

    server = await serve(demo.create_app())
    code = readme_observe_example().replace("http://127.0.0.1:8080", server.base_url.rstrip("/"))
    printed: list[Any] = []
    namespace: dict[str, Any] = {"print": printed.append}
    compiled = compile(code, "client.md", "exec", dont_inherit=True)
    # Plain code, in a thread with no event loop, as a script would run it.
    await asyncio.to_thread(exec, compiled, namespace)  # our own docs' code
    (ticks,) = printed
    assert [tick["count"] for tick in ticks] == [0, 1, 2]


async def test_observe_without_a_loop_fails_with_the_error_and_disposes_from_any_thread(serve):
    live = LiveSubscriptions()
    server = await serve(ticks_app(live))

    def missing() -> BaseException:
        try:
            observe(server.url("/nothing-here")).run()
        except EventSourceError as exc:
            return exc
        raise AssertionError("no error")

    error = await asyncio.to_thread(missing)
    assert isinstance(error, EventSourceError) and error.status == 404
    received: list[MessageEvent] = []
    subscription = await asyncio.to_thread(
        lambda: observe(server.url("/ticks")).subscribe(received.append)
    )
    await wait_until(lambda: len(received) >= 3 and live.live == 1)
    subscription.dispose()  # from this thread: not the one the stream runs on
    await wait_until(lambda: live.live == 0, message="the server saw the connection close")
