"""A chat whose answers survive dropped connections: a resumable producer per answer.

``POST /chat`` starts a simulated model that streams an answer's tokens at a realistic pace,
and answers ``202 {"id": ..., "stream": "/chat/<id>/stream"}``. The model runs on its own,
whoever listens: its tokens go to the event bus's log, so a browser that drops (a mobile
network, a sleeping tab, a deploy) reconnects with ``Last-Event-ID`` — to this process or any
other sharing the bus's Redis — and continues at the next token. The answer ends with an
``end`` event; a reconnect after it gets 204. ``DELETE /chat/<id>`` stops it; nobody reading it
for a minute stops it too.

``GET /chat`` is the page: ask, watch the answer arrive, press "cut the connection" (the
server drops the stream's connection, as a network would) and see the browser resume at the
next token; the page also shows how many people are watching (presence).

Run it: ``python -m examples.chat`` (or ``make demo``), then open http://127.0.0.1:8080/chat.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import reactivex as rx
from aiohttp import web
from pydantic import BaseModel, Field, StringConstraints
from reactivex import operators as ops

import rxsse
from rxsse import EventBus, MessageEvent, Producers, controller, delete, get, post, sse

PAGE = Path(__file__).with_name("static") / "chat.html"
#: The browser reconnects this soon after a drop (milliseconds).
RECONNECT_MS = 300
#: Where the visitor guard leaves who is watching (a typed key on aiohttp >= 3.13).
VISITOR: Any = getattr(web, "RequestKey", lambda name, kind: name)("visitor", str)
_VISITOR = re.compile(r"[A-Za-z0-9_-]{1,64}")
_WORDS = (
    "streams",
    "events",
    "resume",
    "tokens",
    "server",
    "client",
    "browser",
    "connection",
    "answer",
    "model",
    "network",
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "that",
    "it",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "each",
    "every",
    "no",
    "one",
)

AnswerKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")]


class Prompt(BaseModel):
    """What ``POST /chat`` takes."""

    prompt: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    tokens: Annotated[int, Field(ge=1, le=5000)] = 300  #: how long the answer is
    pace: Annotated[float, Field(ge=0.0, le=1.0)] = 0.03  #: seconds between tokens


def answer(prompt: str, tokens: int) -> list[str]:
    """The simulated model's answer to ``prompt``: ``tokens`` tokens, the same every time."""
    rng = random.Random(f"{tokens}:{prompt}")
    out = []
    for n in range(tokens):
        word = rng.choice(_WORDS)
        out.append(word.capitalize() if n == 0 or out[-1].endswith(". ") else " " + word)
        if rng.random() < 0.08:
            out[-1] += ". "
    return out


async def speak(prompt: str, tokens: int, pace: float) -> AsyncIterator[str]:
    """The answer's tokens at the model's pace (each wait a little longer or shorter)."""
    rng = random.Random(prompt)
    for token in answer(prompt, tokens):
        await asyncio.sleep(pace * rng.uniform(0.5, 1.5))
        yield token


async def visitor_guard(request: web.Request) -> None:
    """Put who is watching on the request (a real app's auth guard puts its user there)."""
    visitor = request.query.get("visitor", "")
    if not _VISITOR.fullmatch(visitor):
        raise rxsse.json_error(400, "a visitor id (letters, digits, '-', '_') is required")
    request[VISITOR] = visitor


@controller("/chat")
class Chat:
    """Answers as resumable producers, and who is watching."""

    def __init__(self, bus: EventBus, *, idle_timeout: float = 60.0) -> None:
        self.producers = Producers(bus, prefix="chat", idle_timeout=idle_timeout)
        self._open: dict[str, dict[int, web.Request]] = {}  # this process's streams, by answer

    @get()
    async def page(self) -> web.FileResponse:
        """The chat page."""
        return web.FileResponse(PAGE)

    @post()
    async def ask(self, body: Prompt) -> web.Response:
        """Start an answer; 202 with its id and stream."""
        key = await self.producers.start(speak(body.prompt, body.tokens, body.pace))
        started = {"id": key, "stream": f"/chat/{key}/stream"}
        return web.json_response(started, status=202)

    @sse("/{key}/stream")
    async def stream(
        self, key: AnswerKey, request: web.Request, last_event_id: str | None = None
    ) -> rx.Observable[MessageEvent] | web.Response:
        """An answer's tokens from its start, or after ``Last-Event-ID``; then ``end``."""
        output = await self.producers.stream(key, last_event_id=last_event_id)
        if isinstance(output, web.Response):
            return output  # 204: the client has the end already
        streams = self._open.setdefault(key, {})
        streams[id(request)] = request

        def closed() -> None:
            streams.pop(id(request), None)
            if not streams:
                self._open.pop(key, None)

        return rx.concat(rx.of(MessageEvent(retry=RECONNECT_MS)), output).pipe(
            ops.finally_action(closed)
        )

    @post("/{key}/cut")
    async def cut(self, key: AnswerKey) -> dict[str, int]:
        """Drop the connections of ``key``'s streams in this process, as a network would."""
        requests = list(self._open.get(key, {}).values())
        for request in requests:
            if request.transport is not None:
                request.transport.abort()
        return {"cut": len(requests)}

    @delete("/{key}")
    async def cancel(self, key: AnswerKey) -> dict[str, bool]:
        """Stop an answer (it ends with ``{"reason": "cancelled"}``)."""
        return {"cancelled": await self.producers.cancel(key)}

    @sse("/watching", guards=[visitor_guard])
    def watching(self, request: web.Request, bus: EventBus) -> rx.Observable[MessageEvent]:
        """Who has the chat page open (in every process): presence events, this visitor
        counted while it watches."""
        return bus.presence("chat.page", member=request[VISITOR]).pipe(
            ops.map(lambda change: MessageEvent(change.as_dict(), type="presence"))
        )

    async def on_shutdown(self) -> None:
        """End the answers running here (``{"reason": "shutdown"}``) while the bus is open."""
        await self.producers.close()


def create_app(bus: EventBus | None = None) -> web.Application:
    """The chat on its own (a fresh in-memory bus, whose log holds 10,000 tokens a topic)."""
    bus = bus or EventBus(history=10_000)
    app = web.Application()
    rxsse.setup(app, Chat(bus), options=rxsse.StreamOptions(heartbeat=15.0), bus=bus)
    return app


if __name__ == "__main__":
    from examples._run import main

    main(create_app, "chat example")
