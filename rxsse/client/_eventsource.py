"""``EventSource``: the events of one URL as a reconnecting async iterator.

Like a browser's ``EventSource``: it sends ``Accept: text/event-stream`` and, after the first
event id, ``Last-Event-ID``; when the connection drops or the body ends it waits the reconnection
time (which the server may change with ``retry:``) and connects again, with the same request.
Unlike a browser, a failure that makes reconnecting pointless (a status other than 200, a wrong
Content-Type) raises :class:`EventSourceError`, and HTTP 204 ends the iteration cleanly.

What happens to the connection is public, beside the events: :attr:`EventSource.state` (as a
browser's ``readyState``), :attr:`EventSource.last_error`, and the ``on_open`` / ``on_error``
callbacks (a browser's ``onopen`` / ``onerror``), so a caller learns of every lost connection,
read timeout and refused reconnect, not only the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, Callable, Mapping
from types import TracebackType
from typing import Any, Literal, TypeAlias

import aiohttp

from .._event import MessageEvent
from .._parser import Parser
from ._request import EventSourceError, StopStream, StreamRequest, check_response

logger = logging.getLogger("rxsse.client")

_NETWORK_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)

#: Where a source stands, as a browser's ``readyState``: ``"connecting"`` (before the first
#: response, and while it waits to reconnect), ``"open"`` (a stream is being read),
#: ``"closed"`` (it ended: :meth:`EventSource.close`, a 204, a refused reconnect, or
#: ``max_reconnects`` failures in a row).
ConnectionState: TypeAlias = Literal["connecting", "open", "closed"]


class EventSource:
    """An async iterator of the events of ``url``, reconnecting as a browser does.

    Args:
        url: the event stream.
        session: an ``aiohttp.ClientSession`` to use (one is created, and closed, if None).
        method: the HTTP method (``"POST"`` for the streams LLM and MCP APIs answer).
        headers: extra request headers (they win over ``Accept`` and ``Cache-Control``).
        body: the request body, ``bytes`` or ``str`` (UTF-8, ``text/plain`` unless a
            Content-Type is given); not with GET.
        json: a value sent as the JSON body (``application/json`` unless given), instead of
            ``body``. Every reconnect resends the same method, headers and body.
        comments: also yield the server's comment lines (heartbeats...), in stream order, as
            ``MessageEvent(comment=text)`` with ``data``, ``id`` and ``type`` None.
        last_event_id: resume after this id (sent as ``Last-Event-ID`` on the first request).
        retry: seconds to wait before reconnecting, until the server sends ``retry:``.
        max_reconnects: give up (re-raising the network error) after this many consecutive
            failed connection attempts; None retries for ever.
        read_timeout: reconnect when no byte has arrived for this many seconds (a connection
            that went silent without closing, half-open); set it above the server's heartbeat.
            None (the default): wait as long as the connection stays up, as a browser does.
        max_backoff: the longest wait between failed attempts. After a clean end the client
            waits ``retry`` (the server's ``retry:`` wins); after the n-th failure in a row it
            waits ``retry * 2 ** (n - 1)``, at most this, less a random share of up to half
            (so that clients cut off together do not all come back together).
        on_open: called (no arguments) each time a stream opens: a 200 with the right
            Content-Type, the headers read.
        on_error: called with the error each time a connection fails: the network error or
            ``TimeoutError`` (``read_timeout``) before a reconnect, or the
            :class:`EventSourceError` (or the last network error) that ends the source, before
            it is raised. :attr:`state` says which: ``"connecting"`` or ``"closed"``. A
            callback that raises is logged; the source goes on.

    Redirects (301, 302, 303, 307, 308) are followed; reconnects go where the last one led
    within the same origin, as the WHATWG ``EventSource`` does (see :attr:`current_url`).

    Example:
        >>> async with EventSource("http://127.0.0.1:8080/ticks") as events:  # doctest: +SKIP
        ...     async for event in events:
        ...         print(event.id, event.type, event.data)
    """

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        json: Any = None,
        comments: bool = False,
        last_event_id: str | None = None,
        retry: float = 3.0,
        max_reconnects: int | None = None,
        read_timeout: float | None = None,
        max_backoff: float = 60.0,
        on_open: Callable[[], object] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
    ) -> None:
        _check_times(retry, read_timeout, max_backoff)
        self.url = url
        self._request = StreamRequest.build(
            url, method=method, headers=headers, body=body, json=json
        )
        self._session = session
        self._own_session = session is None
        self._parser = Parser(comments=comments)
        self._parser.last_event_id = last_event_id or ""
        self._parser.finish()  # (a stream starts from the last event id: the one given)
        self._retry = retry
        self._max_reconnects = max_reconnects
        # No total timeout: an event stream may rightly stay open, and quiet, for a long time.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_read=read_timeout, sock_connect=30)
        self._max_backoff = max_backoff
        self.failures = 0  #: failed attempts in a row (0 once an event or a clean end came)
        self._events: AsyncGenerator[MessageEvent, None] | None = None
        self._response: aiohttp.ClientResponse | None = None
        self._closed = False
        self._restart = False  # restart() asked to drop the connection being read
        self._wake = asyncio.Event()  # ends the wait before a reconnect (restart, close)
        self.connections = 0  #: how many times a stream was opened (status 200)
        self._state: ConnectionState = "connecting"
        self._last_error: BaseException | None = None
        self._on_open = on_open
        self._on_error = on_error

    @property
    def state(self) -> ConnectionState:
        """``"connecting"``, ``"open"`` or ``"closed"`` (see :data:`ConnectionState`)."""
        return self._state

    @property
    def last_error(self) -> BaseException | None:
        """The error of the last connection that failed (kept after a later one opens), or
        None if none has."""
        return self._last_error

    @property
    def last_event_id(self) -> str:
        """The last event id received (``""`` if none), sent when reconnecting."""
        return self._parser.last_event_id

    @property
    def current_url(self) -> str:
        """Where the next connection goes: ``url``, or where a same-origin redirect led."""
        return str(self._request.url)

    @property
    def retry(self) -> float:
        """The current reconnection delay in seconds (the server's ``retry:`` wins)."""
        if self._parser.retry is not None:
            return self._parser.retry / 1000
        return self._retry

    @property
    def backoff(self) -> float:
        """The longest wait before the next attempt after the failures so far in a row (the
        wait itself is this less a random share of up to half); :attr:`retry` with none."""
        if not self.failures:
            return self.retry
        return float(min(self._max_backoff, self.retry * 2 ** (self.failures - 1)))

    def restart(self) -> None:
        """Drop the current connection and connect again at once, with ``Last-Event-ID``, as
        if the server had closed it (no wait, and no failure counted). Safe to call from the
        loop at any time, also from the body of an ``async for`` over this source: the events
        already received are still yielded first."""
        if self._closed:
            return
        self._restart = True
        self._wake.set()
        if self._response is not None:
            self._response.close()  # ends a read in progress, in any task

    def __aiter__(self) -> EventSource:
        return self

    async def __anext__(self) -> MessageEvent:
        if self._closed:
            raise StopAsyncIteration
        if self._events is None:
            self._events = self._run()
        return await self._events.__anext__()

    async def __aenter__(self) -> EventSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def aclose(self) -> None:
        """Same as :meth:`close` (so ``contextlib.aclosing`` and Rx adapters can close it)."""
        await self.close()

    async def close(self) -> None:
        """Close the connection (and the session, if this object created it)."""
        self._closed = True
        self._state = "closed"
        self._wake.set()
        if self._response is not None:
            self._response.close()  # ends a read in progress in another task, too
        events, self._events = self._events, None
        if events is not None and not getattr(events, "ag_running", False):
            await events.aclose()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> AsyncGenerator[MessageEvent, None]:
        while not self._closed:
            self._restart = False
            self._wake.clear()
            try:
                async for event in self._connect():
                    self.failures = 0
                    yield event
                self.failures = 0  # the body ended normally
                delay = self.retry
            except StopStream:
                self._state = "closed"
                return
            except EventSourceError as exc:
                self._failed(exc, "closed")
                raise
            except _NETWORK_ERRORS as exc:
                if self._restart:
                    self._state = "connecting"
                    continue  # the connection we dropped on purpose: no failure, no wait
                self.failures += 1
                if self._max_reconnects is not None and self.failures > self._max_reconnects:
                    self._failed(exc, "closed")
                    raise
                delay = self.backoff * (1 - random.random() / 2)
                logger.info(
                    "event stream %s lost (%s); reconnecting in %.1f s", self.url, exc, delay
                )
                self._failed(exc, "connecting")
            if self._closed:
                return
            self._state = "connecting"
            if not self._restart:
                with contextlib.suppress(asyncio.TimeoutError):  # (not TimeoutError before 3.11)
                    await asyncio.wait_for(self._wake.wait(), delay)

    async def _connect(self) -> AsyncGenerator[MessageEvent, None]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        request = self._request
        headers = request.headers.copy()
        if self._parser.last_event_id:
            headers["Last-Event-ID"] = self._parser.last_event_id
        async with self._session.request(
            request.method, request.url, headers=headers, data=request.body, timeout=self._timeout
        ) as response:
            check_response(response)
            self.connections += 1
            self._state = "open"
            self._call(self._on_open)
            self._request = request.after_redirect(response)
            self._restart = False  # (one asked for while connecting: this is the new connection)
            self._response = response
            try:
                async for chunk in response.content.iter_any():
                    for event in self._parser.feed(chunk):
                        yield event
            finally:
                self._response = None
                self._parser.finish()

    def _failed(self, error: BaseException, state: ConnectionState) -> None:
        self._state = "closed" if self._closed else state
        self._last_error = error
        self._call(self._on_error, error)

    def _call(self, callback: Callable[..., object] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            logger.exception("the callback %r of event stream %s failed", callback, self.url)


def _check_times(retry: float, read_timeout: float | None, max_backoff: float) -> None:
    if retry < 0:
        raise ValueError(f"retry must be a non-negative number of seconds, not {retry}")
    if read_timeout is not None and not read_timeout > 0:
        raise ValueError(f"read_timeout must be a positive number of seconds, not {read_timeout}")
    if not max_backoff >= 0:
        raise ValueError(f"max_backoff must be a non-negative number of seconds, not {max_backoff}")
