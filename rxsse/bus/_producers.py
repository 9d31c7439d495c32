"""Resumable producers: a stream's producer that outlives the connections reading it.

``await producers.start(source)`` runs ``source`` (an Observable or an async iterable, such as
an LLM's tokens) under a key, and publishes each item on the bus topic ``<prefix>.<key>``: the
bus's log gives every item an id. Any client, on any process sharing the bus's broker, reads
the output from its start, or resumes after the ``Last-Event-ID`` it saw, token-exact; the
output ends with an ``end`` event (``{"reason": ...}``) after which a reconnect gets HTTP 204.

The producer's record (running or ended, which process runs it, its lease, its end id) is
shared (:mod:`rxsse.bus._shared`), so any process can answer for it: cancel it (the owner sees the
request within ``poll`` seconds), or, when the owner stopped renewing its lease (it crashed),
end its output with ``{"reason": "lost"}`` so that no reader waits for ever.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterable
from typing import Any, Final

import reactivex as rx
from aiohttp import web
from reactivex import Observable
from reactivex import operators as ops

from .._checks import check_seconds
from .._errors import json_error
from .._event import MessageEvent
from ._bus import EventBus
from ._output import PUBLISH_PATIENCE, Output, OwnerCheck, ProducerStatus, Reason, publish_patiently

_KEY: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: The log outlives the record by this much: a late reader gets a 404, never an empty log.
_LOG_GRACE: Final = 60.0


class Producers:
    """Producers that outlive their connections, on an event bus.

    Args:
        bus: the bus that carries and logs the output (its ``history`` must hold a whole
            output, or a reader from the start gets a ``reset``).
        prefix: the topic under which outputs are published (``<prefix>.<key>``).
        ttl: seconds an output stays readable after it ended (its record and its log).
        idle_timeout: a producer nobody has read for this many seconds is cancelled
            (``{"reason": "idle"}``); readers are counted in every process (presence).
        poll: seconds between a running producer's checks (lease, cancel, idle).
        lease: seconds after which a producer whose process stopped renewing counts as lost.

    Example:
        >>> producers = Producers(EventBus(history=10_000))
        >>> # key = await producers.start(tokens_of(prompt))   # in a POST handler
        >>> # return await producers.stream(key, last_event_id=last_event_id)  # in an @sse one
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        prefix: str = "producers",
        ttl: float = 3600.0,
        idle_timeout: float = 60.0,
        poll: float = 0.5,
        lease: float = 5.0,
    ) -> None:
        times = (("ttl", ttl), ("idle_timeout", idle_timeout), ("poll", poll), ("lease", lease))
        for name, value in times:
            check_seconds(name, value)
        if not lease > poll:
            raise ValueError(f"lease ({lease!r}) must be longer than poll ({poll!r})")
        self.bus = bus
        self.prefix = prefix
        self.ttl = float(ttl)
        self.idle_timeout = float(idle_timeout)
        self.poll = float(poll)
        self.lease = float(lease)
        self.process = uuid.uuid4().hex[:12]
        self._outputs: dict[str, Output] = {}  # the producers running here
        self._owners = OwnerCheck(self)  # ends the outputs read here whose process was lost

    # -- producing -----------------------------------------------------------------------------

    @property
    def running(self) -> int:
        """How many producers run in this process."""
        return len(self._outputs)

    def topic(self, key: str) -> str:
        """The bus topic of ``key``'s output."""
        return f"{self.prefix}.{_check_key(key)}"

    async def start(
        self, source: Observable[Any] | AsyncIterable[Any], *, key: str | None = None
    ) -> str:
        """Run ``source`` in this process, publishing each item (a ``MessageEvent`` keeps its
        ``type``; anything else is the data of a ``message``), and return its key.

        Raises:
            ValueError: a bad key, a key already in use, or a source of another kind.
        """
        if not isinstance(source, (Observable, AsyncIterable)):
            raise ValueError(
                "a producer's source is an Observable or an async iterable, "
                f"not {type(source).__name__}"
            )
        key = _check_key(key) if key is not None else uuid.uuid4().hex
        if await self.record(key):
            raise ValueError(f"a producer with the key {key!r} exists")
        await self.renew(key, state="running", owner=self.process)
        output = self._outputs[key] = Output(self, key, source)
        output.task.add_done_callback(lambda _: self._outputs.pop(key, None))
        return key

    async def end(self, key: str, reason: Reason, error: str | None = None) -> str:
        """Publish ``key``'s ``end`` event (once, whoever calls) and mark its record ended;
        its record and log expire ``ttl`` seconds later. Returns the end's id."""
        data = {"reason": reason} if error is None else {"reason": reason, "error": error}
        topic = self.topic(key)
        # Said before the end goes out: a client that gets the end and reconnects at once
        # finds the record ending, and waits for the end's id (see stream()).
        await self.renew(key, state="ending")
        end_id = await publish_patiently(self.bus, topic, data, "end", f"{topic}#end")
        await self.renew(key, state="ended", end=end_id)
        await self.bus.shared.expire_log(topic, self.ttl + _LOG_GRACE)
        return end_id

    async def renew(self, key: str, **fields: str) -> None:
        """Renew ``key``'s lease (and set ``fields``)."""
        stamp = {"lease": repr(time.time() + self.lease), **fields}
        await self.bus.shared.put(self._record_name(key), stamp, self.ttl)

    async def record(self, key: str) -> dict[str, str]:
        """``key``'s shared record (empty when unknown or expired)."""
        return await self.bus.shared.read(self._record_name(key))

    def _record_name(self, key: str) -> str:
        return f"producer:{self.prefix}:{key}"

    async def cancel(self, key: str) -> bool:
        """Stop ``key``'s producer (its output ends with ``{"reason": "cancelled"}``), in
        whichever process it runs. False if it is unknown or already ended."""
        status = await self.status(key)
        if status is None or status.state != "running":
            return False
        output = self._outputs.get(key)
        if output is not None:
            output.stop("cancelled")
        else:  # its process sees this within `poll` seconds
            await self.bus.shared.put(self._record_name(key), {"cancel": "1"}, self.ttl)
        return True

    # -- reading -------------------------------------------------------------------------------

    async def status(self, key: str) -> ProducerStatus | None:
        """``key``'s producer as every process sees it; None if unknown or expired."""
        record = await self.record(_check_key(key))
        state = record.get("state")
        if state == "ended":
            return ProducerStatus(key, "ended", record.get("end"), lost=False)
        if state not in ("running", "ending"):
            return None
        lease = float(record.get("lease", "0"))
        lost = lease < time.time() and not self.runs_here(key)
        return ProducerStatus(key, "running" if state == "running" else "ending", None, lost)

    def read(
        self, key: str, *, last_event_id: str | None = None, member: str = "reader"
    ) -> Observable[MessageEvent]:
        """``key``'s output from its start (or after ``last_event_id``), up to and with its
        ``end`` event; the subscription counts as a reader (``member``) in presence."""
        topic = self.topic(key)
        after = last_event_id or self.bus.origin_id

        def watched(_: Any) -> Observable[MessageEvent]:
            self._owners.watch(key)
            return self.bus.on(topic, last_event_id=after, member=member).pipe(
                ops.take_while(_before_end, inclusive=True),
                ops.finally_action(lambda: self._owners.unwatch(key)),
            )

        return rx.defer(watched)

    async def stream(
        self, key: str, *, last_event_id: str | None = None, member: str = "reader"
    ) -> Observable[MessageEvent] | web.Response:
        """What an ``@sse`` route returns for ``key``: its output (see :meth:`read`); HTTP 204
        for a client that already has the ``end`` event (so that it stops reconnecting).

        Raises:
            HTTPBadRequest: (a JSON 400) for a malformed key.
            HTTPNotFound: (a JSON 404) for a key that is unknown, or whose output expired.
        """
        try:
            status = await self._settled_status(key)
        except ValueError as exc:
            raise json_error(400, str(exc)) from None
        if status is None:
            raise json_error(404, "no such stream (unknown, or expired)", key=key)
        end_id = await self.end(key, "lost") if status.lost else status.end_id
        if end_id is not None and last_event_id == end_id:
            return web.Response(status=204)
        return self.read(key, last_event_id=last_event_id, member=member)

    async def _settled_status(self, key: str) -> ProducerStatus | None:
        """The status once an end under way is written: its end may be out already, and a
        client that got it and came back must be told 204, not wait for more. An end that
        takes longer than the lease is lost (then ended by whoever asks)."""
        deadline = time.monotonic() + self.lease
        while True:
            status = await self.status(key)
            settled = status is None or status.state != "ending" or status.lost
            if settled or time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.01)  # one publish and one write away

    async def close(self) -> None:
        """End this process's producers (``{"reason": "shutdown"}``): call it on shutdown,
        while the bus is open (a controller's ``on_shutdown``)."""
        outputs = list(self._outputs.values())
        for output in outputs:
            output.stop("shutdown")
        if outputs:
            await asyncio.wait([o.task for o in outputs], timeout=PUBLISH_PATIENCE)
        self._owners.close()

    def runs_here(self, key: str) -> bool:
        """Whether ``key``'s producer runs in this process."""
        return key in self._outputs


def _before_end(event: MessageEvent) -> bool:
    return event.type != "end"


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"a producer key is 1 to 128 letters, digits, '-' or '_', not {key!r}")
    return key
