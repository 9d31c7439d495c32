"""A language-neutral conformance harness for SSE clients, after LaunchDarkly's
``sse-contract-tests``: it talks only HTTP, to a *test service* written for the client under
test, so any client in any language can be measured.

The test service protocol (JSON bodies):

- ``GET /``: ``{"name": ..., "capabilities": [...]}``: which optional cases apply.
- ``POST /``: start a client. ``{"streamUrl", "callbackUrl", "tag", "initialDelayMs",
  "readTimeoutMs"?, "lastEventId"?, "headers"?, "method"?, "body"?}``; answer 2xx with a
  ``Location`` header naming the client's resource.
- ``POST <location>`` ``{"command": "restart"}``: drop the connection and reconnect at once.
- ``DELETE <location>``: stop the client.
- The service reports what its client reads as ``POST <callbackUrl>/<n>`` (n = 1, 2, ...):
  ``{"kind": "event", "event": {"type", "data", "id"}}``, ``{"kind": "comment", "comment"}``,
  ``{"kind": "error", "comment"}`` (a connection failed: a network error or read timeout
  before a reconnect, or the error that ends the client) or ``{"kind": "end"}`` (the client
  stopped of itself: a 204). Errors a case does not expect are passed over.

The harness serves each case's stream itself (real aiohttp sockets, see ``stream_server``) and
plays the case's steps (``cases.json``): ``connect`` (await the client's next request and check
its method, headers, body), ``send`` (text, optionally ``repeat``-ed and ``chunk`` bytes per
write), ``end``, ``break``, ``answer-next`` (the next request gets this status, no body),
``command`` and ``expect`` (the next callbacks, in order: events, whose ``data`` may be
``{"repeat": text, "times": n, "lines": k}``, comments, ``{"error": true}``, ``{"end": true}``).

Run against a service: ``python -m tests.client.conformance.harness http://127.0.0.1:8000``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from tests.client.conformance.stream_server import Connection, StreamServer

CASES_FILE = Path(__file__).with_name("cases.json")
#: The capability of the cases every client must pass.
BASIC = "basic"
#: How long the harness waits for anything the client should do (a failure, not a measure).
DEADLINE = 10.0


@dataclass(frozen=True)
class Case:
    """One case: its capability (``basic`` or an optional one), name and steps."""

    capability: str
    name: str
    steps: list[dict[str, Any]]
    client: dict[str, Any]
    requires: tuple[str, ...] = ()
    start: str = "stream"  # the path the client is given (e.g. "redirect/307")

    @property
    def id(self) -> str:
        return f"{self.capability}: {self.name}"


def load_cases() -> list[Case]:
    """Every case of ``cases.json``, capability by capability."""
    by_capability = json.loads(CASES_FILE.read_text())
    return [
        Case(
            capability,
            case["name"],
            case["steps"],
            case.get("client", {}),
            tuple(case.get("requires", ())),
            case.get("start", "stream"),
        )
        for capability, cases in by_capability.items()
        for case in cases
    ]


class Callbacks:
    """The messages a service posted for one client, in the order of their numbers."""

    def __init__(self) -> None:
        self._messages: dict[int, dict[str, Any]] = {}
        self._next = 1
        self._arrived = asyncio.Condition()

    async def put(self, number: int, message: dict[str, Any]) -> None:
        async with self._arrived:
            self._messages[number] = message
            self._arrived.notify_all()

    async def next(self, *, errors: bool = False) -> dict[str, Any]:
        """The next message; errors are passed over unless ``errors``."""
        while True:
            async with asyncio.timeout(DEADLINE), self._arrived:
                await self._arrived.wait_for(lambda: self._next in self._messages)
                self._next += 1
                message = self._messages.pop(self._next - 1)
            if errors or message.get("kind") != "error":
                return message


class Harness:
    """Plays cases against one test service; serves their streams and callbacks itself."""

    def __init__(self, service_url: str, session: aiohttp.ClientSession) -> None:
        self.service_url = service_url.rstrip("/") + "/"
        self.session = session
        self.base_url = ""
        self._streams: dict[str, StreamServer] = {}
        self._callbacks: dict[str, Callbacks] = {}
        self._numbers = itertools.count(1)

    def app(self) -> web.Application:
        """The harness's own server: case streams and callbacks (10 MiB events included)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/cases/{case}/stream", self._stream)
        app.router.add_route("*", "/cases/{case}/redirect/{status}", self._redirect)
        app.router.add_post("/callbacks/{case}/{number}", self._callback)
        return app

    async def capabilities(self) -> set[str]:
        """The capabilities the service declares."""
        async with self.session.get(self.service_url) as response:
            response.raise_for_status()
            return set((await response.json()).get("capabilities", []))

    async def run(self, case: Case) -> None:
        """Play ``case``; an AssertionError (or a timeout) says how the client failed it."""
        key = str(next(self._numbers))
        streams = self._streams[key] = StreamServer()
        callbacks = self._callbacks[key] = Callbacks()
        parameters = {
            "streamUrl": f"{self.base_url}/cases/{key}/{case.start}",
            "callbackUrl": f"{self.base_url}/callbacks/{key}",
            "tag": case.id,
            "initialDelayMs": 0,
            **case.client,
        }
        async with self.session.post(self.service_url, json=parameters) as response:
            assert response.status < 300, f"the service refused the client: {response.status}"
            location = response.headers["Location"]
        client = str(response.url.join(URL(location)))
        connection: Connection | None = None
        try:
            for step in case.steps:
                connection = await self._step(step, streams, callbacks, client, connection)
        finally:
            streams.close()
            async with self.session.delete(client):
                pass
            del self._streams[key], self._callbacks[key]

    async def _step(
        self,
        step: dict[str, Any],
        streams: StreamServer,
        callbacks: Callbacks,
        client: str,
        connection: Connection | None,
    ) -> Connection | None:
        if "connect" in step:
            connection = await streams.next_connection(timeout=DEADLINE)
            _check_request(connection, step["connect"])
        elif "expect" in step:
            for expected in step["expect"]:
                _check_message(await callbacks.next(errors="error" in expected), expected)
        elif "answer-next" in step:
            streams.answer_next.append(step["answer-next"])
        elif "command" in step:
            async with self.session.post(client, json={"command": step["command"]}) as answer:
                assert answer.status < 300, f"the service refused {step['command']!r}"
        else:
            assert connection is not None, "no connection to write to: 'connect' first"
            if "send" in step:
                connection.send(step["send"] * step.get("repeat", 1), chunk=step.get("chunk"))
            elif "end" in step:
                connection.end()
            elif "break" in step:
                connection.break_()
            else:
                raise ValueError(f"unknown step {step}")
        return connection

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        return await self._streams[request.match_info["case"]].stream(request)

    async def _redirect(self, request: web.Request) -> web.Response:
        return await self._streams[request.match_info["case"]].redirect(request)

    async def _callback(self, request: web.Request) -> web.Response:
        callbacks = self._callbacks.get(request.match_info["case"])
        if callbacks is not None:  # (a late one, from a client being stopped, is dropped)
            await callbacks.put(int(request.match_info["number"]), await request.json())
        return web.Response(status=204)


