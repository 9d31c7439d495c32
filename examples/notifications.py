"""Per-client filtering: an emitter that routes publish to, and streams that see only their own.

``POST /verify`` with ``{"email": "ann@example.com"}`` emits ``user.verified``; every
``GET /notifications?email=...`` stream receives only the events for its own email.

Run it: ``python -m examples.notifications``, then in one shell
``curl -N 'http://127.0.0.1:8080/notifications?email=ann@example.com'`` and in another
``curl -X POST -d '{"email": "ann@example.com"}' http://127.0.0.1:8080/verify``.
"""

from __future__ import annotations

from typing import Any

import reactivex as rx
from aiohttp import web
from reactivex import operators as ops
from reactivex.subject import Subject

import rxsse
from rxsse import MessageEvent, controller, post, sse

VERIFIED = "user.verified"


class Emitter:
    """EventEmitter-style publish/subscribe over one Subject: ``emit(name, payload)``,
    ``on(name)`` -> Observable of the payloads. Streams that unsubscribe leave nothing behind."""

    def __init__(self) -> None:
        self._events: Subject[tuple[str, Any]] = Subject()

    def emit(self, name: str, payload: Any) -> None:
        """Send ``payload`` to everyone listening to ``name`` now."""
        self._events.on_next((name, payload))

    def on(self, name: str) -> rx.Observable[Any]:
        """The payloads emitted under ``name`` from now on."""
        return self._events.pipe(
            ops.filter(lambda event: event[0] == name),
            ops.map(lambda event: event[1]),
        )


def _email(value: Any, parameter: str = "email") -> str:
    if not isinstance(value, str) or "@" not in value or len(value) > 254:
        raise rxsse.bad_request("a valid email address is required", parameter=parameter)
    return value.strip().lower()


@controller()
class Notifications:
    """``POST /verify`` publishes; ``GET /notifications?email=`` filters per client."""

    def __init__(self, emitter: Emitter | None = None) -> None:
        self.emitter = emitter or Emitter()

    @post("/verify")
    def verify(self, body: Any) -> dict[str, Any]:
        email = _email(body.get("email") if isinstance(body, dict) else None)
        self.emitter.emit(VERIFIED, {"email": email, "isVerified": True})
        return {"ok": True, "email": email}

    @sse("/notifications")
    def notifications(self, email: str) -> rx.Observable[MessageEvent]:
        mine = _email(email)
        return self.emitter.on(VERIFIED).pipe(
            ops.filter(lambda payload: payload["email"] == mine),
            ops.map(MessageEvent),
        )


def create_app() -> web.Application:
    """The notifications example on its own."""
    app = web.Application()
    rxsse.setup(app, Notifications())
    return app


if __name__ == "__main__":
    from examples._run import main

    main(create_app, "notifications example")
