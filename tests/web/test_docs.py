"""The API documents, checked by the official validators (``@asyncapi/parser`` from npm,
``openapi-spec-validator`` from PyPI), and the stream explorer driven in Chromium."""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import pytest
import reactivex as rx
from aiohttp import web
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from pydantic import BaseModel
from reactivex import operators as ops

import rxsse
from examples import demo
from rxsse import Docs, MessageEvent
from tests.conftest import ROOT, FrameReader, missing

VALIDATOR = ROOT / "tests" / "clients" / "validate_asyncapi.mjs"
OUTPUT = ROOT / "test-output"


async def asyncapi_verdict(document: dict[str, Any]) -> dict[str, Any]:
    """What the official AsyncAPI parser says of ``document``."""
    node = shutil.which("node")
    if node is None or not (VALIDATOR.parent / "node_modules" / "@asyncapi" / "parser").exists():
        missing("node and tests/clients/node_modules are needed (make test installs them)")
    process = await asyncio.create_subprocess_exec(
        node,
        str(VALIDATOR),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=VALIDATOR.parent,
    )
    out, _ = await asyncio.wait_for(process.communicate(json.dumps(document).encode()), 60)
    verdict: dict[str, Any] = json.loads(out)
    return verdict


@pytest.fixture
async def demo_docs(serve) -> Any:
    """The demo app (served as ``make demo`` serves it) and its two documents."""
    server = await serve(demo.create_app())
    async with server.get("/asyncapi.json") as response:
        assert response.status == 200
        asyncapi = await response.json()
    async with server.get("/openapi.json") as response:
        assert response.status == 200
        openapi = await response.json()
    return server, asyncapi, openapi


async def test_the_asyncapi_document_passes_the_official_parser(demo_docs):
    _, asyncapi, _ = demo_docs
    verdict = await asyncapi_verdict(asyncapi)
    errors = [d for d in verdict["diagnostics"] if d["severity"] == "error"]
    assert verdict["valid"] and errors == []
    warnings = [d for d in verdict["diagnostics"] if d["severity"] == "warning"]
    assert warnings == []


async def test_an_invalid_asyncapi_document_is_refused_by_the_parser(demo_docs):
    # The validator can fail: a channel whose address is a number is not AsyncAPI.
    _, asyncapi, _ = demo_docs
    broken = json.loads(json.dumps(asyncapi))
    next(iter(broken["channels"].values()))["address"] = 42
    verdict = await asyncapi_verdict(broken)
    assert any(d["severity"] == "error" for d in verdict["diagnostics"])


async def test_the_openapi_document_passes_the_official_validator(demo_docs):
    _, _, openapi = demo_docs
    validate(openapi)  # raises on any error
    assert openapi["openapi"] == "3.1.0"
    broken = json.loads(json.dumps(openapi))  # the validator can fail: a path must start with /
    broken["paths"]["ticks"] = broken["paths"].pop("/ticks")
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


