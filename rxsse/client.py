"""A reactive SSE client: ``EventSource`` (a reconnecting async iterator) and ``observe(url)``.

Like a browser's ``EventSource``: it sends ``Accept: text/event-stream`` and, after the first
event id, ``Last-Event-ID``; when the connection drops or the body ends it waits the reconnection
time (which the server may change with ``retry:``) and connects again. Unlike a browser, a
failure that makes reconnecting pointless (a status other than 200, a wrong Content-Type) raises
:class:`EventSourceError`, and HTTP 204 ends the iteration cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import AsyncGenerator, Mapping
from types import TracebackType
from typing import Any

import aiohttp
import reactivex as rx
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from .event import MessageEvent
from .parser import Parser
from .sources import from_async_iterable

__all__ = ["EventSource", "EventSourceError", "observe"]

logger = logging.getLogger(__name__)

_NETWORK_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


class EventSourceError(Exception):
    """The server answered in a way that rules out reconnecting (status, Content-Type)."""

    def __init__(self, message: str, *, status: int, content_type: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.content_type = content_type


class EventSource:
    """An async iterator of the events of ``url``, reconnecting as a browser does.

    Args:
        url: the event stream.
        session: an ``aiohttp.ClientSession`` to use (one is created, and closed, if None).
        headers: extra request headers.
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
        headers: Mapping[str, str] | None = None,
        last_event_id: str | None = None,
        retry: float = 3.0,
        max_reconnects: int | None = None,
        read_timeout: float | None = None,
        max_backoff: float = 60.0,
    ) -> None:
        if retry < 0:
            raise ValueError(f"retry must be a non-negative number of seconds, not {retry}")
        if read_timeout is not None and not read_timeout > 0:
            raise ValueError(
                f"read_timeout must be a positive number of seconds, not {read_timeout}"
            )
        if not max_backoff >= 0:
            raise ValueError(
                f"max_backoff must be a non-negative number of seconds, not {max_backoff}"
            )
        self.url = url
        self._session = session
        self._own_session = session is None
        self._headers = dict(headers or {})
        self._parser = Parser()
        self._parser.last_event_id = last_event_id or ""
        self._retry = retry
        self._max_reconnects = max_reconnects
        self._read_timeout = read_timeout
        self._max_backoff = max_backoff
        self.failures = 0  #: failed attempts in a row (0 once an event or a clean end came)
        self._events: AsyncGenerator[MessageEvent, None] | None = None
        self._response: aiohttp.ClientResponse | None = None
        self._closed = False
        self.connections = 0  #: how many times a stream was opened (status 200)

    @property
    def last_event_id(self) -> str:
        """The last event id received (``""`` if none), sent when reconnecting."""
        return self._parser.last_event_id

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
            try:
                async for event in self._connect():
                    self.failures = 0
                    yield event
                self.failures = 0  # the body ended normally
                if self._closed:
                    return
                delay = self.retry
            except _StopStream:
                return
            except _NETWORK_ERRORS as exc:
                self.failures += 1
                if self._max_reconnects is not None and self.failures > self._max_reconnects:
                    raise
                delay = self.backoff * (1 - random.random() / 2)
                logger.info(
                    "event stream %s lost (%s); reconnecting in %.1f s", self.url, exc, delay
                )
            await asyncio.sleep(delay)

    async def _connect(self) -> AsyncGenerator[MessageEvent, None]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **self._headers}
        if self._parser.last_event_id:
            headers["Last-Event-ID"] = self._parser.last_event_id
        # No total timeout: an event stream may rightly stay open, and quiet, for a long time.
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self._read_timeout, sock_connect=30)
        async with self._session.get(self.url, headers=headers, timeout=timeout) as response:
            _check(response)
            self.connections += 1
            self._response = response
            try:
                async for chunk in response.content.iter_any():
                    for event in self._parser.feed(chunk):
                        yield event
            finally:
                self._response = None
                self._parser.finish()


class _StopStream(Exception):
    """HTTP 204: the server asks the client to stop reconnecting."""


def _check(response: aiohttp.ClientResponse) -> None:
    content_type = response.headers.get("Content-Type")
    if response.status == 204:
        raise _StopStream
    if response.status != 200:
        raise EventSourceError(
            f"{response.url} answered {response.status} {response.reason}, not 200",
            status=response.status,
            content_type=content_type,
        )
    essence = (content_type or "").split(";", 1)[0].strip().lower()
    if essence != "text/event-stream":
        raise EventSourceError(
            f"{response.url} answered Content-Type {content_type!r}, not text/event-stream",
            status=response.status,
            content_type=content_type,
        )


def observe(url: str, **options: Any) -> Observable[MessageEvent]:
    """The events of ``url`` as an Observable: each subscription opens its own
    :class:`EventSource` (``options`` are its keyword arguments); disposing it closes the HTTP
    connection. The Observable completes on HTTP 204 and fails with :class:`EventSourceError`.

    Subscribed on an event loop, the stream runs on that loop. Subscribed from code without a
    running loop (a script, a thread, ``.run()``), it runs on a loop of its own in a thread of
    its own, which its calls to the observer come from, and which ends with the stream.

    Example:
        >>> ticks = observe("http://127.0.0.1:8080/ticks")
        >>> ticks.pipe(ops.take(3), ops.to_list()).run()  # doctest: +SKIP
        [MessageEvent(data='0', ...), MessageEvent(data='1', ...), MessageEvent(data='2', ...)]
    """

    def subscribe(
        observer: abc.ObserverBase[MessageEvent], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return _in_a_thread(EventSource(url, **options), observer)
        return from_async_iterable(EventSource(url, **options)).subscribe(observer)

    return rx.create(subscribe)


def _in_a_thread(
    source: EventSource, observer: abc.ObserverBase[MessageEvent]
) -> abc.DisposableBase:
    """Read ``source`` on a new loop in a new thread; disposing the result stops it."""
    loop = asyncio.new_event_loop()

    async def drive() -> None:
        async with source:
            async for event in source:
                observer.on_next(event)
        observer.on_completed()

    task = loop.create_task(drive())

    def run() -> None:
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass  # disposed
        except Exception as exc:  # the stream failed: the observer's error
            observer.on_error(exc)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def cancel() -> None:
        with contextlib.suppress(RuntimeError):  # (a closed loop: the stream has ended)
            loop.call_soon_threadsafe(task.cancel)

    threading.Thread(target=run, name=f"rxsse-observe {source.url}", daemon=True).start()
    return Disposable(cancel)
