"""``restart()``: drop the connection and reconnect at once, with Last-Event-ID."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rxsse import EventSource
from rxsse.testing import wait_until
from tests.client.conformance.stream_server import ServedStreams, served_streams


@pytest.fixture
async def streams() -> AsyncIterator[ServedStreams]:
    async with served_streams() as server:
        yield server


async def test_restart_from_the_loop_body_reconnects_at_once_with_the_last_event_id(streams):
    received: list[str] = []
    # (with max_reconnects=0, a restart counted as a failure would end the iteration)
    async with EventSource(streams.url(), retry=3600, max_reconnects=0) as source:
        reading = asyncio.ensure_future(source.__anext__())
        first = await streams.next_connection()
        first.send("id: 1\ndata: a\n\n")
        received.append((await reading).data)
        source.restart()

        async def answer_the_reconnect() -> None:
            (await streams.next_connection()).send("data: c\n\n")

        answering = asyncio.ensure_future(answer_the_reconnect())
        async for event in source:  # (it reconnects when asked for the next event)
            received.append(event.data)
            if event.data == "c":
                break
        await answering
        assert source.failures == 0  # a restart is no failure
        assert source.connections == 2
    second = streams.connections[1]
    assert received == ["a", "c"]
    assert second.headers["Last-Event-ID"] == "1"


async def test_restart_from_another_task_ends_a_read_in_progress(streams):
    async with EventSource(streams.url(), retry=3600) as source:
        reading = asyncio.ensure_future(source.__anext__())
        first = await streams.next_connection()
        first.send("id: 7\n")  # an unfinished event: dropped with the connection
        # Reading, not still connecting (a restart then is that connection: tested below).
        await wait_until(lambda: source.connections == 1)
        source.restart()
        second = await streams.next_connection()
        second.send("data: after\n\n")
        event = await reading
    assert (event.data, event.id) == ("after", "")
    assert "Last-Event-ID" not in second.headers


async def test_restart_ends_the_wait_before_a_reconnect(streams):
    async with EventSource(streams.url(), retry=3600) as source:
        reading = asyncio.ensure_future(source.__anext__())
        first = await streams.next_connection()
        first.send("id: 1\ndata: a\n\n")
        await reading
        reading = asyncio.ensure_future(source.__anext__())
        first.break_()  # a failure: the client now waits half an hour or more...
        await wait_until(lambda: source.failures == 1)
        source.restart()  # ...unless restarted
        second = await streams.next_connection()
        second.send("data: b\n\n")
        assert (await reading).data == "b"
    assert second.headers["Last-Event-ID"] == "1"


async def test_a_restart_while_connecting_is_that_connection(streams):
    streams.hold = True  # the client waits for the response's headers
    async with EventSource(streams.url(), retry=3600) as source:
        reading = asyncio.ensure_future(source.__anext__())
        first = await streams.next_connection()
        source.restart()
        first.release()
        first.send("data: a\n\n")
        assert (await reading).data == "a"  # (no second connection: none would answer)
        reading = asyncio.ensure_future(source.__anext__())
        first.break_()
        # The restart was used up: this break is a failure, waited for as one.
        await wait_until(lambda: source.failures == 1)
        reading.cancel()
    assert source.connections == 1


async def test_restart_after_close_does_nothing(streams):
    source = EventSource(streams.url())
    await source.close()
    source.restart()
    assert [e async for e in source] == []