def _check_request(connection: Connection, expected: dict[str, Any]) -> None:
    if "method" in expected:
        assert connection.method == expected["method"], f"method {connection.method}"
    if "body" in expected:
        assert connection.body.decode() == expected["body"], f"body {connection.body!r}"
    if "redirects" in expected:
        assert connection.redirects == expected["redirects"], f"{connection.redirects} redirects"
    if "path" in expected:
        assert connection.path.endswith(expected["path"]), f"path {connection.path}"
    for name, value in expected.get("headers", {}).items():
        got = connection.headers.get(name)
        if value is None:
            assert got is None, f"header {name}: {got!r}, expected none"
        elif isinstance(value, list):  # (any of these)
            assert got in value, f"header {name}: {got!r}, expected one of {value}"
        else:
            assert got == value, f"header {name}: {got!r}, expected {value!r}"


def _check_message(message: dict[str, Any], expected: dict[str, Any]) -> None:
    if "comment" in expected:
        assert message == {"kind": "comment", "comment": expected["comment"]}, message
        return
    for kind in ("error", "end"):
        if kind in expected:
            assert message.get("kind") == kind, f"expected an {kind}, got {message}"
            return
    want = {"type": "message", "id": "", **expected["event"]}
    if isinstance(want["data"], dict):  # a long one: {"repeat": text, "times": n, "lines": k}
        long = want["data"]
        want["data"] = "\n".join([long["repeat"] * long["times"]] * long.get("lines", 1))
    assert message.get("kind") == "event", f"expected an event, got {message}"
    event = message["event"]
    got = {
        "type": event.get("type") or "message",
        "data": event.get("data"),
        "id": event.get("id") or "",
    }
    if got != want:  # (a long data says only how it differs)
        short = {k: (v if len(str(v)) < 200 else f"{len(v)} chars") for k, v in got.items()}
        assert got == want, f"event {short}, expected another (type, id or data)"


@asynccontextmanager
async def harness(service_url: str) -> AsyncIterator[Harness]:
    """A harness serving on a free loopback port, for the service at ``service_url``."""
    async with aiohttp.ClientSession() as session:
        runner_harness = Harness(service_url, session)
        runner = web.AppRunner(runner_harness.app(), shutdown_timeout=1)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            runner_harness.base_url = f"http://{host}:{port}"
            yield runner_harness
        finally:
            await runner.cleanup()


async def measure(service_url: str) -> dict[str, tuple[int, int]]:
    """Run every case the service's capabilities allow; passed and run per capability."""
    results: dict[str, tuple[int, int]] = {}
    async with harness(service_url) as runner:
        capabilities = await runner.capabilities() | {BASIC}
        for case in load_cases():
            if not {case.capability, *case.requires} <= capabilities:
                continue
            passed, run = results.get(case.capability, (0, 0))
            try:
                await runner.run(case)
            except (AssertionError, TimeoutError) as exc:
                print(f"FAIL {case.id}: {exc!r}", file=sys.stderr)
            else:
                passed += 1
            results[case.capability] = (passed, run + 1)
    return results


if __name__ == "__main__":
    for capability, (passed, run) in asyncio.run(measure(sys.argv[1])).items():
        print(f"{capability:14} {passed}/{run}")
