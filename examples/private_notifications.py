"""Authenticated streams: each user's stream only ever carries that user's events.

A guard reads the bearer token (the ``Authorization: Bearer ...`` header, or an
``access_token`` query parameter, since a browser's ``EventSource`` cannot send headers) and
puts the user in the request; the handler filters by that user, not by a query parameter
anyone could change. ``POST /notify`` (authenticated) sends a note to another user.

Run it: ``python -m examples.private_notifications``, then
``curl -N -H 'Authorization: Bearer token-ann' http://127.0.0.1:8080/me/notifications`` and
``curl -X POST -H 'Authorization: Bearer token-bob' -d '{"to": "ann", "text": "hi"}'
http://127.0.0.1:8080/notify``.
"""

from __future__ import annotations

import hmac
from typing import Any

import reactivex as rx
from aiohttp import web
from reactivex import operators as ops

import rxsse
from rxsse import EventBus, MessageEvent, controller, post, sse

TOPIC = "notes"
# Stand-ins for a real identity provider: token -> user.
TOKENS = {"token-ann": "ann", "token-bob": "bob"}
# Where the guard leaves the user (a typed request key on aiohttp >= 3.13, a string before).
USER: Any = getattr(web, "RequestKey", lambda name, kind: name)("user", str)


async def bearer_auth(request: web.Request) -> None:
    """The guard: 401 without a valid token; otherwise the user is ``request[USER]``."""
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else request.query.get("access_token", "")
    # compare_digest takes str only when it is ASCII: compare bytes, whatever the client sent.
    given = token.encode("utf-8", "backslashreplace")
    user = next((u for t, u in TOKENS.items() if hmac.compare_digest(t.encode(), given)), None)
    if user is None:
        raise rxsse.json_error(
            401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    request[USER] = user


@controller(guards=[bearer_auth])
class PrivateNotifications:
    """Every route here needs a token; streams are keyed by the authenticated user."""

    @sse("/me/notifications")
    def mine(
        self, request: web.Request, bus: EventBus, last_event_id: str | None = None
    ) -> rx.Observable[MessageEvent]:
        me = request[USER]
        return bus.on(TOPIC, last_event_id=last_event_id).pipe(
            ops.filter(lambda e: e.type == "reset" or e.data["to"] == me)
        )

    @post("/notify")
    async def notify(self, request: web.Request, body: Any, bus: EventBus) -> dict[str, Any]:
        if not isinstance(body, dict) or body.get("to") not in TOKENS.values():
            raise rxsse.bad_request("'to' must name a known user", parameter="body")
        note = {"to": body["to"], "from": request[USER], "text": str(body.get("text", ""))}
        return {"id": await bus.publish(TOPIC, note)}


def create_app(bus: EventBus | None = None) -> web.Application:
    """The private notifications example on its own."""
    app = web.Application()
    rxsse.setup(app, PrivateNotifications(), bus=bus or EventBus())
    return app


if __name__ == "__main__":
    from examples._run import main

    main(create_app, "private notifications example")
