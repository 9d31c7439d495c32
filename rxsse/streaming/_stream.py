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
            import); ``keywords`` change it for this call.
        keywords: any field of :class:`~rxsse.StreamOptions` (``heartbeat``, ``headers``,
            ``max_buffer_frames``...), each described there.

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
