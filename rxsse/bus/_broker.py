"""What the event bus asks of a broker: the contract, and the values that cross it.

The bus checks and encodes every event once (:class:`Outgoing`) before a broker sees it, so
every broker stores and delivers the same bytes. A broker gives each event a sequence number
and an id, keeps a replay log per topic, and hands every published :class:`Entry` to the bus's
sink in sequence order.

Ids are ``"<seq>-<epoch>"``: the epoch names the data set that issued the sequence number, so
an id from a data set that was lost (a Redis that came back empty, or from an older snapshot)
is recognised as such and answered with a ``reset``, never resumed at the wrong place.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol, TypeAlias

from .._event import MessageEvent
from ._metrics import BusMetrics
from ._topics import TopicPattern

#: At most one log line a second about failed emits.
_LOG_INTERVAL: Final = 1.0
#: The longest sequence number an id may carry (a 64-bit counter has 19 digits).
_EVENT_ID: Final = re.compile(r"([0-9]{1,19})-([0-9A-Za-z]{1,32})")


class EmitError(ConnectionError):
    """An emit that could not be confirmed: the broker was unreachable, timed out, or had too
    many emits waiting.

    The event may or may not have been published. Emit it again with the same ``key`` to have
    it published exactly once (see :meth:`rxsse.EventBus.emit`).
    """


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An event on its way to a broker: checked, and its data encoded as JSON, by the bus."""

    topic: str
    data: str  #: the JSON text of the data (see :func:`rxsse._payload.dumps`)
    type: str | None
    key: str | None  #: the idempotency key: one event per key, however often it is emitted


@dataclass(frozen=True, slots=True)
class Entry:
    """One published event: its sequence number, its topic, and the event (with its id).

    An entry whose ``topic`` is None is a ``reset`` for every topic: the broker's data set
    lost the events after ``seq`` (see :class:`EventBus`).
    """

    seq: int
    topic: str | None
    event: MessageEvent


@dataclass(frozen=True, slots=True)
class LogConfig:
    """What a broker's replay log keeps.

    Attributes:
        history: how many events it keeps per topic.
        max_age: if set, events older than this many seconds leave it.
        key_ttl: how many seconds an emit's idempotency key is remembered.
    """

    history: int = 1000
    max_age: float | None = None
    key_ttl: float = 3600.0


class Span(NamedTuple):
    """What a resume asks for: the topics of ``pattern``, after the id ``after``, up to
    sequence number ``upto``."""

    pattern: TopicPattern
    after: str
    upto: int


#: What a broker's replay returns: the entries in order, or None when the resume point is
#: unknown, lost or older than the log (the subscriber then gets a ``reset`` event).
Replay: TypeAlias = "list[Entry] | None"
#: Where a broker hands every entry it delivers, in sequence order.
Sink: TypeAlias = Callable[[Entry], None]


class Broker(Protocol):
    """Carries events between the bus's publishers and its subscribers, and keeps the replay
    log. The bus calls every method but :meth:`bind` on its event loop.

    Publishing needs no :meth:`start`: a process that only publishes never reads.

    The bus runs the first step of these coroutines at once, in its caller's task (the
    in-memory broker's never wait: no task is made for them), and only the rest in a task of
    its own. So a coroutine that waits must not enter anything bound to the current task in its
    first step (``asyncio.timeout``, a client library's I/O): it does that in a task it makes
    and awaits, as :class:`~rxsse.RedisBroker` does.
    """

    def bind(self, log: LogConfig, metrics: BusMetrics) -> None:
        """Take the bus's log settings and counters (once, when the bus is made; no I/O)."""

    async def publish(self, event: Outgoing) -> str:
        """Assign the next id to an event, publish it and return its id. An event whose key
        was published already is not published again: the first one's id is returned.

        Raises:
            EmitError: the broker could not confirm it (counted in the bus's metrics).
        """

    def emit(self, event: Outgoing) -> None:
        """Publish an event as :meth:`publish` does, without waiting for it: nothing is
        returned, and a failure is counted in the bus's metrics and logged by the broker."""

    async def start(self, sink: Sink) -> int:
        """Begin handing every published entry to ``sink``, in sequence order, on the loop;
        return the sequence number of the newest published entry."""

    async def replay(self, pattern: TopicPattern, after: str, upto: int) -> Replay:
        """The logged entries of topics matching ``pattern`` after the id ``after``, up to
        sequence number ``upto``; None if ``after`` is unknown, lost or trimmed.

        Raises:
            ConnectionError: the broker cannot be reached now (the bus asks again).
        """

    def event_id(self, seq: int) -> str:
        """The id of sequence number ``seq``."""

    async def close(self) -> None:
        """Stop delivering and release connections."""


def parse_event_id(event_id: str) -> tuple[int, str] | None:
    """``"<seq>-<epoch>"`` as ``(seq, epoch)``, or None for anything else (any length).

    Example:
        >>> parse_event_id("42-9f3a")
        (42, '9f3a')
        >>> parse_event_id("9" * 5000 + "-9f3a") is None
        True
    """
    match = _EVENT_ID.fullmatch(event_id)
    if match is None:
        return None
    return int(match[1]), match[2]


def unreadable(event_id: str) -> MessageEvent:
    """What a logged event no process can read becomes: a reset, never a skip."""
    return MessageEvent(
        {"reason": "an event in the log could not be read"}, type="reset", id=event_id
    )


def resolve(future: asyncio.Future[str], event_id: str) -> None:
    """Give an emit its id, unless its publisher stopped waiting (it was cancelled)."""
    if not future.done():
        future.set_result(event_id)


class EmitFailures:
    """Fails emits and reports them: counted in the bus's metrics, and logged once per burst
    (at most one line a second, the last failures of a burst included), never once per emit.

    A failed future's exception is marked as seen, so asyncio does not log "Future exception
    was never retrieved" for an emit whose publisher was cancelled meanwhile.
    """

    def __init__(self, logger: logging.Logger, metrics: BusMetrics, where: str) -> None:
        self._logger = logger
        self._metrics = metrics
        self._where = where
        self._last_log = -_LOG_INTERVAL
        self._unlogged = 0
        self._last_error: EmitError | None = None
        self._pending_log: asyncio.TimerHandle | None = None

    def fail(
        self,
        futures: Iterable[asyncio.Future[str]],
        error: EmitError,
        *,
        rejected: bool = False,
        unawaited: int = 0,
    ) -> None:
        """Fail each of ``futures`` with ``error``, and count ``unawaited`` emits that failed
        with it (fire and forget: nobody waits for them). ``rejected``: refused without
        trying. Call on the event loop."""
        count = unawaited
        for future in futures:
            if future.done():
                continue  # its publisher was cancelled
            future.set_exception(error)
            future.exception()  # seen: no "never retrieved" log when nobody awaits it
            count += 1
        if not count:
            return
        if rejected:
            self._metrics.emits_rejected += count
        else:
            self._metrics.emit_failures += count
        self._unlogged += count
        self._last_error = error
        wait = self._last_log + _LOG_INTERVAL - time.monotonic()
        if wait <= 0:
            self._log()
        elif self._pending_log is None:  # the rest of this burst is logged when it is over
            self._pending_log = asyncio.get_running_loop().call_later(wait, self._log)

    def _log(self) -> None:
        self._pending_log = None
        if not self._unlogged:
            return
        self._logger.warning(
            "%d emit(s) to %s failed (%s); an emit that failed may or may not have been "
            "published: emit it again with the same key",
            self._unlogged,
            self._where,
            self._last_error,
        )
        self._last_log = time.monotonic()
        self._unlogged = 0
