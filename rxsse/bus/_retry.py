"""Retrying with backoff while a broker is away: delays that double up to a ceiling, and a call
retried until it succeeds or its patience runs out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

_T = TypeVar("_T")


class Backoff:
    """Delays between tries: ``first`` seconds, doubled after each wait, up to ``most``."""

    __slots__ = ("delay", "first", "most")

    def __init__(self, first: float = 0.05, most: float = 1.0) -> None:
        self.first = first
        self.most = most
        self.delay = first

    def reset(self) -> None:
        """Start again from the first delay (a try succeeded)."""
        self.delay = self.first

    async def wait(self) -> None:
        """Sleep the current delay, then double it."""
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.most)


async def retry(
    call: Callable[[], Awaitable[_T]],
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    patience: float,
    on_retry: Callable[[BaseException], None] | None = None,
) -> _T:
    """``await call()``, tried again with backoff while it raises ``retry_on``, for up to
    ``patience`` seconds; then its last error is raised."""
    deadline = time.monotonic() + patience
    backoff = Backoff()
    while True:
        try:
            return await call()
        except retry_on as exc:
            if time.monotonic() + backoff.delay > deadline:
                raise
            if on_retry is not None:
                on_retry(exc)
            await backoff.wait()
