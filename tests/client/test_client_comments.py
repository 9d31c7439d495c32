"""Comment lines, reported on request: by the parser in stream order, and by the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import reactivex as rx
from aiohttp import web

import rxsse
from rxsse import EventSource, MessageEvent, Parser
from tests.client.conformance.stream_server import ServedStreams, served_streams


def kinds(events: list[MessageEvent]) -> list[tuple[str, str | None]]:
    return [("comment", e.comment) if e.comment is not None else ("event", e.data) for e in events]


def test_the_parser_reports_comments_in_stream_order_when_asked():
    parser = Parser(comments=True)
    events = parser.feed(b":first\ndata: a\n: inside\ndata: b\n\n:  two spaces\n:\n")
    assert kinds(events) == [
        ("comment", "first"),
        ("comment", "inside"),  # read before the event it sits in ends
        ("event", "a\nb"),
        ("comment", " two spaces"),  # (one leading space dropped, as for a field)
        ("comment", ""),
    ]
    assert all(e.data is None and e.id is None and e.type is None for e in events[:2])


def test_a_comment_split_across_chunks_is_one_comment():
    parser = Parser(comments=True)
    assert parser.feed(b": pi") == []
    assert kinds(parser.feed(b"ng\r")) == [("comment", "ping")]
    assert kinds(parser.feed(b"\ndata: x\n\n")) == [("event", "x")]


def test_the_parser_drops_comments_by_default():
    assert kinds(Parser().feed(b":first\ndata: a\n\n")) == [("event", "a")]


@pytest.fixture
async def streams() -> AsyncIterator[ServedStreams]:
    async with served_streams() as server:
        yield server


async def test_the_client_yields_comments_when_asked_and_only_then(streams):
    received: dict[bool, list[MessageEvent]] = {}
    for comments in (True, False):
        async with EventSource(streams.url(), comments=comments) as source:
            reading = asyncio.ensure_future(source.__anext__())
            connection = await streams.next_connection()
            connection.send(": ping\n\ndata: a\n\n")
            received[comments] = [await reading]
            if comments:
                received[comments].append(await source.__anext__())
    assert kinds(received[True]) == [("comment", "ping"), ("event", "a")]
    assert kinds(received[False]) == [("event", "a")]


async def test_observe_passes_comments_through_from_an_rxsse_heartbeat(serve):
    async def handler(request: web.Request) -> web.StreamResponse:
        return await rxsse.stream(request, rx.never(), heartbeat=0.01)

    app = web.Application()
    app.router.add_get("/quiet", handler)
    rxsse.setup(app)
    server = await serve(app)
    received: list[MessageEvent] = []
    subscription = rxsse.observe(server.url("/quiet"), comments=True).subscribe(received.append)
    try:
        await rxsse.testing.wait_until(lambda: len(received) >= 2)
    finally:
        subscription.dispose()
    assert all(e.comment is not None and e.data is None for e in received)
