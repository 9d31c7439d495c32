"""The event bus: topics, ordered ids, a replay log and resume from ``Last-Event-ID``, over a
broker (:class:`MemoryBroker` in one process, ``RedisBroker`` for many, in
:mod:`rxsse.bus.redis`); presence, and resumable producers on the bus's shared records.
"""

from ._broker import Broker, EmitError
from ._bus import EventBus
from ._memory import MemoryBroker
from ._output import ProducerStatus
from ._presence import PresenceEvent
from ._producers import Producers

__all__ = [
    "Broker",
    "EmitError",
    "EventBus",
    "MemoryBroker",
    "PresenceEvent",
    "ProducerStatus",
    "Producers",
]
