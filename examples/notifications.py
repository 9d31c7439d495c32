"""Per-client filtering on the event bus: routes publish, each stream sees only its own events.

``POST /verify`` with ``{"email": "ann@example.com"}`` publishes on the topic
``user.verified``; every ``GET /notifications?email=...`` stream receives only the events for its
own email. A browser that reconnects sends ``Last-Event-ID`` and gets what it missed.

Run it: ``python -m examples.notifications``, then in one shell
``curl -N 'http://127.0.0.1:8080/notifications?email=ann@example.com'`` and in another
``curl -X POST -d '{"email": "ann@example.com"}' http://127.0.0.1:8080/verify``.
"""

from __future__ import annotations

from typing import Annotated, Any

import reactivex as rx
from aiohttp import web
from pydantic import BaseModel, StringConstraints
from reactivex import operators as ops

import rxsse
from rxsse import EventBus, MessageEvent, controller, post, sse

VERIFIED = "user.verified"

#: An email address, compared in lower case.
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, max_length=254, pattern=r"^\S+@\S+$"),
]


class Verification(BaseModel):
    """The body of ``POST /verify``."""

    email: Email


class Verified(BaseModel):
    """What a notifications stream carries."""

    email: str
    isVerified: bool


def _for(email: str) -> rx.typing.Predicate[MessageEvent[Any]]:
    """Keep the events of ``email``, and the ``reset`` that tells a client to reload."""
    return lambda event: event.type == "reset" or event.data["email"] == email


@controller()
class Notifications:
    """``POST /verify`` publishes; ``GET /notifications?email=`` filters per client."""

    @post("/verify")
    async def verify(self, body: Verification, bus: EventBus) -> dict[str, Any]:
        """Mark an email address as verified: its notifications stream gets the event."""
        event_id = await bus.publish(VERIFIED, Verified(email=body.email, isVerified=True))
        return {"ok": True, "email": body.email, "id": event_id}

    @sse("/notifications")
    def notifications(
        self, email: Email, bus: EventBus, last_event_id: str | None = None
    ) -> rx.Observable[MessageEvent[Verified]]:
        """The verifications of one email address, resumable."""
        # (Off the bus, data is the JSON read back: a dict with a Verified's fields.)
        return bus.on(VERIFIED, last_event_id=last_event_id).pipe(ops.filter(_for(email)))


def create_app(bus: EventBus | None = None) -> web.Application:
    """The notifications example on its own (on ``bus``, or an in-memory one)."""
    app = web.Application()
    rxsse.setup(app, Notifications(), bus=bus or EventBus())
    return app


if __name__ == "__main__":
    from examples._run import main

    main(create_app, "notifications example")
