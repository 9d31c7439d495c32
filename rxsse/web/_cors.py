"""Cross-origin access to an app's rxsse routes: off unless ``setup(app, cors=CORS(...))``.

A page on another origin can then open ``new EventSource(url, {withCredentials: true})`` (or
``fetch`` a plain route): responses to an allowed ``Origin`` carry the CORS headers, and the
preflight ``OPTIONS`` a browser sends first when a request is not "simple" (an EventSource
reconnecting with a long or unusual ``Last-Event-ID``, a ``fetch`` with a JSON body or an
``Authorization`` header) is answered. Other origins get no CORS headers, so their pages cannot
read the responses, and a preflight from them is refused with 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from .._checks import check_count
from .._errors import json_error

# Request headers always allowed: browsers send Last-Event-ID when an EventSource reconnects
# (it needs a preflight when long or unusual), and a JSON body has a Content-Type that does.
_DEFAULT_HEADERS: Final = ("Last-Event-ID", "Content-Type")


@dataclass(frozen=True)
class CORS:
    """Which other origins may use the app's rxsse routes from a browser.

    Args:
        origins: the allowed origins, each ``scheme://host[:port]`` exactly as browsers send
            it in ``Origin`` (``"https://app.example.com"``), or ``"*"`` for any origin (only
            without credentials).
        credentials: allow cookies and HTTP authentication (``withCredentials: true``); the
            response then names the origin instead of ``*``.
        allow_headers: request headers a cross-origin page may send besides
            ``Last-Event-ID`` and ``Content-Type`` (always allowed), e.g. ``["Authorization"]``.
        max_age: seconds a browser may cache a preflight answer.

    Example:
        >>> rxsse.setup(app, Events(), cors=CORS(["https://app.example.com"], credentials=True))
        ... # doctest: +SKIP
    """

    origins: Iterable[str]
    credentials: bool = False
    allow_headers: Iterable[str] = ()
    max_age: int = 600
    _origins: frozenset[str] = field(init=False, repr=False)
    _headers: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.origins, str):
            raise ValueError(
                f"CORS origins must be a list of origins, not the string {self.origins!r}"
            )
        object.__setattr__(self, "origins", tuple(self.origins))
        object.__setattr__(self, "allow_headers", tuple(self.allow_headers))
        origins = frozenset(_as_sent(origin) for origin in self.origins)
        if not origins:
            raise ValueError("CORS needs at least one origin (or '*')")
        if "*" in origins and self.credentials:
            raise ValueError("CORS with credentials=True must name its origins; '*' is refused")
        check_count("CORS max_age", self.max_age, minimum=0)
        headers = {name.strip().lower() for name in (*_DEFAULT_HEADERS, *self.allow_headers)}
        object.__setattr__(self, "_origins", origins)
        object.__setattr__(self, "_headers", frozenset(headers))

    def allows(self, origin: str) -> bool:
        """Whether a page of ``origin`` may use the routes."""
        return "*" in self._origins or origin in self._origins

    def headers_for(self, origin: str | None) -> dict[str, str]:
        """The CORS headers of a response to a request from ``origin``."""
        headers: dict[str, str] = {} if "*" in self._origins else {hdrs.VARY: "Origin"}
        if origin is None or not self.allows(origin):
            return headers
        if self.credentials:
            headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
        else:
            headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = "*" if "*" in self._origins else origin
        return headers

    def preflight(self, request: web.Request, methods: Iterable[str]) -> web.Response:
        """The answer to a preflight ``OPTIONS`` for a resource serving ``methods``.

        Raises:
            web.HTTPException: 403 with a JSON body when the origin, the method or a header
                is not allowed (400 when it is not a preflight at all).
        """
        origin = request.headers.get(hdrs.ORIGIN)
        method = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD)
        if origin is None or method is None:
            raise json_error(
                400, "not a CORS preflight: Origin and Access-Control-Request-Method are required"
            )
        if not self.allows(origin):
            raise json_error(403, "origin not allowed", origin=origin)
        allowed_methods = sorted(set(methods))
        if method not in allowed_methods:
            raise json_error(403, "method not allowed", method=method, allowed=allowed_methods)
        asked = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS, "")
        wanted = [name.strip().lower() for name in asked.split(",") if name.strip()]
        refused = sorted(set(wanted) - self._headers)
        if refused:
            raise json_error(403, "request headers not allowed", refused=refused)
        headers = self.headers_for(origin)
        headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = ", ".join(allowed_methods)
        if wanted:
            headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ", ".join(wanted)
        headers[hdrs.ACCESS_CONTROL_MAX_AGE] = str(self.max_age)
        return web.Response(status=204, headers=headers)


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _as_sent(origin: str) -> str:
    """``origin`` as a browser sends it in ``Origin``: lower case, no default port.

    Raises:
        ValueError: when it is not ``scheme://host[:port]``.
    """
    if origin == "*":
        return origin
    text = origin.lower()
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a bad port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or not parts.scheme
        or not parts.hostname
        or "@" in parts.netloc
        or text != f"{parts.scheme}://{parts.netloc}"  # no path, query or fragment
    ):
        raise ValueError(f"CORS origin {origin!r} is not scheme://host[:port] (no path, no slash)")
    if port is not None and _DEFAULT_PORTS.get(parts.scheme) == port:
        return text.rsplit(":", 1)[0]
    return text


# -- serving a policy on an app's routes -----------------------------------------------------------


def preflight_handler(
    policy: CORS, resource: web.Resource, known: set[web.Resource]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The ``OPTIONS`` handler of ``resource``: a preflight over the methods of every resource
    of its path (``known``)."""

    async def preflight(request: web.Request) -> web.Response:
        # Read now, over every resource of this path: a later setup() may add methods to it.
        methods = {
            route.method
            for other in known
            if other.canonical == resource.canonical
            for route in other
            if route.method != hdrs.METH_OPTIONS
        }
        return policy.preflight(request, methods)

    return preflight


def headers_hook(
    policy: CORS, served: set[web.Resource]
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """The ``on_response_prepare`` hook that adds the policy's headers to the responses of the
    ``served`` resources."""

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        # Runs as headers are sent: for streams, for plain answers and for HTTP errors alike.
        if request.method == hdrs.METH_OPTIONS or request.match_info.route.resource not in served:
            return
        for name, value in policy.headers_for(request.headers.get(hdrs.ORIGIN)).items():
            if name == hdrs.VARY:
                value = _vary_with(response.headers.getall(hdrs.VARY, []), value)
            response.headers[name] = value

    return add_headers


def _vary_with(existing: list[str], name: str) -> str:
    """A ``Vary`` value that has ``name`` in it, keeping what ``existing`` (values of one or
    more ``Vary`` headers) already names."""
    tokens = [token.strip() for value in existing for token in value.split(",") if token.strip()]
    if "*" in tokens or name.lower() in (token.lower() for token in tokens):
        return ", ".join(tokens)
    return ", ".join([*tokens, name])
