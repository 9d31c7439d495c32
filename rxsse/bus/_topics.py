"""Topic names and patterns: ``orders.created``, ``orders.*`` (one segment), ``orders.**`` (any
depth), as EventEmitter2-style emitters allow."""

from __future__ import annotations

import re

_SEGMENT = re.compile(r"[^.*\s]+")


def check_topic(topic: str) -> str:
    """Return ``topic`` if it is a concrete topic name (dot-separated, no wildcards, no spaces).

    Raises:
        ValueError: for an empty name, an empty segment, a wildcard or white space.
    """
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"a topic must be a non-empty string, not {topic!r}")
    if not all(_SEGMENT.fullmatch(segment) for segment in topic.split(".")):
        raise ValueError(
            f"invalid topic {topic!r}: dot-separated names without '*' or white space expected"
        )
    return topic


class TopicPattern:
    """A topic or a pattern over topics: ``*`` matches one segment, ``**`` one or more.

    Example:
        >>> TopicPattern("orders.*").matches("orders.created")
        True
        >>> TopicPattern("orders.*").matches("orders.eu.created")
        False
        >>> TopicPattern("orders.**").matches("orders.eu.created")
        True
    """

    __slots__ = ("_regex", "is_exact", "text")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            raise ValueError(f"a topic pattern must be a non-empty string, not {text!r}")
        parts: list[str] = []
        for segment in text.split("."):
            if segment == "*":
                parts.append(r"[^.]+")
            elif segment == "**":
                parts.append(r"[^.]+(?:\.[^.]+)*")
            elif _SEGMENT.fullmatch(segment):
                parts.append(re.escape(segment))
            else:
                raise ValueError(f"invalid topic pattern {text!r}: segments are names, '*' or '**'")
        self.text = text
        self.is_exact = "*" not in text
        self._regex = re.compile(r"\.".join(parts))

    def matches(self, topic: str) -> bool:
        """Whether ``topic`` is one of the topics this pattern names."""
        if self.is_exact:
            return topic == self.text
        return self._regex.fullmatch(topic) is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TopicPattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"TopicPattern({self.text!r})"
