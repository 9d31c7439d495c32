"""``rxsse.stream``: serve an Observable as one ``text/event-stream`` response.

``await stream(request, source)`` checks its options, answers 204 to a client whose stream
failed too often in a row, and otherwise runs a :class:`~rxsse.session.StreamSession`: it
subscribes to ``source`` on the request's event loop, writes every emission as a frame, ends the
response when the Observable completes, and disposes the subscription exactly once when the
client goes away or the server shuts down.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterable, Callable, Coroutine, Mapping
from typing import Any, Final, TypeVar, cast

from aiohttp import web
from reactivex import Observable

from .failures import (
    DEFAULT_ERROR_EVENT,
    DEFAULT_ERROR_RETRY,
    DEFAULT_MAX_FAILURES,
    FailurePolicy,
    resume_of,
)
from .limits import (
    DEFAULT_BUFFER_BYTES,
    DEFAULT_BUFFER_FRAMES,
    DEFAULT_LIFETIME_JITTER,
    DEFAULT_SEND_TIMEOUT,
    Overflow,
    StreamLimits,
    positive_seconds,
)
from .session import StreamSession
from .sources import from_async_iterable

__all__ = [
    "DEFAULT_HEARTBEAT",
    "SSE_HEADERS",
    "StreamSession",
    "stream",
]

#: Seconds without output after which a heartbeat comment is sent (proxies drop idle streams).
DEFAULT_HEARTBEAT: Final = 15.0

#: Headers every event stream carries, before the user's own.
SSE_HEADERS: Final[Mapping[str, str]] = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


def stream(
    request: web.Request,
    source: Observable[Any] | AsyncIterable[Any],
    *,
    heartbeat: float | None = DEFAULT_HEARTBEAT,
    headers: Mapping[str, str] | None = None,
    max_buffer_frames: int = DEFAULT_BUFFER_FRAMES,
    max_buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    overflow: Overflow = "disconnect",
    send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
    max_lifetime: float | None = None,
    lifetime_jitter: float = DEFAULT_LIFETIME_JITTER,
    error_event: str = DEFAULT_ERROR_EVENT,
    error_retry: float = DEFAULT_ERROR_RETRY,
    max_failures: int | None = DEFAULT_MAX_FAILURES,
) -> Coroutine[Any, Any, web.StreamResponse]:
    """Serve ``source`` as a ``text/event-stream`` response; awaited, return it once the
    stream ends.

    Use it from any aiohttp handler: ``return await rxsse.stream(request, observable)``.

    Args:
        request: the GET request being answered.
        source: an Observable (or an async iterable) of :class:`MessageEvent` or plain values;
            a plain value ``v`` is sent as ``MessageEvent(data=v)``.
        heartbeat: seconds without output after which a ``: ping`` comment is sent (each
            time the stream has been silent that long), or ``None`` for no heartbeat.
        headers: extra response headers, added to (and able to override) :data:`SSE_HEADERS`.
        max_buffer_frames: how many frames may wait for a client that lags behind: frames
            that arrived while a write was already waiting for it. (A burst that arrives while
            the client keeps up is written as fast as the client takes it.)
        max_buffer_bytes: how many bytes may wait for a client that lags behind.
        overflow: what happens when a slow client makes either bound overflow:
            ``"disconnect"`` closes the stream (the client reconnects and resumes from its
            ``Last-Event-ID``, e.g. out of an EventBus log, so nothing is lost);
            ``"drop_oldest"`` / ``"drop_newest"`` drop frames and count them in
            :func:`rxsse.metrics`.
        send_timeout: seconds a write may wait for a client that takes no data; then the
            connection is dropped. Also the longest the kernel keeps sending to a client that
            acknowledges nothing (``TCP_USER_TIMEOUT``), so a client that vanished without
            closing is dropped within ``heartbeat + send_timeout`` (``2 * send_timeout``
            without heartbeat). ``None``: wait as long as the connection stays up.
        max_lifetime: seconds after which the stream ends cleanly, so that the client
            reconnects (with its ``Last-Event-ID``), e.g. to spread long-lived connections over
            new server processes (``None``: no limit).
        lifetime_jitter: each stream's lifetime is ``max_lifetime`` less a random share of up
            to this fraction, so streams opened together do not all reconnect together.
        error_event: the event type of the failure of a stream that had started (see
            :mod:`rxsse.failures`); not ``error``, which a browser hands to ``onerror``.
        error_retry: seconds a client waits before it reconnects after a failure, doubled
            for each failure in a row (up to a minute).
        max_failures: failures in a row after which a reconnect is answered 204, which stops
            a browser (``None``: never).

    Raises:
        web.HTTPException: when ``source`` fails before the stream has started (its own
            status for an ``HTTPException``, else a 500 with a JSON body).
    """
    if heartbeat is not None and not positive_seconds(heartbeat):
        raise ValueError(f"heartbeat must be a positive number of seconds or None, not {heartbeat}")
    limits = _shared(
        StreamLimits,
        max_buffer_frames,
        max_buffer_bytes,
        overflow,
        send_timeout,
        max_lifetime,
        lifetime_jitter,
    )
    policy = _shared(FailurePolicy, error_event, error_retry, max_failures)
    if policy.gave_up(resume_of(request)):
        return _answer(web.Response(status=204))  # failed too often in a row: the client stops
    observable = source if isinstance(source, Observable) else from_async_iterable(source)
    response = web.StreamResponse(headers={**SSE_HEADERS, **(headers or {})})
    session = StreamSession(request, response, heartbeat=heartbeat, limits=limits, policy=policy)
    # The session's coroutine itself, not one awaiting it: a frame less for as long as the
    # stream is open. (So the checks above raise at the call, before any await.)
    return session.run(observable, response)


async def _answer(response: web.StreamResponse) -> web.StreamResponse:
    return response


_Options = TypeVar("_Options")


@functools.lru_cache(maxsize=256, typed=True)  # typed: True is no 1, and 1.0 no 1
def _shared_options(kind: Callable[..., Any], *values: Any) -> Any:
    return kind(*values)


def _shared(kind: Callable[..., _Options], *values: Any) -> _Options:
    """The options object of these values, shared by every stream that has them (they are
    frozen): a route's streams do not each carry copies."""
    try:
        return cast(_Options, _shared_options(kind, *values))
    except TypeError:  # a value that cannot be a cache key: let the object say what is wrong
        return kind(*values)
