"""The AsyncAPI 3.0 document of an app's streams.

Each ``@sse`` route is a channel (its address is the route's path, with its path parameters) and
an operation the app performs on it: it *sends* the channel's messages, one per event type, each
with the JSON Schema of its data. The query parameters are the operation's HTTP binding; the
SSE fields of a frame (``event``, ``id``) are each message's headers. A stream that resumes says
so: the ``Last-Event-ID`` header (or ``lastEventId`` in the query) names the last event the
client has.
"""

from __future__ import annotations

from typing import Any

from ._contracts import MESSAGE, RouteContract
from ._schemas import Components, identifier, with_default

_FAILURE = {
    "type": "object",
    "properties": {
        "status": {"type": "integer", "description": "the HTTP status the failure maps to"},
        "message": {"type": "string"},
        "failures": {"type": "integer", "description": "failures of this stream in a row"},
    },
    "required": ["status", "message", "failures"],
}
_RESET = {
    "type": "object",
    "properties": {"reason": {"type": "string"}},
    "description": "the client's resume point is no longer in the log: reload the state, then "
    "go on from this event's id",
}


def asyncapi_document(
    routes: list[RouteContract],
    *,
    title: str,
    version: str,
    description: str,
    host: str,
    scheme: str,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``routes``' streams, served from ``host``."""
    components = Components()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for route in routes:
        if route.kind != "sse":
            continue
        channel_id = identifier(route.name)
        while channel_id in channels:  # (one handler mounted twice)
            channel_id += "_"
        channel_messages = {}
        for kind, payload, doc in _events(route, components):
            message_id = identifier(f"{channel_id}.{kind}")
            messages[message_id] = {
                "name": kind,
                "title": kind,
                "summary": doc,
                "contentType": "application/json",
                "headers": _frame_fields(kind),
                "payload": payload,
            }
            channel_messages[identifier(kind)] = {"$ref": f"#/components/messages/{message_id}"}
        summary, _, details = route.doc.partition("\n\n")
        channel: dict[str, Any] = {
            "address": route.path,
            "messages": channel_messages,
            "description": _describe(route, details),
        }
        if summary:
            channel["summary"] = summary
        parameters = {
            p.name: {"description": f"path parameter {p.name!r}"}
            for p in route.binder.parameters
            if p.source == "path"
        }
        if parameters:
            channel["parameters"] = parameters
        channels[channel_id] = channel
        operations[identifier(f"{channel_id}.send")] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": summary or f"GET {route.path}",
            "messages": [
                {"$ref": f"#/channels/{channel_id}/messages/{key}"} for key in channel_messages
            ],
            "bindings": {"http": _http_binding(route, components)},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": title, "version": version, "description": description},
        "defaultContentType": "application/json",
        "servers": {
            "app": {
                "host": host,
                "protocol": scheme,
                "description": "GET a channel's address: a text/event-stream response",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": components.schemas},
    }


def _events(route: RouteContract, components: Components) -> list[tuple[str, Any, str]]:
    """(event type, payload schema, summary) of each message the stream may send."""
    found = [
        (event.type, components.schema(event.adapter, "serialization"), _what(event.type))
        for event in route.events
    ]
    if not found:
        found.append((MESSAGE, {}, "an event (the stream declares no types)"))
    if _resumes(route):
        found.append(("reset", _RESET, "the resume point is gone: reload, then go on"))
    found.append((route.error_event, _FAILURE, "the stream failed; the client reconnects later"))
    return found


def _what(kind: str) -> str:
    return "an event with no type (onmessage)" if kind == MESSAGE else f"a {kind!r} event"


def _frame_fields(kind: str) -> dict[str, Any]:
    """The SSE fields of a message's frame, as its headers."""
    properties: dict[str, Any] = {
        "id": {"type": "string", "description": "the event's id: a client resumes after it"}
    }
    if kind != MESSAGE:
        properties["event"] = {"const": kind}
    return {"type": "object", "properties": properties}


def _resumes(route: RouteContract) -> bool:
    return any(p.source == "last_event_id" for p in route.binder.parameters)


def _describe(route: RouteContract, details: str) -> str:
    text = f"`GET {route.path}`: a text/event-stream response."
    if _resumes(route):
        text += (
            " It resumes: send the id of the last event you have as the `Last-Event-ID` header "
            "(a browser's EventSource does when it reconnects) or as `lastEventId` in the query."
        )
    return f"{details}\n\n{text}".strip()


def _http_binding(route: RouteContract, components: Components) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in route.binder.parameters:
        if param.source == "query":
            properties[param.name] = with_default(components.schema(param.adapter), param)
            if param.required:
                required.append(param.name)
        elif param.source == "query_model":
            model = components.own(components.schema(param.adapter))
            properties.update(model.get("properties", {}))
            required += model.get("required", [])
        elif param.source == "last_event_id":
            properties["lastEventId"] = {
                "type": "string",
                "description": "where to resume (the Last-Event-ID header wins)",
            }
    query: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        query["required"] = required
    return {"method": "GET", "query": query, "bindingVersion": "0.3.0"}
