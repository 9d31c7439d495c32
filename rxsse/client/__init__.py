"""The client: :class:`EventSource`, the events of one URL as a reconnecting async iterator,
and :func:`observe`, the same as an Observable."""

from ._eventsource import EventSource
from ._observe import observe
from ._request import EventSourceError

__all__ = ["EventSource", "EventSourceError", "observe"]
