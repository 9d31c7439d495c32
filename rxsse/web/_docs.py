"""Serving the documents and the explorer on an app (``setup(app, ..., docs=True)``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from ._asyncapi import asyncapi_document
from ._openapi import openapi_document
from ._state import AppState


@dataclass(frozen=True)
class Docs:
    """What the API documents say about the app, and where they are served.

    Args:
        title: the API's name.
        version: the API's version (of the app, not of rxsse).
        description: a paragraph about the API.
        asyncapi_path: where the AsyncAPI 3.0 document is served.
        openapi_path: where the OpenAPI 3.1 document is served.
        explorer_path: where the stream explorer is served.

    Example:
        >>> Docs(title="Prices", version="2.1.0")  # doctest: +ELLIPSIS
        Docs(title='Prices', version='2.1.0', ...)
    """

    title: str = "rxsse application"
    version: str = "1.0.0"
    description: str = ""
    asyncapi_path: str = "/asyncapi.json"
    openapi_path: str = "/openapi.json"
    explorer_path: str = "/docs"

    def __post_init__(self) -> None:
        for name in ("asyncapi_path", "openapi_path", "explorer_path"):
            path = getattr(self, name)
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"Docs.{name} must be a path starting with '/', not {path!r}")


def install_docs(app: web.Application, state: AppState, docs: Docs) -> None:
    """Serve ``docs``'s documents and explorer on ``app`` (once: a second ``setup`` with docs
    adds its routes to the same documents).

    Raises:
        ValueError: a second ``setup`` asks for other documents than the first.
    """
    if state.docs is not None:
        if state.docs != docs:
            raise ValueError(f"docs are served already, as {state.docs!r}")
        return
    state.docs = docs
    explorer = _explorer_page(docs)

    async def serve_asyncapi(request: web.Request) -> web.Response:
        document = asyncapi_document(
            state.routes,
            title=docs.title,
            version=docs.version,
            description=docs.description,
            host=request.host,
            scheme=request.scheme,
        )
        return _json(document)

    async def serve_openapi(request: web.Request) -> web.Response:
        document = openapi_document(
            state.routes, title=docs.title, version=docs.version, description=docs.description
        )
        return _json(document)

    async def serve_explorer(request: web.Request) -> web.Response:
        return web.Response(body=explorer, content_type="text/html", charset="utf-8")

    app.router.add_get(docs.asyncapi_path, serve_asyncapi)
    app.router.add_get(docs.openapi_path, serve_openapi)
    app.router.add_get(docs.explorer_path, serve_explorer)


def _json(document: dict[str, Any]) -> web.Response:
    return web.Response(
        text=json.dumps(document, indent=2, ensure_ascii=False), content_type="application/json"
    )


def _explorer_page(docs: Docs) -> bytes:
    """The explorer, told where the documents are (as JSON that cannot close its script)."""
    page = resources.files(__package__).joinpath("explorer.html").read_text()
    paths = json.dumps({"asyncapi": docs.asyncapi_path, "openapi": docs.openapi_path})
    return page.replace("__PATHS__", paths.replace("<", "\\u003c")).encode()
