"""The event-stream server a test controls: every request the client makes is a
:class:`Connection` the test awaits, reads (method, headers, body) and then writes to, ends or
breaks, byte by byte if it likes. Real aiohttp, real sockets.

Routes (under any prefix the owner adds them with): ``/stream`` answers every method;
``/redirect/{status}`` answers with that redirect status to ``/stream`` (or to ``?to=URL``;
``?location=none`` sends no ``Location``, ``?location=empty`` an empty one).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDict

import rxsse.testing

_END = object()  # ends the response
_BREAK = object()  # aborts the TCP connection


@dataclass
class Connection:
    """One request the client made, and the response the test writes to it."""

    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes
    redirects: int = 0  #: redirects the server answered since the connection before this one
    _commands: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        """Send the response's headers (held until now when the server's ``hold`` is set)."""
        self._released.set()

    def send(self, text: str | bytes, *, chunk: int | None = None) -> None:
        """Write ``text`` (UTF-8), in pieces of ``chunk`` bytes if given (each a write)."""
        data = text.encode() if isinstance(text, str) else text
        size = chunk or len(data) or 1
        for start in range(0, len(data), size):
            self._commands.put_nowait(data[start : start + size])

    def end(self) -> None:
        """End the response cleanly (the client will reconnect)."""
        self._commands.put_nowait(_END)

    def break_(self) -> None:
        """Abort the TCP connection mid-stream."""
        self._commands.put_nowait(_BREAK)


class StreamServer:
    """Records each request as a :class:`Connection` and serves what the test writes to it."""

    def __init__(self) -> None:
        self._arrived: asyncio.Queue[Connection] = asyncio.Queue()
        self.connections: list[Connection] = []
        self._redirects = 0
        self.redirects_served = 0  #: redirects answered in all
        self.hold = False  #: hold each response's headers until its connection is released
        #: statuses the next connections are answered with (no body), in order, before 200s
        self.answer_next: list[int] = []

    def add_routes(self, app: web.Application, prefix: str = "") -> None:
        """Serve ``prefix/stream`` and ``prefix/redirect/{status}`` from ``app``."""
        app.router.add_route("*", f"{prefix}/stream", self.stream)
        app.router.add_route("*", f"{prefix}/redirect/{{status}}", self.redirect)

    async def next_connection(self, *, timeout: float = 10.0) -> Connection:
        """The next request the client makes (fails after ``timeout`` seconds without one)."""
        return await asyncio.wait_for(self._arrived.get(), timeout)

    def close(self) -> None:
        """End every response still open (so that the server can shut down at once)."""
        for connection in self.connections:
            connection.release()
            connection.end()

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Record the request as a connection; write what the test sends to it."""
        connection = Connection(
            request.method, request.path, CIMultiDict(request.headers), await request.read()
        )
        connection.redirects, self._redirects = self._redirects, 0
        self.connections.append(connection)
        self._arrived.put_nowait(connection)
        if self.answer_next:
            return web.Response(status=self.answer_next.pop(0))
        if self.hold:
            await connection._released.wait()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        # The client may be gone (a restart, a read timeout): the rest of the script is moot.
        with contextlib.suppress(ConnectionResetError):
            while True:
                command = await connection._commands.get()
                if command is _END:
                    break
                if command is _BREAK:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                assert isinstance(command, bytes)
                await response.write(command)
            await response.write_eof()
        return response

    async def redirect(self, request: web.Request) -> web.Response:
        """Redirect (with the status in the path) to ``stream`` beside it, or ``?to=``."""
        self._redirects += 1
        self.redirects_served += 1
        target = request.query.get("to") or request.path.rsplit("/redirect/", 1)[0] + "/stream"
        location = request.query.get("location")
        headers = {} if location == "none" else {"Location": "" if location == "empty" else target}
        return web.Response(status=int(request.match_info["status"]), headers=headers)


class ServedStreams(StreamServer):
    """A :class:`StreamServer` served by ``rxsse.testing.serve``, at ``url(path)``."""

    base_url = ""

    def url(self, path: str = "/stream") -> str:
        """The absolute URL of ``path`` on this server."""
        return self.base_url + path


@asynccontextmanager
async def served_streams() -> AsyncIterator[ServedStreams]:
    """A stream server on a free loopback port, for the duration of the ``async with``."""
    streams = ServedStreams()
    app = web.Application()
    streams.add_routes(app)
    async with rxsse.testing.serve(app) as server:
        streams.base_url = server.base_url
        try:
            yield streams
        finally:
            streams.close()  # (the handlers wait for commands: end them, or shutdown waits)
