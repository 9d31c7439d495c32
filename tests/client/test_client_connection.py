"""What happens to the client's connection, as a public API beside the events: ``state`` (a
browser's ``readyState``), ``last_error``, and the ``on_open`` / ``on_error`` callbacks, over
real sockets to a server the test drives."""

from __future__ import annotations

import asyncio
import logging

import pytest

from rxsse import EventSource, EventSourceError
from tests.client.conformance.stream_server import served_streams
from tests.conftest import free_port, wait_until


async def test_a_read_timeout_and_a_broken_connection_are_reported_then_it_reconnects():
    opened: list[str] = []
    errors: list[BaseException] = []
    async with served_streams() as server:
        source = EventSource(
            server.url(),
            retry=0.01,
            read_timeout=0.3,
            on_open=lambda: opened.append(source.state),
            on_error=lambda error: errors.append(error),
        )
        assert source.state == "connecting" and source.last_error is None
        reading = asyncio.ensure_future(source.__anext__())
        first = await server.next_connection()
        first.send("id: 1\ndata: a\n\n")
        assert (await reading).data == "a"
        assert source.state == "open" and opened == ["open"]
        # Silent for longer than read_timeout: a TimeoutError, reported, then a reconnect.
        reading = asyncio.ensure_future(source.__anext__())
        second = await server.next_connection()
        assert len(errors) == 1 and isinstance(errors[0], TimeoutError)
        assert source.last_error is errors[0]
        assert second.headers["Last-Event-ID"] == "1"
        second.send("data: b\n\n")
        assert (await reading).data == "b"
        assert source.state == "open" and source.last_error is errors[0]  # (kept)
        # The server cuts the connection: a network error, reported, then a reconnect.
        reading = asyncio.ensure_future(source.__anext__())
        second.break_()
        third = await server.next_connection()
        assert len(errors) == 2 and not isinstance(errors[1], TimeoutError)
        third.send("data: c\n\n")
        assert (await reading).data == "c"
        assert opened == ["open"] * 3 and source.connections == 3
        await source.close()
        assert source.state == "closed"


async def test_a_refused_reconnect_is_reported_and_closes_the_source():
    errors: list[BaseException] = []
    async with served_streams() as server:
        server.answer_next.append(503)
        source = EventSource(server.url(), retry=0.01, on_error=errors.append)
        with pytest.raises(EventSourceError, match="503"):
            await source.__anext__()
        assert source.state == "closed"
        assert errors == [source.last_error] and isinstance(errors[0], EventSourceError)
        await source.close()


async def test_a_204_closes_the_source_without_an_error():
    errors: list[BaseException] = []
    async with served_streams() as server:
        server.answer_next.append(204)
        async with EventSource(server.url(), on_error=errors.append) as source:
            assert [event async for event in source] == []
            assert source.state == "closed" and source.last_error is None
    assert errors == []


async def test_giving_up_after_max_reconnects_reports_each_failure():
    errors: list[BaseException] = []
    port = free_port()  # nothing listens
    source = EventSource(
        f"http://127.0.0.1:{port}/s", retry=0.01, max_reconnects=2, on_error=errors.append
    )
    with pytest.raises(OSError):
        await source.__anext__()
    assert len(errors) == 3 and source.last_error is errors[-1]  # the first try and 2 more
    assert source.state == "closed"
    await source.close()


async def test_a_callback_that_raises_is_logged_and_the_source_goes_on(caplog):
    caplog.set_level(logging.ERROR, logger="rxsse.client")

    def broken(error: BaseException) -> None:
        raise RuntimeError("a bug in the caller's callback")

    async with served_streams() as server:
        source = EventSource(server.url(), retry=0.01, on_error=broken)
        reading = asyncio.ensure_future(source.__anext__())
        (await server.next_connection()).break_()
        (await server.next_connection()).send("data: after\n\n")
        assert (await reading).data == "after"
        await wait_until(lambda: "a bug in the caller's callback" in caplog.text)
        await source.close()
