"""What the web layer keeps for one application, under one key: the routes ``setup`` mounted,
the bus it started, the CORS policy and the resources it covers, the documents' settings.

(The streams of the app, their counters and quota are the streaming layer's own state.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from aiohttp import hdrs, web

from ._contracts import RouteContract
from ._cors import CORS, headers_hook, preflight_handler


@dataclass(eq=False)
class AppState:
    """rxsse's web state of one application (``app[STATE]``).

    Attributes:
        routes: every route ``setup`` mounted, as :class:`RouteContract`: what the API
            documents describe.
        bus: the event bus ``setup`` started with the app (if any).
        cors: the CORS policy of the app's rxsse routes (if any).
        cors_resources: the resources that policy covers (every ``setup``'s).
        docs: the documents' settings, once served (a :class:`rxsse.Docs`).
    """

    routes: list[RouteContract] = field(default_factory=list)
    bus: object | None = None
    cors: CORS | None = None
    cors_resources: set[web.Resource] = field(default_factory=set)
    docs: object | None = None

    def install_cors(
        self, app: web.Application, cors: CORS | None, resources: Iterable[web.Resource]
    ) -> None:
        """Record the resources ``setup`` registered; once the app has a policy (given now or
        by an earlier ``setup``), each of them answers preflights and its responses get the
        headers.

        Raises:
            ValueError: when the app was already given a different policy.
        """
        known = self.cors_resources
        known.update(resources)
        policy = self.cors
        if cors is not None and policy is None:
            self.cors = policy = cors
            app.on_response_prepare.append(headers_hook(cors, known))
        elif cors is not None and cors != policy:
            raise ValueError("this app already has another CORS policy: give cors= to setup() once")
        if policy is None:
            return
        for resource in known:
            if all(route.method != hdrs.METH_OPTIONS for route in resource):
                resource.add_route(hdrs.METH_OPTIONS, preflight_handler(policy, resource, known))


#: rxsse's web key in an application.
STATE: Final = web.AppKey("rxsse", AppState)


def app_state(app: web.Application) -> AppState:
    """``app``'s web state, created on first use (by ``setup``)."""
    state = app.get(STATE)
    if state is None:
        state = app[STATE] = AppState()
    return state
