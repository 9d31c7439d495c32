"""Helpers to test your own rxsse streams: over real sockets, and in virtual time.

Serve the app the way ``web.run_app`` does, read events off a live response with rxsse's own
parser, poll for a condition with a deadline, and count the subscriptions still alive. Or run
a stream's Observable in virtual time (:func:`run_virtual`): an hour
of heartbeats and events in milliseconds. The pytest plugin (:mod:`rxsse.testing.plugin`) serves
apps as fixtures.

Example:
    >>> async def test_ticks_count_up():  # doctest: +SKIP
    ...     async with serve(create_app()) as server:
    ...         async with server.get("/events/ticks") as response:
    ...             events = await EventReader(response).take(3)
    ...     assert [json.loads(e.data)["count"] for e in events] == [0, 1, 2]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
import reactivex as rx
from aiohttp import web
from reactivex import operators as ops

from .._event import MessageEvent
from .._parser import Parser

_T = TypeVar("_T")


class LiveServer:
    """An app served on a real loopback socket, with a client session to talk to it.

    Created by :func:`serve`. The session has no connection cap, so a test may hold many
    streams open at once.
    """

    def __init__(self, app: web.Application, runner: web.AppRunner, base_url: str) -> None:
        self.app = app
        self.runner = runner
        self.base_url = base_url
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.closed = False

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this server."""
        return self.base_url + path

    def get(self, path: str, **kwargs: Any) -> Any:
        """``session.get`` on ``path`` (use it with ``async with``, or await it)."""
        return self.session.get(self.url(path), **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        """``session.post`` on ``path``."""
        return self.session.post(self.url(path), **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """``session.request`` on ``path``."""
        return self.session.request(method, self.url(path), **kwargs)

    @asynccontextmanager
    async def events(self, path: str, **kwargs: Any) -> AsyncIterator[EventReader]:
        """Open the event stream at ``path`` (a GET; ``kwargs`` go to ``session.get``) and
        read it; leaving the ``async with`` closes the connection, as a client that leaves.

        Raises:
            AssertionError: when the answer is no event stream (with its status and body).
        """
        async with self.get(path, **kwargs) as response:
            kind = response.headers.get("Content-Type", "")
            if response.status != 200 or not kind.startswith("text/event-stream"):
                body = await response.text()
                raise AssertionError(f"GET {path}: {response.status} {kind}, not a stream: {body}")
            yield EventReader(response)

    async def close(self) -> None:
        """Shut the app down as ``web.run_app`` does on SIGTERM: ``on_shutdown`` (which ends
        the open streams), then cleanup. The client session stays open, so a test can read how
        its streams ended; :func:`serve` closes it."""
        if not self.closed:
            self.closed = True
            await self.runner.cleanup()


@asynccontextmanager
async def serve(
    app: web.Application, *, host: str = "127.0.0.1", **runner_options: Any
) -> AsyncIterator[LiveServer]:
    """Serve ``app`` on a free port of ``host`` (loopback by default) for the duration of the
    ``async with``.

    Unlike pytest-aiohttp's test server, handlers are not cancelled when their client
    disconnects (``web.run_app``'s default), so a test sees what production sees: rxsse itself
    must notice the client is gone. ``runner_options`` go to ``web.AppRunner``
    (e.g. ``shutdown_timeout``).
    """
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    server: LiveServer | None = None
    try:
        site = web.TCPSite(runner, host, 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        server = LiveServer(app, runner, f"http://{host}:{port}")
        yield server
    finally:
        if server is None:
            await runner.cleanup()
        else:
            await server.close()
            await server.session.close()


class EventReader:
    """Reads the events of a live ``text/event-stream`` response, parsed as a browser would.

    Args:
        response: an ``aiohttp.ClientResponse`` whose body is an event stream.
    """

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.parser = Parser()
        self._ready: list[MessageEvent] = []
        self._ended = False

    async def next(self, *, timeout: float = 5.0) -> MessageEvent | None:
        """The next event, or ``None`` once the server has ended the stream.

        Raises:
            TimeoutError: when no event arrives within ``timeout`` seconds.
        """
        return await asyncio.wait_for(self._next(), timeout)

    async def take(self, count: int, *, timeout: float = 5.0) -> list[MessageEvent]:
        """The next ``count`` events (each within ``timeout`` seconds).

        Raises:
            AssertionError: when the stream ends first.
        """
        events: list[MessageEvent] = []
        for _ in range(count):
            event = await self.next(timeout=timeout)
            if event is None:
                raise AssertionError(f"the stream ended after {len(events)} of {count} events")
            events.append(event)
        return events

    async def rest(self, *, timeout: float = 5.0) -> list[MessageEvent]:
        """Every remaining event until the server ends the stream (each within ``timeout``)."""
        events: list[MessageEvent] = []
        while (event := await self.next(timeout=timeout)) is not None:
            events.append(event)
        return events

    async def _next(self) -> MessageEvent | None:
        while not self._ready:
            if self._ended:
                return None
            chunk = await self.response.content.readany()
            if chunk:
                self._ready.extend(self.parser.feed(chunk))
            else:
                self._ended = True
                self.parser.finish()  # drops an unfinished event, as a browser does
        return self._ready.pop(0)


async def wait_until(
    condition: Callable[[], bool], *, timeout: float = 5.0, message: str = ""
) -> None:
    """Poll ``condition`` every 10 ms until it holds.

    Raises:
        AssertionError: when it still does not hold after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {message}")
        await asyncio.sleep(0.01)


class LiveSubscriptions:
    """Counts the subscriptions to the sources it tracks: how many are live now, how many there
    were in all. A test of a stream's disposal checks ``live`` drops back to 0.

    Example:
        >>> live = LiveSubscriptions()
        >>> source = live.track(rx.never())  # return this from the handler
    """

    def __init__(self) -> None:
        self.live = 0
        self.total = 0
        self.disposed = 0

    def track(self, source: rx.Observable[_T]) -> rx.Observable[_T]:
        """``source``, counted while subscribed."""

        def subscribe(_scheduler: Any) -> rx.Observable[_T]:
            self.live += 1
            self.total += 1
            return source.pipe(ops.finally_action(self._ended))

        return rx.defer(subscribe)

    def _ended(self) -> None:
        self.live -= 1
        self.disposed += 1
