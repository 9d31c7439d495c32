"""The names a NATS bus uses: its JetStream stream, the subjects of its topics, and the tokens
its event ids carry.

A topic's segments become subject tokens: those of letters, digits, ``_`` and ``-`` as they
are, any other as ``~`` and the hex of its UTF-8 bytes (a NATS token cannot hold white space,
``.``, or be ``*`` or ``>``; ``~`` marks the encoded ones, so no two topics share a subject).
Topic patterns become subject filters the same way: ``*`` is ``*`` and a trailing ``**`` is
``>``; a ``**`` elsewhere reads all topics and matches them here.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Final

from .._topics import TopicPattern

_PLAIN: Final = re.compile(r"[A-Za-z0-9_-]+")
#: The longest subject an event goes to: NATS allows more, but every message carries it.
MAX_SUBJECT: Final = 1024
#: The header holding an event's id token; its type; the reader's record of a loss.
TOKEN_HEADER: Final = "k"
TYPE_HEADER: Final = "y"
DEDUP_HEADER: Final = "Nats-Msg-Id"


class BusNames:
    """The stream and subjects of one prefix."""

    __slots__ = ("lost", "prefix", "stream", "subjects", "topics")

    def __init__(self, prefix: str) -> None:
        if not isinstance(prefix, str) or not _PLAIN.fullmatch(prefix):
            raise ValueError(
                f"a NATS bus prefix is letters, digits, '_' and '-' (a stream name), not {prefix!r}"
            )
        self.prefix = prefix
        self.stream = f"RXSSE_{prefix}"
        self.subjects = f"{prefix}.>"  #: everything the stream holds
        self.topics = f"{prefix}.t."  #: where the topics' subjects begin
        self.lost = f"{prefix}.lost"  #: the readers' records of lost events

    def subject(self, topic: str) -> str:
        """The subject of ``topic``."""
        return self.topics + ".".join(_token(segment) for segment in topic.split("."))

    def topic(self, subject: str) -> str | None:
        """The topic of a subject of this bus, or None for one that is no topic's."""
        if not subject.startswith(self.topics):
            return None
        try:
            return ".".join(_segment(token) for token in subject[len(self.topics) :].split("."))
        except ValueError:
            return None

    def filter(self, pattern: TopicPattern) -> str:
        """The subject filter that reads ``pattern``'s topics (and, where NATS cannot say it,
        more: match the topics too)."""
        tokens: list[str] = []
        segments = pattern.text.split(".")
        for at, segment in enumerate(segments):
            if segment == "**":
                if at < len(segments) - 1:
                    return self.topics + ">"  # NATS has no "any depth" in the middle
                tokens.append(">")
            else:
                tokens.append("*" if segment == "*" else _token(segment))
        return self.topics + ".".join(tokens)


def key_token(key: str) -> str:
    """The id token of an emit with an idempotency key: the same for every emit of the key,
    so a duplicate's acknowledgement (the first one's sequence number) gives the first id."""
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def stream_token(created: object) -> str:
    """The token of a stream: when it was created. A stream deleted and made again has
    another, so ids of the old one are not taken for positions in the new."""
    return hashlib.sha256(str(created).encode()).hexdigest()[:8]


def event_type(header: str | None) -> str | None:
    """An event's type from its header (as JSON; a bare one from a client of another kind)."""
    if not header:
        return None
    try:
        value = json.loads(header)
    except ValueError:
        return header
    return value if isinstance(value, str) and value else None


def _token(segment: str) -> str:
    if _PLAIN.fullmatch(segment):
        return segment
    return "~" + segment.encode().hex()


def _segment(token: str) -> str:
    if token.startswith("~"):
        return bytes.fromhex(token[1:]).decode()
    if not _PLAIN.fullmatch(token):
        raise ValueError(f"not a topic's token: {token!r}")
    return token
