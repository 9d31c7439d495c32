"""The request pipeline of a route: admission, guards, binding, the handler, its result.

An ``@sse`` view takes a slot of its route's and the app's stream quotas for the request's
life, stops a client whose stream failed too often (204), runs the guards, binds the
parameters, calls the handler and streams what it returned. A plain view does the same up to
the handler, then answers with its JSON, text or response.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from reactivex import Observable

from .._checks import check_count
from .._errors import STREAM_VIEW, json_error
from ..bus._broker import EmitError
from ..streaming._failures import resume_of
from ..streaming._metrics import StreamMetrics
from ..streaming._options import StreamOptions
from ..streaming._state import Quota
from ..streaming._stream import stream
from ._binding import Binder
from ._contracts import EventCheck

logger = logging.getLogger("rxsse.routing")  # (the name users configure)

#: A guard: called with the request before the handler; ``False`` (or a raised HTTP error)
#: rejects the request.
Guard = Callable[[web.Request], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Limits:
    """How many streams an app serves at once (``setup(app, limits=Limits(...))``).

    A route's own cap is ``@sse(max_streams=...)``; a stream over either is answered 503 with
    ``Retry-After``, before anything is subscribed.

    Attributes:
        max_streams: the streams open at once across the app's ``@sse`` routes (``None``:
            no cap).
        retry_after: the seconds a refused client is told to wait (``Retry-After``).

    Example:
        >>> Limits(max_streams=10_000).retry_after
        5
    """

    max_streams: int | None = None
    retry_after: int = 5

    def __post_init__(self) -> None:
        check_count("max_streams", self.max_streams, optional=True)
        check_count("retry_after", self.retry_after, minimum=0)


class Admission:
    """The stream quotas of one route (its own and the app's), taken for a request's life."""

    __slots__ = ("counters", "retry_after", "slots")

    def __init__(self, slots: tuple[Quota, ...], counters: StreamMetrics, retry_after: int):
        self.slots = slots
        self.counters = counters
        self.retry_after = str(retry_after)

    def take(self) -> None:
        """Take a slot of each quota, or answer 503 with ``Retry-After`` if one is full."""
        if any(slot.full for slot in self.slots):
            self.counters.rejected += 1
            raise json_error(
                503,
                "too many open event streams; try again later",
                headers={"Retry-After": self.retry_after},
            )
        for slot in self.slots:
            slot.used += 1

    def give_back(self) -> None:
        """Free the slots taken."""
        for slot in self.slots:
            slot.used -= 1


def sse_view(
    handler: Callable[..., Any],
    binder: Binder,
    guards: tuple[Guard, ...],
    admission: Admission,
    options: StreamOptions,
    check: EventCheck | None = None,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The view of an ``@sse`` route (``check``: every event checked against the route's
    declared types)."""
    failures = options.failures

    # One coroutine for the whole request: it lives as long as the stream, and every frame
    # held that long costs each open stream a few hundred bytes.
    async def view(request: web.Request) -> web.StreamResponse:
        admission.take()  # check and take in one step: no await in between
        try:
            if failures.gave_up(resume_of(request)):
                return web.Response(status=204)  # failed too often in a row: the client stops
            await _check(guards, request, binder.name)
            result = await _call(handler, await binder.bind(request), binder.name)
            if isinstance(result, web.StreamResponse):
                return result  # the handler answered itself, e.g. 204 to stop a browser
            if isinstance(result, (Observable, AsyncIterable)):
                if check is not None:
                    result = check.wrap(result)
                return await stream(request, result, options)
            raise _unsupported_return(
                f"@sse handler {binder.name}",
                result,
                "an Observable, an awaitable of one, an async iterator or a web.StreamResponse",
            )
        finally:
            admission.give_back()

    setattr(view, STREAM_VIEW, True)
    return view


def plain_view(
    handler: Callable[..., Any], binder: Binder, guards: tuple[Guard, ...]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The view of a ``@get``/``@post``/``@put``/``@delete`` route."""

    async def view(request: web.Request) -> web.StreamResponse:
        await _check(guards, request, binder.name)
        result = await _call(handler, await binder.bind(request), binder.name)
        if isinstance(result, web.StreamResponse):
            return result
        if isinstance(result, (dict, list)):
            return web.json_response(result)
        if isinstance(result, str):
            return web.Response(text=result)
        if result is None:
            return web.Response(status=204)
        raise _unsupported_return(
            f"handler {binder.name}", result, "a dict, list, str, None or a web.StreamResponse"
        )

    return view


async def _run_user_code(call: Callable[[], Any], what: str) -> Any:
    """Run a sync or async callable of the app's; HTTP errors pass through, anything else is
    logged and becomes a 500 that reveals nothing."""
    try:
        result = call()
        # An Observable is awaitable too (it resolves to its last value): never await one.
        if not isinstance(result, Observable) and inspect.isawaitable(result):
            result = await result
    except web.HTTPException:
        raise
    except EmitError as exc:  # the broker is out of reach: worth retrying, not a bug
        logger.warning("%s: %s", what, exc)
        raise json_error(
            503,
            "the event bus is unavailable; the event may or may not have been published: "
            "retry with the same idempotency key",
            headers={"Retry-After": "1"},
        ) from None
    except Exception:
        logger.exception("%s failed", what)
        raise json_error(500, "internal server error") from None
    return result


async def _call(handler: Callable[..., Any], kwargs: dict[str, Any], name: str) -> Any:
    """Run a handler with its bound arguments."""
    return await _run_user_code(lambda: handler(**kwargs), f"handler {name}")


def _unsupported_return(who: str, result: object, allowed: str) -> web.HTTPException:
    """Log a TypeError naming the handler; the client gets a 500 that reveals nothing."""
    error = TypeError(f"{who} returned {type(result).__name__}; it must return {allowed}")
    logger.error("%s", error, exc_info=error)
    return json_error(500, "internal server error")


async def _check(guards: tuple[Guard, ...], request: web.Request, name: str) -> None:
    """Run the guards in order; the first that rejects ends the request."""
    for guard in guards:
        verdict = await _run_user_code(lambda: guard(request), f"a guard of {name}")  # noqa: B023
        if verdict is False:
            raise json_error(403, "forbidden")
