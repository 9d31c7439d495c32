"""The bus on Redis (``pip install rxsse[redis]``): :class:`RedisBroker`, one stream of events
for many server processes on Redis Streams, and :class:`RedisState`, the shared records."""

from ._broker import RedisBroker
from ._state import RedisState

__all__ = ["RedisBroker", "RedisState"]
