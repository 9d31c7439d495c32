"""Running a coroutine's first step at once, so what does not wait needs no task.

Most of rxsse's coroutines finish without waiting: a write to a client whose socket has room,
an emit to the in-memory broker, a subscription to a bus that is started. :func:`first_step`
runs one up to its first wait; only a coroutine that does wait is handed to a task
(``loop.create_task(step.finish())``), which takes over from where it stopped.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

_T = TypeVar("_T")


class Waiting(Generic[_T]):
    """A coroutine whose first step ran and that now waits (for ``waiting_on``, the future it
    yielded). Await it, or make a task of :meth:`finish`, to run the rest."""

    __slots__ = ("_coroutine", "_waiting_on")

    def __init__(self, coroutine: Coroutine[Any, Any, _T], waiting_on: Any) -> None:
        self._coroutine = coroutine
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, _T]:
        coroutine, value = self._coroutine, self._waiting_on
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # cancellation and the like go to the coroutine
                try:
                    value = coroutine.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
            else:
                try:
                    value = coroutine.send(sent)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]

    async def finish(self) -> _T:
        """The rest of the coroutine, as a coroutine (for ``create_task``)."""
        return await self


def first_step(coroutine: Coroutine[Any, Any, _T]) -> _T | Waiting[_T]:
    """Run ``coroutine`` until it first waits: its result if it finished, else the
    :class:`Waiting` rest of it. An exception it raises in that step is raised here.

    Example:
        >>> async def answer() -> int:
        ...     return 42
        >>> first_step(answer())
        42
    """
    try:
        waiting_on = coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    return Waiting(coroutine, waiting_on)