async def test_the_documents_describe_every_stream_and_route(demo_docs):
    _, asyncapi, openapi = demo_docs
    addresses = {c["address"] for c in asyncapi["channels"].values()}
    assert {"/ticks", "/tasks/{task_id}/progress", "/notifications"} <= addresses
    channels = asyncapi["channels"]
    progress = next(c for c in channels.values() if c["address"] == "/tasks/{task_id}/progress")
    assert "Last-Event-ID" in progress["description"]
    assert "task_id" in progress["parameters"]
    messages = asyncapi["components"]["messages"]
    step = messages[progress["messages"]["message"]["$ref"].rpartition("/")[2]]
    schema = asyncapi["components"]["schemas"][step["payload"]["$ref"].rpartition("/")[2]]
    assert schema["properties"]["progress"] == {
        "maximum": 100,
        "minimum": 0,
        "title": "Progress",
        "type": "integer",
    }
    ticks_id = next(k for k, c in channels.items() if c["address"] == "/ticks")
    operations = asyncapi["operations"].values()
    ticks = next(o for o in operations if o["channel"]["$ref"].endswith(ticks_id))
    assert ticks["action"] == "send"
    assert ticks["bindings"]["http"]["query"]["properties"]["period"]["type"] == "number"
    stream = openapi["paths"]["/ticks"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in stream
    verify = openapi["paths"]["/verify"]["post"]
    body = verify["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Verification"}
    assert "400" in verify["responses"]


STREAMS = ROOT / "docs" / "streams.md"


def readme_typed_example() -> str:
    """The code block of the "Typed streams" section of docs/streams.md, as written."""
    section = STREAMS.read_text().split("## Typed streams", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


async def test_the_readmes_typed_streams_example_runs_as_written(serve):
    namespace: dict[str, Any] = {"__name__": "readme_typed"}
    # As written: not under this module's `from __future__ import annotations`.
    code = compile(readme_typed_example(), "streams.md", "exec", dont_inherit=True)
    exec(code, namespace)  # our own docs' code
    server = await serve(namespace["app"])
    async with server.get("/prices/ACME") as response:
        frame = await FrameReader(response).next()
    assert frame is not None and json.loads(frame.data or "")["price"] == "12.50"
    async with server.get("/book") as response:
        frame = await FrameReader(response).next()
    assert frame is not None and frame.get("event") == "removed"
    async with server.get("/asyncapi.json") as response:
        document = await response.json()
    assert document["info"]["title"] == "Prices"
    names = {m["name"] for m in document["components"]["messages"].values()}
    assert {"message", "update", "removed", "stream-error"} <= names
    assert (await asyncapi_verdict(document))["valid"]


def test_docs_settings_are_checked():
    with pytest.raises(ValueError, match="starting with '/'"):
        Docs(explorer_path="docs")


async def test_documents_are_served_only_when_asked(serve):
    @rxsse.sse("/quiet")
    def quiet() -> rx.Observable[int]:
        return rx.of(1)

    app = web.Application()
    rxsse.setup(app, quiet)
    server = await serve(app)
    async with server.get("/asyncapi.json") as response:
        assert response.status == 404


# -- the explorer, in Chromium ---------------------------------------------------------------------


class Quote(BaseModel):
    symbol: str
    n: int


def explorer_app() -> web.Application:
    """A typed, resumable stream of numbered quotes, next to the demo's routes."""

    @rxsse.sse("/quotes/{symbol}", events={"quote": Quote})
    def quotes(
        symbol: str, every: float = 0.05, last_event_id: int | None = None
    ) -> rx.Observable[MessageEvent[Quote]]:
        """Quotes of one symbol, numbered, resumable."""
        start = 0 if last_event_id is None else last_event_id + 1
        return rx.interval(every).pipe(
            ops.map(lambda n: n + start),
            ops.map(lambda n: MessageEvent(Quote(symbol=symbol, n=n), id=n, type="quote")),
            ops.take(5),
        )

    app = demo.create_app()
    rxsse.setup(app, quotes)
    return app


async def test_the_explorer_drives_a_stream_in_chromium(browser, serve):
    server = await serve(explorer_app())
    page = await browser.new_page(viewport={"width": 1200, "height": 1100})
    try:
        await page.goto(server.url("/docs"))
        await page.wait_for_selector("body[data-ready=true]")
        stream = page.locator('section[data-stream="/quotes/{symbol}"]')
        await stream.locator('input[name="symbol"]').fill("ACME")
        await stream.locator("button.open").click()
        await stream.locator("li.event").nth(4).wait_for()
        ids = (await stream.locator("li.event .id").all_text_contents())[:5]
        types = await stream.locator("li.event .type").all_text_contents()
        data = [json.loads(t) for t in await stream.locator("li.event .data").all_text_contents()]
        assert ids == ["0", "1", "2", "3", "4"]
        assert set(types) == {"quote"}
        assert data[0] == {"symbol": "ACME", "n": 0}
        # Resume: the explorer keeps the last id; open again from an earlier one.
        await stream.locator("button.stop").click()
        await stream.locator("input.last-event-id").fill("2")
        await stream.locator("button.open").click()
        await stream.locator("li.event").nth(4).wait_for()
        ids = (await stream.locator("li.event .id").all_text_contents())[:5]
        assert ids == ["3", "4", "5", "6", "7"]
        await stream.locator("button.stop").click()
        assert await page.locator('section[data-route="POST /verify"]').count() == 1
        OUTPUT.mkdir(exist_ok=True)
        await page.screenshot(path=str(OUTPUT / "explorer.png"), full_page=True)
        await stream.screenshot(path=str(OUTPUT / "explorer-stream.png"))  # (docs/explorer.png)
    finally:
        await page.close()
