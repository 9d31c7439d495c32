"""The OpenAPI 3.1 document of an app's routes.

Plain routes are described as any HTTP API is: parameters, JSON body, JSON answer. A stream is a
``GET`` whose ``200`` answer is ``text/event-stream``; what its events carry is in the answer's
``x-itemSchema`` (one schema per event type: its ``event`` field, its ``data`` and its ``id``),
as OpenAPI 3.2 will say with ``itemSchema``. Every route that takes parameters may answer 400
with the errors listed (``Problem``s).
"""

from __future__ import annotations

from typing import Any

from ._binding import Parameter
from ._contracts import MESSAGE, RouteContract
from ._schemas import Components, identifier, with_default

_ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "parameter": {"type": "string"},
        "expected": {"type": "string"},
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}},
    },
    "required": ["error"],
}
_PROBLEM = {
    "type": "object",
    "properties": {
        "location": {"enum": ["path", "query", "header", "body"]},
        "parameter": {"type": "string"},
        "message": {"type": "string"},
    },
    "required": ["location", "parameter", "message"],
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_document(
    routes: list[RouteContract], *, title: str, version: str, description: str
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``."""
    components = Components()
    components.schemas.update({"Error": _ERROR, "Problem": _PROBLEM})
    paths: dict[str, Any] = {}
    seen: set[str] = set()
    for route in routes:
        operation_id = identifier(route.name)
        while operation_id in seen:
            operation_id += "_"
        seen.add(operation_id)
        summary, _, details = route.doc.partition("\n\n")
        operation: dict[str, Any] = {"operationId": operation_id}
        if summary:
            operation["summary"] = summary
        if details:
            operation["description"] = details
        operation["parameters"] = [
            spec for param in route.binder.parameters for spec in _parameters(param, components)
        ]
        bodies = [p for p in route.binder.parameters if p.source == "body"]
        if bodies:
            operation["requestBody"] = {
                "required": bodies[0].required,
                "content": {"application/json": {"schema": components.schema(bodies[0].adapter)}},
            }
        operation["responses"] = _responses(route, components)
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {"schemas": components.schemas},
    }


def _parameters(param: Parameter, components: Components) -> list[dict[str, Any]]:
    if param.source in ("path", "query"):
        schema = with_default(components.schema(param.adapter), param)
        return [
            {
                "name": param.name,
                "in": param.source,
                "required": param.source == "path" or param.required,
                "schema": schema,
                **({"style": "form", "explode": True} if param.many else {}),
            }
        ]
    if param.source == "last_event_id":
        resume = "the id of the last event the client has: the stream resumes after it"
        return [
            {
                "name": "Last-Event-ID",
                "in": "header",
                "schema": {"type": "string"},
                "description": resume,
            },
            {
                "name": "lastEventId",
                "in": "query",
                "schema": {"type": "string"},
                "description": resume + " (the header wins)",
            },
        ]
    if param.source == "query_model":
        own = components.own(components.schema(param.adapter))
        required = set(own.get("required", []))
        return [
            {"name": name, "in": "query", "required": name in required, "schema": schema}
            for name, schema in own.get("properties", {}).items()
        ]
    return []


def _responses(route: RouteContract, components: Components) -> dict[str, Any]:
    takes_input = any(p.source != "provided" for p in route.binder.parameters)
    responses: dict[str, Any] = {}
    if route.kind == "sse":
        responses["200"] = {
            "description": "an event stream; it ends when the server's source completes",
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "x-itemSchema": {"oneOf": _items(route, components)},
                }
            },
        }
        responses["204"] = {"description": "the stream failed too often in a row: stop"}
        responses["503"] = _error("too many streams are open: retry after Retry-After")
    elif route.returns is not None:
        schema = components.schema(route.returns, "serialization")
        responses["200"] = {
            "description": "the answer",
            "content": {"application/json": {"schema": schema}},
        }
    else:
        responses["200"] = {"description": "the answer"}
    if takes_input:
        responses["400"] = _error("a parameter or the body is missing or invalid (all listed)")
    if route.guarded:
        responses["403"] = _error("a guard refused the request")
    return responses


def _items(route: RouteContract, components: Components) -> list[dict[str, Any]]:
    """One schema per event type: the event as a client's parser gives it."""
    events = [(e.type, components.schema(e.adapter, "serialization")) for e in route.events]
    if not events:
        events.append((MESSAGE, {}))
    items = []
    for kind, data in events:
        properties: dict[str, Any] = {"data": data, "id": {"type": "string"}}
        if kind != MESSAGE:
            properties["event"] = {"const": kind}
        items.append({"title": kind, "type": "object", "properties": properties})
    return items
