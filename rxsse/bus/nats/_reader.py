"""One reader per process that follows the bus's JetStream stream and hands its events to the
bus, in order, across reconnects, messages removed before it read them, and streams that were
made again or went back in time.

Ids are ``"<seq>-<token>"``: the stream's sequence number and a token stored with the message
(header ``k``), so an id names one message, even after a store that lost its newest messages
gave their sequence numbers to others. A position with no message of its own (the origin, a
``reset``) carries the stream's token: when the stream was created.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Final

import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamInfo

from ..._event import MessageEvent
from .._broker import Entry, Sink, unreadable
from .._retry import Backoff
from ._names import TOKEN_HEADER, TYPE_HEADER, BusNames, event_type, stream_token
from ._pull import PullConsumer, position

logger = logging.getLogger("rxsse.nats")

#: How many delivered ids a reader remembers: for the ids it names, and to find where a store
#: that went back in time parts from what it delivered.
_RECENT: Final = 10_000
#: Messages asked for in one request.
_FETCH: Final = 1000
#: Seconds an idle consumer of a reader that went away outlives it on the server.
_INACTIVE: Final = 30.0


def _lost(kept: int, token: str) -> MessageEvent:
    return MessageEvent(
        {"reason": "events were lost by the event store"}, type="reset", id=f"{kept}-{token}"
    )


class StreamReader:
    """Follows ``<prefix>.>`` with a pull consumer of its own (no acks: it only reads) and
    hands each event to ``sink``. On a quiet request, and after an error, it checks the stream:
    if events it delivered are gone, or arrived too late to be read, every subscriber gets a
    ``reset`` where the loss begins, and it follows the stream from there."""

    def __init__(
        self,
        nc: NatsClient,
        js: JetStreamContext,
        names: BusNames,
        sink: Sink,
        *,
        ensure_stream: Callable[[], Awaitable[StreamInfo]],
        where: str,
        block: float,
        patience: float,
        closing: Callable[[], bool],
    ) -> None:
        self._nc = nc
        self._js = js
        self._patience = patience  # how long beyond a request's end an answer may take
        self._names = names
        self._sink = sink
        self._ensure_stream = ensure_stream  # the stream, made again if it was deleted
        self._where = where
        self._block = block
        self._closing = closing
        self.stream = ""  #: the stream's token (see :func:`stream_token`)
        self.seq = 0  #: the last sequence number it delivered (or skipped: not an event)
        self._direct = True  # the stream allows direct gets (any server answers them)
        self._seqs: collections.deque[int] = collections.deque(maxlen=_RECENT)
        self._tokens: dict[int, str] = {}

    async def start(self) -> int:
        """Read where the stream is, and return the head it will follow from."""
        info = await self._js.stream_info(self._names.stream)
        self._direct = bool(info.config.allow_direct)
        self.stream = stream_token(info.created)
        self.seq = head = info.state.last_seq or 0
        if head:
            token = await self._token_at(head)
            if token is not None:
                self._remember(head, token)
        return head

    def event_id(self, seq: int) -> str:
        """The id of ``seq``: its message's, if this reader delivered it lately."""
        return f"{seq}-{self._tokens.get(seq) or self.stream}"

    def _remember(self, seq: int, token: str) -> None:
        seqs = self._seqs
        if len(seqs) == seqs.maxlen:
            self._tokens.pop(seqs[0], None)
        seqs.append(seq)
        self._tokens[seq] = token

    async def run(self) -> None:
        """Follow the stream until cancelled, reconnecting with backoff."""
        backoff = Backoff(most=2.0)
        lost = False
        while not self._closing():
            try:
                if lost:
                    await self._check()
                    lost = False
                    logger.info("reading events from NATS at %s again", self._where)
                await self._follow(backoff)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closing():
                    return
                if not lost:
                    logger.warning("lost NATS at %s (%r); retrying", self._where, exc)
                lost = True
                await backoff.wait()

    async def _follow(self, backoff: Backoff) -> None:
        """Read with one consumer from the message after :attr:`seq` until something fails
        (or the stream went back: then the caller reads again from where it parts)."""
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.seq + 1,
            filter_subject=self._names.subjects,
            inactive_threshold=_INACTIVE,
        )
        consumer = PullConsumer(self._js, self._nc, self._names.stream)
        try:
            await consumer.open(config)
            await consumer.request(_FETCH, self._block)
            taken = 0
            while not self._closing():
                # (A request ends within ``block``; silence beyond that is a server away.)
                messages, over = await consumer.take(self._block + self._patience)
                for message in messages:
                    at = position(message).seq
                    if at > self.seq + 1 and not await self._gone_before(at):
                        # Not gone: delivered out of order. Read again from the first missing.
                        logger.debug("NATS delivered %d after %d; reading again", at, self.seq)
                        return
                    self._deliver(at, message)
                taken += len(messages)
                if messages:
                    backoff.reset()
                if not over:
                    continue
                if not taken and await self._check():  # quiet: is it still the stream it was?
                    return  # it went back: read again from where it parts
                taken = 0
                await consumer.request(_FETCH, self._block)
        finally:
            await consumer.close()

    async def _gone_before(self, seq: int) -> bool:
        """Whether no message of the stream lies between :attr:`seq` and ``seq``."""
        try:
            following = await self._js.get_msg(
                self._names.stream, seq=self.seq + 1, subject=self._names.subjects, next=True
            )
        except nats.js.errors.NotFoundError:
            return True
        return (following.seq or 0) >= seq

    def _deliver(self, seq: int, message: Msg) -> None:
        if seq <= self.seq:
            return  # read again after a reconnect
        if seq > self.seq + 1:
            # Messages removed before this reader read them (it fell behind their topic's
            # history or max_age): never skipped silently.
            logger.warning(
                "events %d to %d of NATS at %s left the stream before they were read; "
                "subscribers get a reset",
                self.seq + 1,
                seq - 1,
                self._where,
            )
            token = self._tokens.get(self.seq) or self.stream
            self._sink(Entry(self.seq, None, _lost(self.seq, token)))
        self.seq = seq
        headers = message.headers or {}
        token = headers.get(TOKEN_HEADER) or self.stream
        self._remember(seq, token)  # (a record's too: a store may go back past it)
        topic = self._names.topic(message.subject)
        if topic is None:
            return  # a record of this bus's own (a loss), not an event
        event_id = f"{seq}-{token}"
        try:
            event = MessageEvent.from_json(
                message.data.decode(), id=event_id, type=event_type(headers.get(TYPE_HEADER))
            )
        except (UnicodeDecodeError, ValueError) as exc:
            logger.error("unreadable NATS message %d: %s; sending a reset", seq, exc)
            event = unreadable(event_id)
        self._sink(Entry(seq, topic, event))

    async def _check(self) -> bool:
        """Whether the stream lost events this reader delivered; if it did, send every
        subscriber a ``reset`` where the loss begins, record it, and follow from there."""
        info = await self._ensure_stream()
        self._direct = bool(info.config.allow_direct)
        stream, last = stream_token(info.created), info.state.last_seq or 0
        if stream != self.stream:
            kept = 0  # deleted and made again: none of what was delivered is in it
        elif last < self.seq:
            kept = await self._kept(last)
        else:
            delivered, found = self._tokens.get(self.seq), await self._token_at(self.seq)
            if delivered is None or found == delivered:
                return False
            first = info.state.first_seq or 0
            if found is None and (last == self.seq or first > self.seq):
                return False  # gone by age or a cut from the oldest: not gone back
            # Another message there, or a hole at the newest delivered one with older ones
            # kept and newer ones this reader never got: the store went back.
            kept = await self._kept(self.seq - 1)
        if kept >= self.seq:
            return False
        reset_token = self._tokens.get(kept) or stream
        if kept:  # (a stream made again holds no id of the old one: nothing to record)
            # Recorded before anything changes here: if it fails, the next check finds the
            # loss again.
            await self._record_loss(kept, self.seq, reset_token)
        logger.warning(
            "NATS at %s lost the events after %d (a stream made again or restored, or a store "
            "that lost its newest messages); subscribers get a reset there",
            self._where,
            kept,
        )
        self.stream, self.seq = stream, kept
        self._forget_after(kept)
        self._sink(Entry(kept, None, _lost(kept, reset_token)))
        return True

    async def _kept(self, below: int) -> int:
        """The newest delivered sequence number at or below ``below`` whose message is still
        the one delivered: probes back from the newest, doubling the step (a reset a little
        early is safe; one too late would skip)."""
        seqs = list(self._seqs)
        at = bisect.bisect_right(seqs, below) - 1
        step = 1
        while at >= 0:
            seq = seqs[at]
            if await self._token_at(seq) == self._tokens.get(seq):
                return seq
            at -= step
            step *= 2
        return 0

    def _forget_after(self, kept: int) -> None:
        while self._seqs and self._seqs[-1] > kept:
            self._tokens.pop(self._seqs.pop(), None)

    async def _token_at(self, seq: int) -> str | None:
        """The token of the message at ``seq``; None if there is none."""
        try:
            message = await self._js.get_msg(self._names.stream, seq=seq, direct=self._direct)
        except nats.js.errors.NotFoundError:
            return None
        headers: dict[str, Any] = message.headers or {}
        return str(headers.get(TOKEN_HEADER) or self.stream)

    async def _record_loss(self, kept: int, upto: int, token: str) -> None:
        """Recorded for the resumes to come: one from before ``kept`` that crosses it is a
        reset too (the stream alone cannot tell)."""
        record = json.dumps({"kept": kept, "upto": upto, "token": token})
        # (A token of its own, as an event's: a store that goes back past it is seen.)
        headers = {TOKEN_HEADER: secrets.token_hex(6)}
        await self._js.publish(self._names.lost, record.encode(), headers=headers)
