"""A reactive SSE client: ``EventSource`` (a reconnecting async iterator) and ``observe(url)``.

``EventSource`` lives in ``_eventsource``, the request it repeats and the checks on the
answer in ``_request``; this module makes it an Observable.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import reactivex as rx
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from .._event import MessageEvent
from ..streaming._sources import from_async_iterable
from ._eventsource import EventSource


def observe(url: str, **options: Any) -> Observable[MessageEvent]:
    """The events of ``url`` as an Observable: each subscription opens its own
    :class:`EventSource` (``options`` are its keyword arguments); disposing it closes the HTTP
    connection. The Observable completes on HTTP 204 and fails with :class:`EventSourceError`.

    Subscribed on an event loop, the stream runs on that loop. Subscribed from code without a
    running loop (a script, a thread, ``.run()``), it runs on a loop of its own in a thread of
    its own, which its calls to the observer come from, and which ends with the stream.

    Example:
        >>> ticks = observe("http://127.0.0.1:8080/ticks")
        >>> ticks.pipe(ops.take(3), ops.to_list()).run()  # doctest: +SKIP
        [MessageEvent(data='0', ...), MessageEvent(data='1', ...), MessageEvent(data='2', ...)]
    """

    def subscribe(
        observer: abc.ObserverBase[MessageEvent], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return _in_a_thread(EventSource(url, **options), observer)
        return from_async_iterable(EventSource(url, **options)).subscribe(observer)

    return rx.create(subscribe)


def _in_a_thread(
    source: EventSource, observer: abc.ObserverBase[MessageEvent]
) -> abc.DisposableBase:
    """Read ``source`` on a new loop in a new thread; disposing the result stops it."""
    loop = asyncio.new_event_loop()

    async def drive() -> None:
        async with source:
            async for event in source:
                observer.on_next(event)
        observer.on_completed()

    task = loop.create_task(drive())

    def run() -> None:
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass  # disposed
        except Exception as exc:  # the stream failed: the observer's error
            observer.on_error(exc)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def cancel() -> None:
        with contextlib.suppress(RuntimeError):  # (a closed loop: the stream has ended)
            loop.call_soon_threadsafe(task.cancel)

    threading.Thread(target=run, name=f"rxsse-observe {source.url}", daemon=True).start()
    return Disposable(cancel)
