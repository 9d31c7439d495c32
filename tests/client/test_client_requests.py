"""The client's request: any method with a body, resent on every reconnect; redirects followed
deliberately, and where reconnects go after them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rxsse import EventSource
from tests.client.conformance.stream_server import ServedStreams, served_streams


@pytest.fixture
async def streams() -> AsyncIterator[ServedStreams]:
    async with served_streams() as server:
        yield server


async def test_a_post_with_a_json_body_is_resent_on_every_reconnect(streams):
    async with EventSource(
        streams.url(), method="POST", json={"prompt": "héllo"}, retry=0
    ) as source:
        reading = asyncio.ensure_future(source.__anext__())
        first = await streams.next_connection()
        first.send("id: 1\ndata: a\n\n")
        assert (await reading).data == "a"
        first.break_()
        reading = asyncio.ensure_future(source.__anext__())
        second = await streams.next_connection()
        second.send("data: b\n\n")
        assert (await reading).data == "b"
    for connection in (first, second):
        assert connection.method == "POST"
        assert connection.body == '{"prompt":"héllo"}'.encode()
        assert connection.headers["Content-Type"] == "application/json"
        assert connection.headers["Accept"] == "text/event-stream"
    assert "Last-Event-ID" not in first.headers
    assert second.headers["Last-Event-ID"] == "1"


@pytest.mark.parametrize(
    ("body", "headers", "content_type"),
    [
        ("text", {}, "text/plain; charset=utf-8"),
        ("text", {"content-type": "application/x-custom"}, "application/x-custom"),
        (b"\x00\x01", {"Content-Type": "application/octet-stream"}, "application/octet-stream"),
    ],
)
async def test_a_body_is_sent_with_its_content_type(streams, body, headers, content_type):
    async with EventSource(streams.url(), method="put", body=body, headers=headers) as source:
        reading = asyncio.ensure_future(source.__anext__())
        connection = await streams.next_connection()
        connection.send("data: ok\n\n")
        await reading
    assert connection.method == "PUT"
    assert connection.body == (body.encode() if isinstance(body, str) else body)
    assert connection.headers["Content-Type"] == content_type


def test_a_body_with_get_or_two_bodies_are_refused():
    with pytest.raises(ValueError, match="GET request has no body"):
        EventSource("http://127.0.0.1:1/s", body="x")
    with pytest.raises(ValueError, match="not both"):
        EventSource("http://127.0.0.1:1/s", method="POST", body="x", json={})


async def test_the_initial_last_event_id_is_kept_until_an_event_brings_an_id(streams):
    async with EventSource(streams.url(), last_event_id="41", retry=0) as source:
        reading = asyncio.ensure_future(source.__anext__())
        first = await streams.next_connection()
        first.send("data: no id\n\n")
        assert (await reading).id == "41"
        first.break_()
        reading = asyncio.ensure_future(source.__anext__())
        second = await streams.next_connection()
        second.send("id: 42\ndata: b\n\n")
        await reading
    assert first.headers["Last-Event-ID"] == second.headers["Last-Event-ID"] == "41"


async def read_one(source: EventSource, streams: ServedStreams, text: str) -> None:
    reading = asyncio.ensure_future(source.__anext__())
    (await streams.next_connection()).send(text)
    await reading


@pytest.mark.parametrize(
    ("status", "method", "body"),
    [
        (301, "GET", b""),
        (302, "GET", b""),
        (303, "GET", b""),
        (307, "POST", b"q"),
        (308, "POST", b"q"),
    ],
)
async def test_redirects_are_followed_and_reconnects_go_to_their_target(
    streams, status, method, body
):
    start = streams.url(f"/redirect/{status}")
    async with EventSource(start, method="POST", body="q", retry=0) as source:
        await read_one(source, streams, "id: 1\ndata: a\n\n")
        streams.connections[0].break_()
        await read_one(source, streams, "data: b\n\n")
        assert source.url == start
        assert source.current_url == streams.url("/stream")
    first, second = streams.connections
    # 307 and 308 keep the method and the body; 301 and 302 after a POST, and 303, drop them
    # for a GET (as fetch does), and so does the reconnect, which goes straight to the target.
    assert (first.method, first.body, first.redirects) == (method, body, 1)
    assert (second.method, second.body, second.redirects) == (method, body, 0)
    assert second.headers["Last-Event-ID"] == "1"
    assert streams.redirects_served == 1
    if method == "GET":
        assert "Content-Type" not in second.headers


async def test_after_a_redirect_to_another_origin_reconnects_start_again_from_the_url():
    async with served_streams() as home, served_streams() as other:
        start = home.url("/redirect/307") + "?to=" + other.url("/stream")
        headers = {"Authorization": "Bearer secret"}
        async with EventSource(start, headers=headers, retry=0) as source:
            await read_one(source, other, "id: 1\ndata: a\n\n")
            other.connections[0].break_()
            await read_one(source, other, "data: b\n\n")
            assert source.current_url == start
    # Both connections came through the redirect, and the credentials never left home.
    assert home.redirects_served == len(other.connections) == 2
    assert home.connections == []
    assert [c.headers.get("Authorization") for c in other.connections] == [None, None]
