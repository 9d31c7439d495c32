"""The client examples of docs/client.md run as written (against the demo app where they need
one)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

CLIENT = Path(__file__).resolve().parents[2] / "docs" / "client.md"


def readme_block(heading: str) -> str:
    """The first Python block under ``heading`` of the client's page."""
    section = CLIENT.read_text()
    part = section.split(heading, 1)[1]
    return part.split("```python\n", 1)[1].split("```", 1)[0]


async def run(code: str) -> list[Any]:
    """Run ``code`` as a script would (a thread with no event loop); what it printed."""
    printed: list[Any] = []

    def record(*values: Any) -> None:
        printed.append(values if len(values) > 1 else values[0])

    namespace: dict[str, Any] = {"print": record, "__name__": "readme"}
    compiled = compile(code, "client.md", "exec", dont_inherit=True)
    await asyncio.to_thread(exec, compiled, namespace)  # our own docs' code
    return printed


async def test_the_readme_post_example_runs_as_written():
    printed = await run(readme_block("## Streams that answer a POST"))
    assert printed == [("comment:", "thinking"), "to", "be", "or", "not"]


async def test_the_readme_restart_example_runs_as_written(serve):
    from examples import demo

    server = await serve(demo.create_app())
    code = readme_block("## `restart()`").replace(
        "http://127.0.0.1:8080", server.base_url.rstrip("/")
    )
    *ids, connections = await run(code)
    assert ids == ["0", "1", "2", "3", "4"]  # each once: the restart resumed after id 1
    assert connections == 2
