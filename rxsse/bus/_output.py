"""One running producer (:class:`Output`): its source published item by item on the bus, its
lease renewed, its cancel and idle checks, and its end.

Each item is published with an idempotency key of its own (``<topic>#<n>``) and retried while
the broker is away, so each is in the log exactly once, in order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from reactivex import Observable

from .._event import MessageEvent
from ._broker import EmitError
from ._bus import EventBus
from ._retry import retry

if TYPE_CHECKING:  # (the producers that run this output: a back-reference, for types only)
    from ._producers import Producers

logger = logging.getLogger("rxsse.producers")

#: How long a producer keeps trying a broker it cannot reach before it gives up.
PUBLISH_PATIENCE: Final = 60.0

#: Why an output ended (the data of its ``end`` event: ``{"reason": ...}``).
Reason = Literal["complete", "cancelled", "idle", "error", "shutdown", "lost"]


@dataclass(frozen=True, slots=True)
class ProducerStatus:
    """Where a producer stands, as every process sees it."""

    key: str
    state: Literal["running", "ending", "ended"]  #: ending: its end is being published
    end_id: str | None  #: the id of its ``end`` event, once it ended
    lost: bool  #: running or ending, but its process stopped renewing its lease


class Output:
    """The output of one producer, run in this process: an output task (the source, item by
    item, to the bus) and a watcher (lease, cancel, idle), then the end."""

    def __init__(
        self, producers: Producers, key: str, source: Observable[Any] | AsyncIterable[Any]
    ) -> None:
        self.producers = producers
        self.key = key
        self.topic = producers.topic(key)
        self.reason: Reason | None = None
        loop = asyncio.get_running_loop()
        self.output = loop.create_task(self._produce(source))
        self.task = loop.create_task(self._run(), name=f"rxsse-producer-{key}")

    def stop(self, reason: Reason) -> None:
        """End the output early (the first reason given is the one announced)."""
        if self.reason is None:
            self.reason = reason
        self.output.cancel()

    async def _produce(self, source: Observable[Any] | AsyncIterable[Any]) -> None:
        bus, topic = self.producers.bus, self.topic
        items = _items_of(source) if isinstance(source, Observable) else aiter(source)
        count = 0
        try:
            async for item in items:
                count += 1
                if isinstance(item, MessageEvent):
                    await publish_patiently(bus, topic, item.data, item.type, f"{topic}#{count}")
                else:
                    await publish_patiently(bus, topic, item, None, f"{topic}#{count}")
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _run(self) -> None:
        """Wait for the output while watching the record; then end it."""
        watcher = asyncio.get_running_loop().create_task(self._watch())
        error: str | None = None
        try:
            await asyncio.shield(self.output)
            reason: Reason = "complete"
        except asyncio.CancelledError:
            if not self.output.cancelled():  # this task was cancelled: stop the output too
                self.output.cancel()
                raise
            reason = self.reason or "cancelled"
        except Exception as exc:
            logger.warning("producer %s failed: %s", self.key, exc)
            reason, error = "error", f"{type(exc).__name__}: {exc}"
        finally:
            watcher.cancel()
        await self.producers.end(self.key, reason, error)

    async def _watch(self) -> None:
        """Renew the lease; stop the output when it is cancelled or nobody has read it."""
        producers = self.producers
        idle_since = time.monotonic()
        while True:
            await asyncio.sleep(producers.poll)
            try:
                await producers.renew(self.key)
                record = await producers.record(self.key)
                readers = await producers.bus.members(self.topic)
            except Exception as exc:  # the shared state is away: try again next turn
                logger.info("producer %s could not check its record: %s", self.key, exc)
                continue
            if readers:
                idle_since = time.monotonic()
            if "cancel" in record:
                self.stop("cancelled")
            elif time.monotonic() - idle_since >= producers.idle_timeout:
                self.stop("idle")


class OwnerCheck:
    """While outputs are read in this process, end those whose process was lost (it stopped
    renewing their lease): their readers would otherwise wait for an end that never comes."""

    def __init__(self, producers: Producers) -> None:
        self.producers = producers
        self._reading: collections.Counter[str] = collections.Counter()  # keys read here
        self._task: asyncio.Task[None] | None = None

    def watch(self, key: str) -> None:
        """A subscription to ``key``'s output began here."""
        self._reading[key] += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._check())

    def unwatch(self, key: str) -> None:
        """A subscription to ``key``'s output ended."""
        self._reading[key] -= 1
        if self._reading[key] <= 0:
            del self._reading[key]

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _check(self) -> None:
        producers = self.producers
        while self._reading:
            await asyncio.sleep(producers.poll)
            for key in [k for k in self._reading if not producers.runs_here(k)]:
                with contextlib.suppress(Exception):
                    status = await producers.status(key)
                    if status is not None and status.lost:
                        logger.warning("producer %s lost its process; ending its output", key)
                        await producers.end(key, "lost")


async def publish_patiently(
    bus: EventBus, topic: str, data: Any, type: str | None, key: str
) -> str:
    """``bus.publish`` with an idempotency key, retried while the broker is away (for up to
    :data:`PUBLISH_PATIENCE` seconds)."""
    return await retry(
        lambda: bus.publish(topic, data, type=type, key=key), EmitError, PUBLISH_PATIENCE
    )


async def _items_of(source: Observable[Any]) -> AsyncIterator[Any]:
    """The items of ``source`` as an async iterator (its calls may come from any thread)."""
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(kind: str, value: Any = None) -> None:
        if threading.get_ident() == loop_thread:
            queue.put_nowait((kind, value))
        else:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    subscription = source.subscribe(
        lambda item: put("next", item),
        lambda error: put("error", error),
        lambda: put("done"),
    )
    try:
        while True:
            kind, value = await queue.get()
            if kind == "next":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        subscription.dispose()
