"""How a stream ended (one :class:`End` per stream) and the live counters of an app's streams
(served as Prometheus metrics by ``setup(app, metrics="/metrics")``)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


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


@dataclass
class StreamMetrics:
    """Counters for one app's streams (``rxsse.metrics(app)``). Only ``open_streams`` goes down.

    Attributes:
        open_streams: streams open now.
        streams_total: streams ever opened.
        events_sent: frames handed to the transport (events, heartbeats and error frames).
        frames_dropped: frames dropped by an overflow policy, by policy name.
        overflows: streams closed because their client fell behind (policy ``disconnect``).
        send_timeouts: connections dropped because their client took no data for
            ``send_timeout``; a stream stuck while ending is counted under its end as well.
        expired: streams ended cleanly by their ``max_lifetime``.
        disconnects: streams whose client went away.
        completed: streams ended by their Observable completing.
        errors: streams ended by an error.
        rejected: requests refused by a limit (503).
    """

    open_streams: int = 0
    streams_total: int = 0
    events_sent: int = 0
    frames_dropped: dict[str, int] = field(
        default_factory=lambda: {"drop_oldest": 0, "drop_newest": 0}
    )
    overflows: int = 0
    send_timeouts: int = 0
    expired: int = 0
    disconnects: int = 0
    completed: int = 0
    errors: int = 0
    rejected: int = 0

    def record_end(self, end: End) -> None:
        """Count a stream's end. (A shutdown or a cancelled handler has no counter of its
        own; a send timeout is counted where it happens, as a stream already ending may be
        the one stuck writing its last frames.)"""
        if end is End.COMPLETED:
            self.completed += 1
        elif end is End.ERROR:
            self.errors += 1
        elif end is End.EXPIRED:
            self.expired += 1
        elif end is End.DISCONNECTED:
            self.disconnects += 1
        elif end is End.OVERFLOW:
            self.overflows += 1
