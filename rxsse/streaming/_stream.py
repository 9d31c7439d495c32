"""``rxsse.stream``: serve an Observable as one ``text/event-stream`` response.

``await stream(request, source)`` checks its options, answers 204 to a client whose stream
failed too often in a row, and otherwise runs a :class:`~rxsse.StreamSession`: it
subscribes to ``source`` on the request's event loop, writes every emission as a frame, ends the
response when the Observable completes, and disposes the subscription exactly once when the
client goes away or the server shuts down.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from reactivex import Observable

from ._compression import choose
from ._failures import resume_of
from ._options import StreamKeywords, StreamOptions, options_of
from ._session import StreamSession
from ._sources import from_async_iterable

if TYPE_CHECKING:  # (typing.Unpack is Python 3.11+; annotations are not evaluated)
    from typing_extensions import Unpack


#: Headers every event stream carries, before the user's own.
SSE_HEADERS: Final[Mapping[str, str]] = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


def stream(
    request: web.Request,
    source: Observable[Any] | AsyncIterable[Any],
    options: StreamOptions | None = None,
    **keywords: Unpack[StreamKeywords],
) -> Coroutine[Any, Any, web.StreamResponse]:
    """Serve ``source`` as a ``text/event-stream`` response; awaited, return it once the
    stream ends.

    Use it from any aiohttp handler: ``return await rxsse.stream(request, observable)``.

    Args:
        request: the GET request being answered.
        source: an Observable (or an async iterable) of :class:`MessageEvent` or plain values;
            a plain value ``v`` is sent as ``MessageEvent(data=v)``.
        options: a :class:`~rxsse.StreamOptions` (made and checked once, e.g. at
            import); the keywords below change it for this call.
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
            :mod:`rxsse.streaming._failures`); not ``error``, which a browser hands to ``onerror``.
        error_retry: seconds a client waits before it reconnects after a failure, doubled
            for each failure in a row (up to a minute).
        max_failures: failures in a row after which a reconnect is answered 204, which stops
            a browser (``None``: never).
        compress: compress the stream for a client whose ``Accept-Encoding`` accepts it
            (``True``: gzip, then zstd and brotli when their packages are installed; or the
            encodings to offer, in order, e.g. ``("zstd", "gzip")``). Each write is flushed,
            so every event arrives at once; see :mod:`rxsse.streaming._compression`.

    Raises:
        web.HTTPException: when ``source`` fails before the stream has started (its own
            status for an ``HTTPException``, else a 500 with a JSON body).
    """
    if keywords or options is None:
        options = options_of(options, keywords, "rxsse.stream()")
    if options.failures.gave_up(resume_of(request)):
        return _answer(web.Response(status=204))  # failed too often in a row: the client stops
    observable = source if isinstance(source, Observable) else from_async_iterable(source)
    headers = {**SSE_HEADERS, **options.headers} if options.headers else SSE_HEADERS
    encoding = None
    if options.encodings:
        headers, encoding = _negotiate(request, headers, options.encodings)
    response = web.StreamResponse(headers=headers)
    session = StreamSession(request, response, options, encoding)
    # The session's coroutine itself, not one awaiting it: a frame less for as long as the
    # stream is open. (So the checks above raise at the call, before any await.)
    return session.run(observable, response)


def _negotiate(
    request: web.Request, headers: Mapping[str, str], offered: tuple[str, ...]
) -> tuple[dict[str, str], str | None]:
    """The headers of a stream that may be compressed, and the encoding chosen (or None)."""
    headers = {**headers, "Vary": "Accept-Encoding"}  # what a cache must key the stream by
    if "no-transform" in request.headers.get("Cache-Control", "").lower():
        return headers, None  # the client asked that what it gets be sent as it is
    encoding = choose(request.headers.get("Accept-Encoding"), offered)
    if encoding is not None:
        headers["Content-Encoding"] = encoding
        # A proxy must pass the compressed stream as it is (not decompress, recompress, or
        # buffer it to do so).
        headers["Cache-Control"] = "no-cache, no-transform"
    return headers, encoding


async def _answer(response: web.StreamResponse) -> web.StreamResponse:
    return response
