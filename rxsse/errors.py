"""HTTP errors with JSON bodies, the one shape every rxsse error response takes."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

__all__ = ["bad_request", "json_error"]

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
