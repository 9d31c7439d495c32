"""JSON Schemas for documents: each annotation's schema from its pydantic adapter, with the
models it refers to gathered under ``components/schemas`` (shared by every route)."""

from __future__ import annotations

import json
import re
from typing import Any, Final, Literal

from pydantic import TypeAdapter

from .. import _payload as payload
from ._binding import Parameter

_REFS: Final = "#/components/schemas/{model}"
_NOT_AN_ID: Final = re.compile(r"[^A-Za-z0-9._-]+")


def identifier(text: str) -> str:
    """``text`` as a key documents accept (letters, digits, ``.``, ``_``, ``-``)."""
    return _NOT_AN_ID.sub("_", text).strip("_") or "_"


def with_default(schema: dict[str, Any], param: Parameter) -> dict[str, Any]:
    """``schema`` with the parameter's default, when it has one JSON can say."""
    if param.required or param.default is None or "$ref" in schema:
        return schema
    try:
        default = json.loads(payload.dumps(param.default))
    except ValueError:
        return schema
    return {**schema, "default": default}


class Components:
    """The schemas of one document: what routes share goes under ``components/schemas``."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def schema(
        self,
        adapter: TypeAdapter[Any] | None,
        mode: Literal["validation", "serialization"] = "validation",
    ) -> dict[str, Any]:
        """The schema of what ``adapter`` accepts (``mode="validation"``: a request) or sends
        (``"serialization"``: an event, a response); ``{}`` (anything) without one."""
        if adapter is None:
            return {}
        schema = adapter.json_schema(mode=mode, ref_template=_REFS)
        for name, definition in schema.pop("$defs", {}).items():
            self.schemas.setdefault(name, definition)
        title = schema.get("title")
        if schema.get("type") == "object" and isinstance(title, str) and "properties" in schema:
            key = identifier(title)  # a model: shared, and named, in the document
            self.schemas.setdefault(key, schema)
            return {"$ref": _REFS.format(model=key)}
        return schema

    def own(self, schema: dict[str, Any]) -> dict[str, Any]:
        """A model's own schema when ``schema`` refers to it (else ``schema``)."""
        ref = schema.get("$ref")
        if isinstance(ref, str):
            found: dict[str, Any] = self.schemas.get(ref.rpartition("/")[2], {})
            return found
        return schema
