"""What the client sends and what it accepts: the request each connection repeats, and the
checks on the answer (status, Content-Type) that decide between events, a stop and an error.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

#: The methods whose requests have no body (a body given with them is a mistake).
_BODILESS = frozenset({"GET", "HEAD"})

#: The headers that describe a body: they go when a redirect turns the request into a GET.
_BODY_HEADERS = ("Content-Type", "Content-Encoding", "Content-Language", "Content-Location")


class EventSourceError(Exception):
    """The server answered in a way that rules out reconnecting (status, Content-Type)."""

    def __init__(self, message: str, *, status: int, content_type: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.content_type = content_type


class StopStream(Exception):
    """HTTP 204: the server asks the client to stop reconnecting."""


@dataclass(frozen=True)
class StreamRequest:
    """The request a stream's every connection sends: built (and checked) once, then resent
    as it is, body and all, on each reconnect; only ``Last-Event-ID`` is added per attempt.

    Attributes:
        url: where the next connection goes (the final URL of a same-origin redirect).
        method: the HTTP method, upper case.
        headers: the request headers (``Accept`` and ``Cache-Control`` included).
        body: the bytes sent as the body, or None.
    """

    url: URL
    method: str = "GET"
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    body: bytes | None = None

    @classmethod
    def build(
        cls,
        url: str | URL,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        json: Any = None,
    ) -> StreamRequest:
        """Check the options and encode the body once: ``json`` as compact UTF-8 JSON
        (``Content-Type: application/json`` unless given), a ``str`` body as UTF-8
        (``text/plain; charset=utf-8`` unless given).

        Raises:
            ValueError: for both ``body`` and ``json``, or a body with GET or HEAD.
        """
        method = method.upper()
        sent: CIMultiDict[str] = CIMultiDict(
            {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        )
        sent.update(headers or {})
        if body is not None and json is not None:
            raise ValueError("give the request body once: 'body' or 'json', not both")
        content_type = None
        if json is not None:
            body = jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False).encode()
            content_type = "application/json"
        elif isinstance(body, str):
            body = body.encode()
            content_type = "text/plain; charset=utf-8"
        if body is not None and method in _BODILESS:
            raise ValueError(f"a {method} request has no body: give method='POST' (or another)")
        if content_type is not None:
            sent.setdefault("Content-Type", content_type)
        return cls(URL(url), method, sent, body)

    def after_redirect(self, response: aiohttp.ClientResponse) -> StreamRequest:
        """The request to reconnect with once ``response`` opened the stream.

        After redirects the WHATWG ``EventSource`` reconnects to the request's current URL
        (the last redirect's target), with the method (and body) the redirects left it: a 307
        or 308 keeps them, a 301 or 302 after a POST and a 303 make it a GET without a body.
        rxsse does the same within one origin; after a redirect to another origin it goes back
        to the URL it was given, so that its headers (``Authorization``...) never travel to
        the other origin directly (aiohttp strips them on such a redirect).
        """
        if not response.history or response.url.origin() != self.url.origin():
            return self
        if response.method == self.method:
            return replace(self, url=response.url)
        headers = self.headers.copy()
        for name in _BODY_HEADERS:
            headers.popall(name, None)
        return StreamRequest(response.url, response.method, headers, None)


def check_response(response: aiohttp.ClientResponse) -> None:
    """Accept a 200 ``text/event-stream``; 204 stops for good; anything else is an error.

    Raises:
        StopStream: for HTTP 204.
        EventSourceError: for another status or another Content-Type.
    """
    content_type = response.headers.get("Content-Type")
    if response.status == 204:
        raise StopStream
    if response.status != 200:
        why = "not 200"
        if 300 <= response.status < 400 and not response.headers.get("Location"):
            why = "a redirect with no Location to follow"  # (missing or empty)
        raise EventSourceError(
            f"{response.url} answered {response.status} {response.reason}, {why}",
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
