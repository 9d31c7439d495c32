"""Publishing a batch of emits to JetStream: each message with a reply subject of its own, then
all of their acknowledgements awaited together (the server answers in order).

nats-py's ``publish_async`` does the same, but keeps an emit's slot for ever when publishing it
fails (an oversized message, a full reconnect buffer), and knows nothing of batches.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any, Final

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from .._broker import EmitError
from .._emit_queue import Pending
from ._names import DEDUP_HEADER, MAX_SUBJECT, TOKEN_HEADER, TYPE_HEADER, BusNames, key_token

# The bytes of a message's header block beyond its fields ("NATS/1.0\r\n" ... "\r\n").
_HEADER_FRAME: Final = 12
#: What one emit of a batch came to: its ``(id, new)``, or why it alone failed.
Answer = tuple[str, bool] | EmitError


class BatchPublisher:
    """Publishes batches on one connection and matches JetStream's acknowledgements to them."""

    def __init__(self, names: BusNames, where: str) -> None:
        self._names = names
        self._where = where
        self._inbox = ""
        self._acks: dict[str, asyncio.Future[tuple[int, bool]]] = {}
        self._replies = 0
        self._session = secrets.token_hex(3)  # the first part of this process's id tokens
        self._emits = 0
        self.stream_missing = False  #: an emit found no stream: it was deleted

    @property
    def waiting(self) -> int:
        """How many emits wait for their acknowledgement."""
        return len(self._acks)

    async def attach(self, nc: NatsClient) -> None:
        """Listen for acknowledgements on ``nc`` (a new connection)."""
        self._inbox = nc.new_inbox()
        await nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)

    def fail_all(self, error: EmitError) -> None:
        """Fail every emit waiting for its acknowledgement (the broker is closing)."""
        for future in self._acks.values():
            if not future.done():
                future.set_exception(error)
                future.exception()
        self._acks = {}

    async def send(self, nc: NatsClient, batch: list[Pending], timeout: float) -> list[Answer]:
        """Publish ``batch`` and wait up to ``timeout`` for its acknowledgements: each emit's
        answer, in order. An emit JetStream refused fails alone; raises if some were not
        acknowledged in time (they may or may not be published)."""
        loop = asyncio.get_running_loop()
        acks: list[asyncio.Future[tuple[int, bool]] | EmitError] = []
        tokens: list[str] = []
        replies: list[str] = []
        try:
            for event, _ in batch:
                token = key_token(event.key) if event.key else self._next_token()
                tokens.append(token)
                headers = {TOKEN_HEADER: token}
                if event.type:
                    # As JSON: nats-py strips white space around a header's value.
                    headers[TYPE_HEADER] = json.dumps(event.type)
                if event.key:
                    headers[DEDUP_HEADER] = token  # (the key itself could be stripped too)
                subject = self._names.subject(event.topic)
                payload = event.data.encode()
                refused = _refusal(subject, payload, headers, nc.max_payload)
                if refused is not None:
                    acks.append(refused)
                    continue
                ack: asyncio.Future[tuple[int, bool]] = loop.create_future()
                reply = str(self._replies)
                self._replies += 1
                self._acks[reply] = ack
                replies.append(reply)
                acks.append(ack)
                await nc.publish(subject, payload, reply=f"{self._inbox}.{reply}", headers=headers)
            waiting = [ack for ack in acks if not isinstance(ack, EmitError)]
            if waiting:
                _, late = await asyncio.wait(waiting, timeout=timeout)
                if late:
                    raise EmitError(
                        f"NATS at {self._where} did not acknowledge {len(late)} emit(s) within "
                        f"{timeout:g} s"
                    )
        finally:
            for reply in replies:
                self._acks.pop(reply, None)
        return [_answer(ack, token) for ack, token in zip(acks, tokens, strict=True)]

    def _next_token(self) -> str:
        self._emits += 1
        return f"{self._session}{self._emits:x}"

    async def _on_ack(self, msg: Msg) -> None:
        """JetStream's answer to one emit."""
        ack = self._acks.pop(msg.subject.rpartition(".")[2], None)
        if ack is None or ack.done():
            return  # it timed out, or the broker closed
        if msg.headers and msg.headers.get("Status") == "503":
            self.stream_missing = True  # the next batch makes it again
            ack.set_exception(EmitError(f"no JetStream stream takes {self._names.subjects}"))
            return
        try:
            answer: dict[str, Any] = json.loads(msg.data)
            if "error" in answer:
                description = answer["error"].get("description", answer["error"])
                ack.set_exception(EmitError(f"JetStream refused an emit: {description}"))
                return
            ack.set_result((int(answer["seq"]), bool(answer.get("duplicate"))))
        except (ValueError, KeyError, TypeError) as exc:
            ack.set_exception(EmitError(f"an unreadable acknowledgement from NATS: {exc}"))


def _answer(ack: asyncio.Future[tuple[int, bool]] | EmitError, token: str) -> Answer:
    if isinstance(ack, EmitError):
        return ack
    error = ack.exception()
    if error is not None:
        return error if isinstance(error, EmitError) else EmitError(str(error))
    seq, duplicate = ack.result()
    return f"{seq}-{token}", not duplicate


def _refusal(subject: str, payload: bytes, headers: dict[str, str], limit: int) -> EmitError | None:
    """Why NATS would refuse this message (it alone fails), or None."""
    if len(subject) > MAX_SUBJECT:
        return EmitError(f"a topic of more than {MAX_SUBJECT} bytes as a NATS subject")
    size = len(payload) + _HEADER_FRAME + sum(len(k) + len(v) + 4 for k, v in headers.items())
    if size > limit:
        return EmitError(
            f"an event of {size:,} bytes is larger than the NATS server's max_payload "
            f"({limit:,} bytes)"
        )
    return None
