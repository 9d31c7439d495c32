"""Adapting what handlers may return into an Observable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from typing import Any, TypeVar

import reactivex as rx
from reactivex import Observable, abc
from reactivex.disposable import Disposable

_T = TypeVar("_T")


class Attachable(Observable[_T]):
    """An Observable of rxsse's own that a stream may observe directly: ``attach(observer)``
    calls the observer's methods and returns what detaches it, without the wrappers
    ``subscribe`` puts around an observer. Those wrappers (three objects, each with a lock)
    are worth their cost for a pipeline; an idle stream holds its subscription for hours."""

    def attach(self, observer: abc.ObserverBase[_T]) -> abc.DisposableBase:
        """Start delivering to ``observer``; dispose the result to stop."""
        return self._subscribe_core(observer)


def from_async_iterable(iterable: AsyncIterable[_T]) -> Observable[_T]:
    """An Observable that iterates ``iterable`` on the running event loop when subscribed.

    Each item becomes an ``on_next``; the end of the iteration ``on_completed``; an exception
    ``on_error``. Disposing the subscription cancels the iteration, so an async generator's
    ``finally`` blocks run; an iterable with an ``aclose()`` method is closed when the
    iteration ends, however it ends. Subscribe from the event loop's thread.

    Example:
        >>> async def countdown():
        ...     for n in (3, 2, 1):
        ...         yield n
        >>> source = from_async_iterable(countdown())
    """

    def subscribe(
        observer: abc.ObserverBase[_T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        async def drive() -> None:
            try:
                async for item in iterable:
                    observer.on_next(item)
            except Exception as exc:  # the iterable failed: that is the stream's error
                observer.on_error(exc)
                return
            finally:
                aclose = getattr(iterable, "aclose", None)
                if aclose is not None:
                    await aclose()
            observer.on_completed()

        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(drive())

        def cancel() -> None:
            task.cancel()

        return Disposable(cancel)

    return rx.create(subscribe)
