"""The wire: a stream's response and the connection under it.

Sends the headers, then writes bytes: straight to the transport while the client keeps up (one
system call, framed as aiohttp frames a body), through aiohttp's write (which waits for a
backlog to drain) when it does not.
"""

from __future__ import annotations

import asyncio
from typing import cast

from aiohttp import web

from ._compression import compressor
from ._options import StreamOptions
from ._watch import detect_dead_peer
from ._writing import write_now


class Wire:
    """The response of one stream and its transport."""

    __slots__ = ("_chunked", "_compressor", "_transport", "request", "response")

    def __init__(
        self, request: web.Request, response: web.StreamResponse, encoding: str | None = None
    ) -> None:
        self.request = request
        self.response = response
        # The stream's own compressor (its Content-Encoding is set already: see stream()).
        self._compressor = compressor(encoding) if encoding is not None else None
        # Set once aiohttp has sent the headers (it sends them with the first body bytes):
        # from then on, bytes may go straight to the transport.
        self._transport: asyncio.Transport | None = None
        self._chunked = True

    @property
    def started(self) -> bool:
        """Whether the headers are out (frames may go straight to the transport)."""
        return self._transport is not None

    async def open(self, limits: StreamOptions, heartbeat: float | None) -> bool:
        """Send the headers; False if the client left first."""
        request, response = self.request, self.response
        try:
            await response.prepare(request)
        except ConnectionError:
            return False
        self._chunked = response.headers.get("Transfer-Encoding") == "chunked"
        # aiohttp's timer for a connection that sends no request lives until it fires (75 s),
        # and half a kilobyte per stream: this one did send its request. (The connection then
        # closes when the stream ends, rather than wait for another.)
        request.protocol.keep_alive(False)
        detect_dead_peer(request.transport, limits.send_timeout, heartbeat)
        return True

    def write(self, data: bytes, chunk: bytes | None = None) -> asyncio.Task[None] | None:
        """Write ``data`` (``chunk``: the same bytes framed as one HTTP/1.1 chunk, when the
        caller has them); return None when done, or the task that finishes a write waiting
        for the client (see :func:`~rxsse.streaming._writing.write_now`).

        Raises:
            ConnectionError: the client is gone.
        """
        if self._compressor is not None:
            data, chunk = self._compressor.compress(data), None
        return self._send(data, chunk)

    def write_now(self, data: bytes, chunk: bytes) -> bool:
        """Write ``data`` (``chunk``: the same bytes framed as one HTTP/1.1 chunk) straight to
        the transport if the client keeps up and the stream is not compressed (a fan-out's
        shared bytes, in one call); False, writing nothing, if it must go through
        :meth:`write`."""
        return self._compressor is None and self._direct(data, chunk)

    def _direct(self, data: bytes, chunk: bytes | None) -> bool:
        """Write to the transport itself if the headers are out and nothing waits in it."""
        transport = self._transport
        if transport is None or transport.get_write_buffer_size() or transport.is_closing():
            return False  # (a closing transport: aiohttp's write raises ConnectionResetError)
        if self._chunked:
            data = chunk if chunk is not None else b"%x\r\n%s\r\n" % (len(data), data)
        transport.write(data)
        return True

    def _send(self, data: bytes, chunk: bytes | None = None) -> asyncio.Task[None] | None:
        if self._direct(data, chunk):
            return None
        task = write_now(self.response, data)
        if self._transport is None and task is None:
            self._transport = cast(asyncio.Transport, self.request.transport)
        return task

    async def write_eof(self) -> None:
        """End the response (and the compressed stream, if it is one)."""
        if self._compressor is not None:
            task = self._send(self._compressor.finish())
            if task is not None:
                await task
        await self.response.write_eof()

    def backlog(self) -> int:
        """The bytes waiting in the transport for the client."""
        transport = self.request.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def abort(self) -> None:
        """Close the connection now, dropping what waits for the client."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()
