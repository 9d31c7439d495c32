"""How a stream ended: one reason per stream, which knows its counter and whether the client
can still be written to."""

from __future__ import annotations

import enum

__all__ = ["End"]


class End(enum.Enum):
    """Why a stream ended (its session records exactly one)."""

    #: The Observable completed: what is pending is written, then the response ends.
    COMPLETED = "completed"
    #: The Observable failed: what is pending is written, then a failure event.
    ERROR = "error"
    #: The server shuts down (or closed the stream): pending frames, a final event, the end.
    SHUTDOWN = "shutdown"
    #: ``max_lifetime`` passed: the stream ends cleanly, the client reconnects.
    EXPIRED = "expired"
    #: The client went away.
    DISCONNECTED = "disconnected"
    #: The handler's task was cancelled (aiohttp does this when the connection is lost).
    CANCELLED = "cancelled"
    #: The client fell behind beyond the bounds, with ``overflow="disconnect"``.
    OVERFLOW = "overflow"
    #: The client took no data for ``send_timeout``.
    TIMEOUT = "timeout"

    @property
    def client_gone(self) -> bool:
        """Whether nothing more can be written to the client after this end."""
        return self in _CLIENT_GONE


_CLIENT_GONE = frozenset({End.DISCONNECTED, End.CANCELLED, End.OVERFLOW, End.TIMEOUT})
