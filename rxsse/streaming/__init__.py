"""The streaming layer: one ``text/event-stream`` response per subscription.

``stream()`` checks a stream's options and runs a :class:`StreamSession`, which subscribes on
the request's loop, writes each emission as a frame within the stream's limits (an outbox for
a slow client, heartbeats, a lifetime, the disconnect watch), and disposes exactly once. What
this layer keeps per application is the open streams and their counters.
"""

from ._failures import last_event_id
from ._metrics import StreamMetrics
from ._options import DEFAULT_HEARTBEAT, StreamOptions
from ._scheduler import LoopScheduler
from ._session import StreamSession
from ._sources import from_async_iterable
from ._state import metrics, open_streams
from ._stream import SSE_HEADERS, stream

__all__ = [
    "DEFAULT_HEARTBEAT",
    "SSE_HEADERS",
    "LoopScheduler",
    "StreamMetrics",
    "StreamOptions",
    "StreamSession",
    "from_async_iterable",
    "last_event_id",
    "metrics",
    "open_streams",
    "stream",
]
