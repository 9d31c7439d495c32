"""Reading a resume's events from the JetStream stream, checked so that what cannot be replayed
exactly is answered with a ``reset``, never a gap.

A resume point ``<seq>-<token>`` is in the stream if its message is there with that token (or,
for a position of the stream's own, ``<seq>-<stream token>``, if nothing after it expired).
Then no event after it left by ``max_age`` (they are newer), and one the stream cut shows as a
topic at its cap whose oldest message is past the point. The stream keeps more per topic than
the bus's ``history`` (slack for the readers); a resume is held to ``history`` as on every
broker: more events of a topic since the point is a reset. The stream's own records of losses
(see :mod:`rxsse.bus.nats._reader`) make a resume from before one a reset.
"""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Callable
from typing import Any, Final

import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamInfo

from ..._event import MessageEvent
from .._broker import Entry, Replay, Span, parse_event_id, unreadable
from ._names import TOKEN_HEADER, TYPE_HEADER, BusNames, event_type, stream_token
from ._pull import PullConsumer, position

logger = logging.getLogger("rxsse.nats")

_FETCH: Final = 1000
# Seconds one request of a replay may take (the messages are there: it takes much less).
_REQUEST: Final = 5.0
# The most subjects the server lists in one answer about a stream.
_SUBJECTS_PAGE: Final = 100_000


async def read_replay(
    nc: NatsClient, js: JetStreamContext, names: BusNames, span: Span, history: int
) -> Replay:
    """The stream's events of ``span``, or None (a reset) when they cannot be replayed exactly
    or a topic has more than ``history`` of them."""
    pattern, after, upto = span
    point = parse_event_id(after)
    if point is None:
        return None
    start, token = point
    info = await js.stream_info(names.stream)
    if not await _point_holds(js, names, info, start, token):
        return None  # another data set's id, one that left, or one past the stream
    if await _crosses_a_loss(js, names, start, after, upto):
        return None
    filter_subject = names.filter(pattern)
    if await _trimmed_after(js, names, info, filter_subject, pattern.matches, start):
        return None
    if upto <= start:
        return []  # (the client is ahead of this process's reader: the rest comes live)
    own = stream_token(info.created)
    span_read = (start, upto)
    entries = await _read_range(
        nc, js, names, filter_subject, pattern.matches, span_read, own, history
    )
    if entries is None:
        return None  # past the log's history: as if it had been cut (the same on every broker)
    # Exact only if nothing after the point left the stream while it was read.
    info = await js.stream_info(names.stream)
    if not await _point_holds(js, names, info, start, token) or await _trimmed_after(
        js, names, info, filter_subject, pattern.matches, start
    ):
        return None
    return entries


async def _point_holds(
    js: JetStreamContext, names: BusNames, info: StreamInfo, start: int, token: str
) -> bool:
    """Whether the resume point ``<start>-<token>`` is in the stream, nothing after it gone
    by age: its message there with its token, or a position of the stream's own."""
    own = stream_token(info.created)
    if start > (info.state.last_seq or 0):
        return False
    if start == 0 or token == own:  # a position of the stream's own (the origin, a reset)
        return token == own and not _expired_after(info, start)
    return await _token_at(js, names, start, direct=bool(info.config.allow_direct)) == token


def _expired_after(info: StreamInfo, start: int) -> bool:
    """Whether events after ``start`` may have left by age (the oldest go first)."""
    first = info.state.first_seq or 0
    return info.config.max_age is not None and info.config.max_age > 0 and first > start + 1


async def _token_at(js: JetStreamContext, names: BusNames, seq: int, *, direct: bool) -> str | None:
    try:
        message = await js.get_msg(names.stream, seq=seq, direct=direct)
    except nats.js.errors.NotFoundError:
        return None
    headers: dict[str, Any] = message.headers or {}
    token = headers.get(TOKEN_HEADER)
    return str(token) if token else None


async def _crosses_a_loss(
    js: JetStreamContext, names: BusNames, start: int, after: str, upto: int
) -> bool:
    """Whether events after a point at or past ``start`` (and before ``upto``) were lost,
    unless ``after`` is the id of that loss's reset (the client had it)."""
    seq = 1
    while True:
        try:
            message = await js.get_msg(names.stream, seq=seq, subject=names.lost, next=True)
        except nats.js.errors.NotFoundError:
            return False
        seq = (message.seq or seq) + 1
        try:
            record = json.loads(message.data or b"")
            kept, token = int(record["kept"]), str(record["token"])
        except (ValueError, KeyError, TypeError):
            return True  # a record that cannot be read: assume the worst
        if start <= kept < upto and after != f"{kept}-{token}":
            return True


async def _trimmed_after(
    js: JetStreamContext,
    names: BusNames,
    info: StreamInfo,
    filter_subject: str,
    matches: Callable[[str], bool],
    start: int,
) -> bool:
    """Whether a topic of the pattern lost an event after ``start`` to the stream's cap: it is at
    its cap, and its oldest message is past ``start``. (At the cap with nothing cut yet, or
    with only older events cut, is a reset too: one too many, never one too few.)"""
    cap = info.config.max_msgs_per_subject or -1
    if cap <= 0:
        return False
    counts = (await js.stream_info(names.stream, subjects_filter=filter_subject)).state.subjects
    if len(counts or {}) >= _SUBJECTS_PAGE:
        return True  # (more than one page of subjects: not all of them can be checked)
    for subject, count in (counts or {}).items():
        if count < cap:
            continue
        topic = names.topic(subject)
        if topic is None or not matches(topic):
            continue
        try:
            first = await js.get_msg(names.stream, seq=1, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            continue
        if (first.seq or 0) > start:
            return True
    return False


async def _read_range(
    nc: NatsClient,
    js: JetStreamContext,
    names: BusNames,
    filter_subject: str,
    matches: Callable[[str], bool],
    span: tuple[int, int],
    own: str,
    history: int,
) -> list[Entry] | None:
    """The events of the pattern in ``span`` (after its first sequence number, up to its
    last), read with a consumer of their own (deleted after); None as soon as one topic has
    more than ``history`` of them (a resume is held to the log's history: nothing more is
    read, whatever the point a client sends)."""
    start, upto = span
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start + 1,
        filter_subject=filter_subject,
        inactive_threshold=30.0,
    )
    consumer = PullConsumer(js, nc, names.stream)
    entries: list[Entry] = []
    counts: collections.Counter[str] = collections.Counter()
    try:
        await consumer.open(config)
        pending = consumer.pending
        while pending > 0:
            await consumer.request(min(_FETCH, pending), _REQUEST)
            over = False
            while not over:
                messages, over = await consumer.take(_REQUEST * 2)
                for message in messages:
                    seq, pending = position(message)
                    if seq > upto:
                        return entries
                    topic = names.topic(message.subject)
                    if topic is None or not matches(topic):
                        continue
                    counts[topic] += 1
                    if counts[topic] > history:
                        return None
                    entries.append(_entry(seq, topic, message.headers or {}, message.data, own))
    finally:
        await consumer.close()
    return entries


def _entry(seq: int, topic: str, headers: dict[str, str], data: bytes, own: str) -> Entry:
    event_id = f"{seq}-{headers.get(TOKEN_HEADER) or own}"
    try:
        event = MessageEvent.from_json(
            data.decode(), id=event_id, type=event_type(headers.get(TYPE_HEADER))
        )
    except (UnicodeDecodeError, ValueError) as exc:
        logger.error("unreadable NATS message %d: %s; sending a reset", seq, exc)
        event = unreadable(event_id)
    return Entry(seq, topic, event)
