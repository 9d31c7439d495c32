"""rxsse.testing, the kit for users' own tests: used here the way a user would use it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import reactivex as rx
from aiohttp import web

import rxsse
from examples import ticks
from rxsse import MessageEvent
from rxsse.testing import EventReader, LiveSubscriptions, serve, wait_until


async def test_event_reader_gives_parsed_events_of_an_example():
    app = ticks.create_app()
    async with serve(app) as server, server.get("/ticks?period=0.01") as response:
        events = await EventReader(response).take(3)
    assert [json.loads(e.data)["count"] for e in events] == [0, 1, 2]
    assert all(e.type == "message" for e in events)


def fields_app(source: rx.Observable[Any]) -> web.Application:
    @rxsse.sse("/s")
    def handler() -> rx.Observable[Any]:
        return source

    app = web.Application()
    rxsse.setup(app, handler, options=rxsse.StreamOptions(heartbeat=None))
    return app


async def test_event_reader_reads_fields_as_a_browser_and_ends_with_the_stream():
    events = [
        MessageEvent("two\nlines", id=7, type="update"),
        MessageEvent({"a": 1}, comment="not an event"),
    ]
    app = fields_app(rx.from_iterable(events))
    async with serve(app) as server, server.get("/s") as response:
        reader = EventReader(response)
        got = await reader.rest()
        assert await reader.next() is None  # and stays ended
    assert [(e.data, e.id, e.type) for e in got] == [
        ("two\nlines", "7", "update"),
        ('{"a":1}', "7", "message"),  # the last id carries on, as in a browser
    ]


async def test_take_fails_when_the_stream_ends_first_and_next_times_out_when_quiet():
    async with serve(fields_app(rx.of("only"))) as server, server.get("/s") as response:
        with pytest.raises(AssertionError, match="ended after 1 of 2"):
            await EventReader(response).take(2)
    async with serve(fields_app(rx.never())) as server, server.get("/s") as response:
        with pytest.raises(asyncio.TimeoutError):
            await EventReader(response).next(timeout=0.05)


async def test_serve_shuts_the_app_down_and_ends_its_streams():
    live = LiveSubscriptions()
    async with serve(fields_app(live.track(rx.never()))) as server:
        responses = [await server.get("/s") for _ in range(3)]
        await wait_until(lambda: live.live == 3)
        await server.close()  # as on SIGTERM: every stream ends
        for response in responses:
            assert await EventReader(response).rest() == []
    assert live.live == 0 and live.total == 3


async def test_wait_until_fails_with_its_message_after_the_deadline():
    with pytest.raises(AssertionError, match="never true"):
        await wait_until(lambda: False, timeout=0.05, message="never true")


def test_live_subscriptions_count_each_subscription_until_it_ends():
    live = LiveSubscriptions()
    endless = live.track(rx.never()).subscribe()
    assert (live.live, live.total) == (1, 1)
    live.track(rx.of(1, 2, 3)).subscribe()  # completes within subscribe()
    assert (live.live, live.total, live.disposed) == (1, 2, 1)
    endless.dispose()
    assert (live.live, live.total, live.disposed) == (0, 2, 2)


TESTING = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def readme_example() -> str:
    section = TESTING.read_text()
    return section.split("```python\n", 1)[1].split("```", 1)[0]


async def test_the_readme_example_passes(sse_server, live_subscriptions):
    namespace: dict[str, Any] = {}
    exec(compile(readme_example(), "testing.md", "exec"), namespace)  # our own docs' code
    test = namespace["test_a_client_that_leaves_disposes_its_subscription"]
    await test(sse_server, live_subscriptions)  # (tests/testing/test_plugin.py runs it with pytest)
