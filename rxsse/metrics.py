"""Live counters of an app's event streams and of an event bus (as Prometheus metrics: see
:mod:`rxsse.prometheus`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .ends import End

__all__ = ["BusMetrics", "StreamMetrics"]


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


@dataclass
class BusMetrics:
    """Counters of one event bus (``bus.metrics``), all only going up.

    Attributes:
        emitted: events published (an emit repeated with a key it already used is not
            counted again).
        emit_failures: emits that failed at the broker (unreachable, timed out): each may or
            may not have been published.
        emits_rejected: emits refused at once because too many were waiting for the broker.
        resets: ``reset`` events sent to subscribers, because a resume point was unknown or
            trimmed, or because the broker's data set lost events.
    """

    emitted: int = 0
    emit_failures: int = 0
    emits_rejected: int = 0
    resets: int = 0
