"""MkDocs hooks for rxsse's site.

- The repository's files that the pages link to (``../examples/ticks.py``,
  ``../ARCHITECTURE.md``, ``../bench/results/bench.png``) are published with the site, under
  ``repository/``, and the links follow them: the pages read the same in a clone and on the
  site. A link to a file that does not exist is left as it is, for ``mkdocs build --strict``
  to refuse.
- The docstrings' cross-reference roles (``:class:`~rxsse.StreamOptions```), which the API
  reference would show as they are written, are shown as the code they name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = "repository/"
# A link from a page of docs/ to a file above it: ](../path) or ](../path#anchor).
LINK = re.compile(r"\]\(\.\./([^)#\s]+)(#[^)\s]*)?\)")
# A docstring's role as the API reference renders it: :func:<code>rxsse.stream</code>.
ROLE = re.compile(r":(?:attr|class|data|exc|func|meth|mod|obj):<code>(~?)([^<]*)</code>")


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    """Add each repository file a page links to, once."""
    for page in Path(config.docs_dir).glob("*.md"):
        for target, _anchor in LINK.findall(page.read_text(encoding="utf-8")):
            source = ROOT / target
            uri = PUBLISHED + target
            if source.is_file() and files.get_file_from_path(uri) is None:
                files.append(File.generated(config, uri, abs_src_path=str(source)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Point the page's links to repository files at their published copies."""

    def follow(link: re.Match[str]) -> str:
        target, anchor = link[1], link[2] or ""
        if files.get_file_from_path(PUBLISHED + target) is None:
            return link[0]
        return f"]({PUBLISHED}{target}{anchor})"

    return LINK.sub(follow, markdown)


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Show each docstring role as the code it names (``~a.b.C``: ``C``)."""

    def code(role: re.Match[str]) -> str:
        short, name = role[1], role[2]
        return f"<code>{name.rpartition('.')[2] if short else name}</code>"

    return ROLE.sub(code, html)
