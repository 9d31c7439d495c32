"""The API's documents, served: AsyncAPI 3.0 for the streams, OpenAPI 3.1 for the routes, and a
live explorer (``setup(app, ..., docs=True)``)."""

from __future__ import annotations

from .serving import Docs, install_docs

__all__ = ["Docs", "install_docs"]
