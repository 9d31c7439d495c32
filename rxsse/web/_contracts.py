"""What a route promises: its parameters, and for a stream what each event type carries.

A stream says what it sends by its handler's return annotation (``-> rx.Observable[Price]``,
``-> rx.Observable[MessageEvent[Price]]``, ``-> AsyncIterator[Price]``) or by
``@sse(..., events={"update": Update, "removed": Removed})``. ``setup`` reads it once, into a
:class:`RouteContract`: the API documents describe it, and with ``validate_events=True`` every
event a stream emits is checked against it (:class:`EventCheck`).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError
from reactivex import Observable
from reactivex import operators as ops

from .. import _payload as payload
from .._event import MessageEvent, event_of
from ..streaming._sources import from_async_iterable
from ._binding import Binder
from ._validation import adapter_for, is_union

#: The type of an event without one: what ``onmessage`` receives.
MESSAGE = "message"
#: Event types rxsse itself sends on a stream, whatever it declares.
_OWN_TYPES = frozenset({"reset"})


@dataclass(frozen=True)
class EventContract:
    """One event type of a stream and what its data is (``adapter`` None: anything)."""

    type: str
    hint: Any
    adapter: TypeAdapter[Any] | None


@dataclass(frozen=True)
class RouteContract:
    """A route as the documents describe it."""

    method: str
    path: str
    kind: Literal["sse", "plain"]
    name: str  #: the handler's qualified name
    binder: Binder
    doc: str  #: the handler's docstring
    events: tuple[EventContract, ...] = ()  #: a stream's event types
    error_event: str = "stream-error"  #: the type of a stream's failure event
    returns: TypeAdapter[Any] | None = None  #: what a plain route answers, if annotated
    guarded: bool = False


def route_contract(
    handler: Any, spec: Any, path: str, name: str, binder: Binder, guards: tuple[Any, ...]
) -> RouteContract:
    """The contract of one route (``spec``: what its decorator recorded)."""
    doc = inspect.getdoc(handler) or ""
    guarded = bool(guards)
    if spec.kind == "sse":
        events = stream_events(binder.hints, spec.events, f"handler {name}")
        return RouteContract(spec.method, path, "sse", name, binder, doc, events, guarded=guarded)
    returns = _returns(binder.hints.get("return"))
    return RouteContract(
        spec.method, path, "plain", name, binder, doc, returns=returns, guarded=guarded
    )


def _returns(hint: Any) -> TypeAdapter[Any] | None:
    """What a plain route answers, from its return annotation (None: unsaid, or a response)."""
    if hint is None or hint is type(None) or hint is Any:
        return None
    try:
        return adapter_for(hint, "a return annotation")
    except TypeError:  # a web.Response, say: nothing to describe
        return None


def stream_events(
    hints: Mapping[str, Any], declared: Mapping[str, Any] | None, where: str
) -> tuple[EventContract, ...]:
    """The event types a stream declares: ``declared`` if given, else its return annotation's
    (in its handler's ``hints``) item type as the data of untyped (``message``) events; none if
    it says nothing.

    Raises:
        TypeError: a declared type pydantic cannot describe, or a bad event type name.
    """
    if declared is not None:
        contracts = []
        for kind, hint in declared.items():
            try:
                MessageEvent(type=kind)  # the checks a frame's type gets
            except ValueError as exc:
                raise TypeError(f"{where}: {exc}") from None
            contracts.append(EventContract(kind, hint, _adapter(hint, f"{where}, event {kind!r}")))
        return tuple(contracts)
    item = _item_type(hints.get("return"))
    if item is None:
        return ()
    return (EventContract(MESSAGE, item, _adapter(item, f"{where}, its return annotation")),)


def _adapter(hint: Any, where: str) -> TypeAdapter[Any] | None:
    return None if hint is Any else adapter_for(hint, where)


def _item_type(returned: Any) -> Any:
    """What the stream's events carry, from ``-> Observable[X]`` / ``AsyncIterator[X]``
    (``X`` a ``MessageEvent[Y]`` carries ``Y``); None when unsaid."""
    # (-> Observable[X] | web.Response: the stream is the member that streams)
    members = typing.get_args(returned) if is_union(returned) else (returned,)
    streams = [m for m in members if _streams(typing.get_origin(m))]
    if not streams:
        return None
    (item,) = typing.get_args(streams[0])[:1] or (Any,)
    if item is MessageEvent:
        return Any
    if typing.get_origin(item) is MessageEvent:
        return typing.get_args(item)[0]
    return item


def _streams(origin: Any) -> bool:
    return isinstance(origin, type) and issubclass(origin, (Observable, AsyncIterable))


class EventCheck:
    """Checks each event a stream emits against the types it declares: an event of a type it
    does not declare, or whose data is not what it declares, fails the stream with a
    ``ValueError`` naming the route (what the client gets is its failure event; the message
    goes to the log).

    The data is checked as it goes on the wire: its JSON, strictly (an ``int`` where a
    ``str`` is declared is wrong, even if it could be converted).
    """

    def __init__(self, route: str, events: tuple[EventContract, ...]) -> None:
        self.route = route
        self.events = {event.type: event for event in events}

    def __call__(self, value: Any) -> Any:
        event = event_of(value)
        kind = event.type or MESSAGE
        if event.data is None and event.type is None:
            return value  # an id, a retry or a comment alone: no event for the client
        contract = self.events.get(kind)
        if contract is None:
            if kind in _OWN_TYPES:
                return value
            declared = sorted(self.events)
            raise ValueError(
                f"{self.route} emitted an event of type {kind!r}, which it does not declare "
                f"(it declares {declared})"
            )
        if contract.adapter is not None:
            try:
                contract.adapter.validate_json(payload.dumps_bytes(event.data), strict=True)
            except ValidationError as exc:
                raise ValueError(
                    f"{self.route} emitted a {kind!r} event whose data is not "
                    f"{_name(contract.hint)}: {exc}"
                ) from None
        return value

    def wrap(self, source: Observable[Any] | AsyncIterable[Any]) -> Observable[Any]:
        """``source`` with every emission checked."""
        if not isinstance(source, Observable):
            source = from_async_iterable(source)
        return source.pipe(ops.map(self))


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or repr(hint)
