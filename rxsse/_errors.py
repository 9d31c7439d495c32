"""HTTP errors with JSON bodies, the one shape every rxsse error response takes.

Besides the errors rxsse raises itself, :func:`json_errors` turns aiohttp's own plain-text
errors (404, 405, 413...) and unhandled exceptions into the same shape, for every route of an
app (``setup`` installs it unless given ``json_errors=False``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

logger = logging.getLogger("rxsse.errors")

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: The attribute that marks the views of ``@sse`` routes, which answer their errors as JSON.
STREAM_VIEW: Final = "__rxsse_stream__"
# Headers of an error that describe its old body, not the JSON one.
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})

# Statuses rxsse itself raises, mapped to aiohttp's own classes so that middlewares matching on
# e.g. ``web.HTTPNotFound`` still see the class they expect.
_CLASSES: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    422: web.HTTPUnprocessableEntity,
    429: web.HTTPTooManyRequests,
    500: web.HTTPInternalServerError,
    503: web.HTTPServiceUnavailable,
}


def json_error(
    status: int, message: str, *, headers: dict[str, str] | None = None, **details: Any
) -> web.HTTPException:
    """Build an HTTP error whose body is ``{"error": message, **details}`` as JSON.

    Raise the result from a handler; aiohttp sends it as the response.

    Args:
        status: one of 400, 401, 403, 404, 409, 422, 429, 500, 503.
        message: a human-readable reason, safe to show to the client.
        headers: extra response headers (e.g. ``Retry-After``).
        details: more JSON fields, such as the offending ``parameter``.

    Example:
        >>> raise json_error(404, "no such task", task_id="42")  # doctest: +SKIP
    """
    try:
        cls = _CLASSES[status]
    except KeyError:
        known = sorted(_CLASSES)
        raise ValueError(f"json_error supports the statuses {known}, not {status}") from None
    body = json.dumps({"error": message, **details})
    return cls(text=body, content_type="application/json", headers=headers)


def bad_request(message: str, **details: Any) -> web.HTTPException:
    """A 400 with a JSON body: ``raise bad_request("email is required", parameter="email")``."""
    return json_error(400, message, **details)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a request: where (``query``, ``path``, ``header``, ``body``), which
    parameter (a dotted path inside a body), and what."""

    location: str
    parameter: str
    message: str
    expected: str | None = None  #: what the value must be, in words


def invalid_request(problems: list[Problem]) -> web.HTTPException:
    """A 400 listing every problem of a request at once::

        {"error": "<the first problem>", "parameter": "<its parameter>",
         "errors": [{"location": "query", "parameter": "limit", "message": "..."}, ...]}

    (``error`` and ``parameter`` name the first problem, ``expected`` says what it must be
    when known, so a client that reads one field still gets the gist.)
    """
    first = problems[0]
    details: dict[str, Any] = {"parameter": first.parameter}
    if first.expected is not None:
        details["expected"] = first.expected
    details["errors"] = [
        {"location": p.location, "parameter": p.parameter, "message": p.message} for p in problems
    ]
    message = first.message
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more: see errors)"
    return json_error(400, message, **details)


@web.middleware
def json_errors(request: web.Request, handler: _Handler) -> Awaitable[web.StreamResponse]:
    """Middleware: every error response of the app has a JSON body ``{"error": ...}``.

    An ``HTTPException`` of status 400 or more whose body is plain text (aiohttp's own 404,
    405, 413, or a handler's ``web.HTTPBadRequest(text=...)``) is answered with the same
    status and headers and that text as ``error``; one with another body (JSON, HTML) passes
    unchanged. Any other exception is logged and answered ``500 {"error": "internal server
    error"}``, unless the handler had started its response. (Errors aiohttp answers before the
    app sees a request, such as a malformed request line or headers over its limits, do not
    pass through middlewares and stay plain text.)

    The views of ``@sse`` routes answer their errors as JSON already: their request passes
    through without a coroutine of this middleware, which would live as long as the stream.
    """
    if getattr(request.match_info.handler, STREAM_VIEW, False):
        return handler(request)
    return _answer_in_json(request, handler)


async def _answer_in_json(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type != "text/plain":
            raise
        return _as_json(exc)
    except Exception:
        if request.writer.output_size > 0:  # the response has started: nothing else to send
            raise
        logger.exception("handler of %s %s failed", request.method, request.path)
        return web.json_response({"error": "internal server error"}, status=500)


def _as_json(error: web.HTTPException) -> web.Response:
    text = error.text or ""
    default = f"{error.status}: {error.reason}"
    headers = {k: v for k, v in error.headers.items() if k.lower() not in _BODY_HEADERS}
    return web.json_response(
        {"error": error.reason if text == default else text},
        status=error.status,
        reason=error.reason,
        headers=headers,
    )
