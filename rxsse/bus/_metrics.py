"""The live counters of an event bus (``bus.metrics``)."""

from __future__ import annotations

from dataclasses import dataclass


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
