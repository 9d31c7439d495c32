"""Reading a JetStream stream with a pull consumer of one's own: one request of a batch at a
time, its messages taken as they arrive.

nats-py's ``fetch()`` hands back one message per request when messages trickle in, a round
trip each (and a task per message it waits for): too slow for a bus's reader. Here the
messages of a request go to a callback, which only collects them; the reader takes what
arrived whenever it runs, and asks for the next batch when the request is done (its batch
delivered, or it expired: a quiet stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Final, NamedTuple

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import DEFAULT_PREFIX, ConsumerConfig

# Status codes of a pull request's end: no messages (404), expired (408); 100 a heartbeat.
_ENDS: Final = frozenset({"404", "408"})
_HEARTBEAT: Final = "100"


class Position(NamedTuple):
    """Where a message stands: its stream sequence number, and how many matching messages
    follow it in the stream (as the consumer saw it)."""

    seq: int
    pending: int


def position(message: Msg) -> Position:
    """A consumed message's position, from its reply subject
    (``$JS.ACK.<stream>.<consumer>.<delivered>.<seq>.<cseq>.<time>.<pending>``, or the longer
    form with a domain and an account)."""
    tokens = message.reply.split(".")
    if len(tokens) == 9:
        return Position(int(tokens[5]), int(tokens[8]))
    metadata = message.metadata
    return Position(metadata.sequence.stream, metadata.num_pending)


class PullConsumer:
    """An ephemeral consumer of one stream (made with ``config``, deleted by :meth:`close`),
    read one batch request at a time."""

    def __init__(self, js: JetStreamContext, nc: NatsClient, stream: str) -> None:
        self._js = js
        self._nc = nc
        self._stream = stream
        self.name = ""
        self.pending = 0  #: matching messages in the stream when it was made
        self._subject = ""
        self._inbox = ""
        self._sub: Subscription | None = None
        self._arrived: list[Msg] = []
        self._owed = 0
        self._done = True
        self._error: ConnectionError | None = None
        self._ready = asyncio.Event()

    async def open(self, config: ConsumerConfig) -> None:
        info = await self._js.add_consumer(self._stream, config)
        self.name, self.pending = info.name, info.num_pending or 0
        self._subject = f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{self._stream}.{self.name}"
        self._inbox = self._nc.new_inbox()
        # No limit on what waits in the client: a limit would drop messages (a NATS "slow
        # consumer") rather than wait; the batch bounds what one request brings.
        self._sub = await self._nc.subscribe(
            self._inbox, cb=self._on_message, pending_msgs_limit=0, pending_bytes_limit=0
        )

    async def request(self, batch: int, expires: float) -> None:
        """Ask for up to ``batch`` messages; the request ends after ``expires`` seconds."""
        self._owed, self._done = batch, False
        ask = {"batch": batch, "expires": int(expires * 1e9)}
        await self._nc.publish(self._subject, json.dumps(ask).encode(), reply=self._inbox)

    async def take(self, timeout: float) -> tuple[list[Msg], bool]:
        """What arrived since the last take (waiting for something, or for the request to
        end), and whether the request is over.

        Raises:
            ConnectionError: nothing came for ``timeout`` seconds (the server is away), or
                the server ended the request with an error (the consumer is gone).
        """
        if not self._arrived and not self._done:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                raise ConnectionError(f"no answer from NATS in {timeout:g} s") from None
        if self._error is not None:
            raise self._error
        arrived, self._arrived = self._arrived, []
        return arrived, self._done

    async def _on_message(self, message: Msg) -> None:
        status = message.headers.get("Status") if message.headers else None
        if status is None:
            self._arrived.append(message)
            self._owed -= 1
            self._done = self._owed <= 0
        elif status == _HEARTBEAT:
            return
        elif status in _ENDS:
            self._done = True
        else:
            description = (message.headers or {}).get("Description", "")
            self._error = ConnectionError(f"NATS ended a read: {status} {description}")
            self._done = True
        self._ready.set()

    async def close(self) -> None:
        """Stop reading and delete the consumer (on a connection that is gone, the server
        drops it once it is idle)."""
        with contextlib.suppress(Exception):
            if self._sub is not None:
                await self._sub.unsubscribe()
            if self.name:
                await self._js.delete_consumer(self._stream, self.name)
