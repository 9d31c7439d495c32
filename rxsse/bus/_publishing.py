"""Publishing: handing checked events to the broker, from the loop or from any thread.

``emit`` is fire and forget: the broker's own ``emit`` (the in-memory broker publishes and
delivers before it returns; Redis queues it for its next round trip, and counts and logs a
failure, never raises it). Emits from other threads go through the loop's inbox
(``Inbox``, which streams' observers use too): one hop per batch, not per
event, each thread's emits in order.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from .. import _payload as payload
from .._event import MessageEvent
from ..streaming._eager import Waiting, first_step
from ..streaming._observing import inbox_of
from ._broker import Broker, EmitError, Outgoing
from ._metrics import BusMetrics
from ._topics import check_topic

logger = logging.getLogger("rxsse.bus")

_MAX_KEY_LENGTH: Final = 256


class Publisher:
    """Hands events to a broker on its loop, for the bus's ``emit`` and ``publish``."""

    __slots__ = ("_broker", "_emitting", "_metrics")

    def __init__(self, broker: Broker, metrics: BusMetrics) -> None:
        self._broker = broker
        self._metrics = metrics
        self._emitting: set[asyncio.Task[str]] = set()  # emits waiting for their broker

    def emit(self, event: Outgoing, loop: asyncio.AbstractEventLoop | None) -> None:
        """Publish ``event`` without waiting, on ``loop`` (here and now without one). From
        another thread, through the loop's inbox (made when the bus took the loop)."""
        if loop is None or on_loop(loop):
            self._publish_now(event)
        else:
            inbox_of(loop).put(self._publish_from_thread, event)

    async def publish(self, event: Outgoing, loop: asyncio.AbstractEventLoop | None) -> str:
        """Publish ``event`` on ``loop`` (on the running one without one) and return its id."""
        if loop is not None and not on_loop(loop):  # from another loop: on the bus's
            future = asyncio.run_coroutine_threadsafe(self._broker.publish(event), loop)
            return await asyncio.wrap_future(future)
        return await self._broker.publish(event)

    def _publish_now(self, event: Outgoing) -> None:
        emit = getattr(self._broker, "emit", None)
        if emit is not None:
            emit(event)
            return
        # A broker of an earlier version, without emit: its publish, in a task if it waits.
        try:
            step = first_step(self._broker.publish(event))
        except EmitError:
            return  # counted and logged by the broker
        if isinstance(step, Waiting):
            task = asyncio.get_running_loop().create_task(step.finish())
            self._emitting.add(task)
            task.add_done_callback(self._emitted)

    def _emitted(self, task: asyncio.Task[str]) -> None:
        self._emitting.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and not isinstance(error, EmitError):  # (those the broker counts)
            self._metrics.emit_failures += 1
            logger.error("an emit failed", exc_info=error)

    def _publish_from_thread(self, event: Outgoing) -> None:
        try:
            self._publish_now(event)
        except Exception:
            self._metrics.emit_failures += 1
            logger.exception("an emit from another thread failed")


def outgoing(topic: str, data: Any, type: str | None, key: str | None) -> Outgoing:
    """Check an event and encode its data, once, before any broker sees it."""
    check_topic(topic)
    if type is not None:
        MessageEvent(type=type)  # the checks a frame's type gets
    if key is not None and (
        not isinstance(key, str)
        or not 0 < len(key) <= _MAX_KEY_LENGTH
        or not key.isprintable()
        or not key.isascii()
    ):
        raise ValueError(f"an emit key must be 1 to {_MAX_KEY_LENGTH} printable ASCII characters")
    try:
        text = payload.dumps(data)
    except ValueError as exc:
        raise ValueError(f"the data emitted on {topic!r} {exc}") from None
    return Outgoing(topic, text, type, key)


def on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether this code runs on ``loop``."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
