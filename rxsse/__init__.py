"""rxsse: Server-Sent Events for aiohttp, driven by ReactiveX Observables.

Controller methods return a ``reactivex.Observable``; for each GET request rxsse subscribes to
it, sends every emission as a ``text/event-stream`` frame, ends the response when the
Observable completes, and disposes the subscription the moment the client disconnects.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import bad_request, json_error
from ._event import MessageEvent
from ._parser import Parser
from ._speed import use_uvloop
from .bus import (
    Broker,
    EmitError,
    EventBus,
    MemoryBroker,
    PresenceEvent,
    Producers,
    ProducerStatus,
)
from .bus._metrics import BusMetrics
from .client import EventSource, EventSourceError, observe
from .streaming import (
    DEFAULT_HEARTBEAT,
    SSE_HEADERS,
    LoopScheduler,
    StreamMetrics,
    StreamOptions,
    StreamSession,
    from_async_iterable,
    last_event_id,
    metrics,
    open_streams,
    stream,
)
from .web import CORS, Docs, Guard, Limits, controller, delete, get, post, put, setup, sse

if TYPE_CHECKING:
    from .bus.nats import NatsBroker
    from .bus.redis import RedisBroker

__all__ = [
    "CORS",
    "DEFAULT_HEARTBEAT",
    "SSE_HEADERS",
    "Broker",
    "BusMetrics",
    "Docs",
    "EmitError",
    "EventBus",
    "EventSource",
    "EventSourceError",
    "Guard",
    "Limits",
    "LoopScheduler",
    "MemoryBroker",
    "MessageEvent",
    "NatsBroker",
    "Parser",
    "PresenceEvent",
    "ProducerStatus",
    "Producers",
    "RedisBroker",
    "StreamMetrics",
    "StreamOptions",
    "StreamSession",
    "bad_request",
    "controller",
    "delete",
    "from_async_iterable",
    "get",
    "json_error",
    "last_event_id",
    "metrics",
    "observe",
    "open_streams",
    "post",
    "put",
    "setup",
    "sse",
    "stream",
    "use_uvloop",
]

__version__ = "0.1.0"


# The brokers of other servers need their client libraries: imported when first asked for.
_OPTIONAL: dict[str, tuple[str, str, str]] = {
    "RedisBroker": ("rxsse.bus.redis", "redis-py", "redis"),
    "NatsBroker": ("rxsse.bus.nats", "nats-py", "nats"),
}


def __getattr__(name: str) -> Any:
    if name in _OPTIONAL:
        module, library, extra = _OPTIONAL[name]
        try:
            return getattr(importlib.import_module(module), name)
        except ModuleNotFoundError as error:
            raise ImportError(
                f"rxsse.{name} needs {library} ({error}): pip install 'rxsse[{extra}]'"
            ) from error
    raise AttributeError(f"module 'rxsse' has no attribute {name!r}")
