"""Guards: rejected requests subscribe nothing; a user's stream carries only their events."""

from __future__ import annotations

import json
from typing import Any

import pytest
import reactivex as rx
from aiohttp import web

import rxsse
from examples import private_notifications
from rxsse import EventBus
from tests.conftest import FrameReader, LiveSubscriptions, wait_until

ANN = {"Authorization": "Bearer token-ann"}
BOB = {"Authorization": "Bearer token-bob"}


@pytest.fixture
async def private(serve) -> Any:
    bus = EventBus()
    client = await serve(private_notifications.create_app(bus))
    return client, bus


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic token-ann"}]
)
async def test_unauthenticated_is_401_and_subscribes_nothing(private, headers):
    client, bus = private
    async with client.get("/me/notifications", headers=headers) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert "error" in await resp.json()
    assert bus.live_subscriptions == 0


@pytest.mark.parametrize(
    "query", ["access_token=t%C3%B6ken-ann", "access_token=%F0%9F%94%91", "access_token=%ED%A0%80"]
)
async def test_a_token_that_is_not_ascii_is_401_not_500(private, query):
    client, bus = private
    async with client.get(f"/me/notifications?{query}") as resp:
        assert resp.status == 401
        assert "error" in await resp.json()
    async with client.post(f"/notify?{query}", json={"to": "bob"}) as resp:
        assert resp.status == 401
    assert bus.live_subscriptions == 0


async def test_user_a_never_receives_user_bs_events(private):
    client, bus = private
    ann = await client.get("/me/notifications", headers=ANN)
    bob = await client.get("/me/notifications?access_token=token-bob")  # the EventSource way
    await wait_until(lambda: bus.live_subscriptions == 2)
    for sender, to in [(ANN, "bob"), (BOB, "ann"), (ANN, "bob"), (BOB, "bob"), (BOB, "ann")]:
        async with client.post("/notify", json={"to": to, "text": "x"}, headers=sender) as resp:
            assert resp.status == 200
    ann_frames = [json.loads(f.data) for f in await FrameReader(ann).take(2)]
    bob_frames = [json.loads(f.data) for f in await FrameReader(bob).take(3)]
    assert [f["to"] for f in ann_frames] == ["ann", "ann"]
    assert [f["to"] for f in bob_frames] == ["bob", "bob", "bob"]
    # the query parameter cannot override who you are
    spoof = await client.get("/me/notifications?user=bob", headers=ANN)
    async with client.post("/notify", json={"to": "bob", "text": "y"}, headers=BOB):
        pass
    async with client.post("/notify", json={"to": "ann", "text": "z"}, headers=BOB):
        pass
    assert json.loads((await FrameReader(spoof).next()).data)["text"] == "z"
    for resp in (ann, bob, spoof):
        resp.close()


async def test_posting_without_a_token_is_401(private):
    client, _ = private
    async with client.post("/notify", json={"to": "ann"}) as resp:
        assert resp.status == 401


async def test_guard_returning_false_is_403_and_guards_run_in_order(serve):
    calls: list[str] = []
    live = LiveSubscriptions()

    async def first(request: web.Request) -> None:
        calls.append("controller")

    def deny(request: web.Request) -> bool:
        calls.append("route")
        return request.query.get("let") == "in"

    @rxsse.controller("/g", guards=[first])
    class Guarded:
        @rxsse.sse("/s", guards=[deny])
        def s(self, n: int) -> rx.Observable[int]:
            return live.track(rx.of(n))

    app = web.Application()
    rxsse.setup(app, Guarded())
    client = await serve(app)
    async with client.get("/g/s?n=1") as resp:
        assert resp.status == 403
    async with client.get("/g/s?let=in&n=notanumber") as resp:
        assert resp.status == 400  # guards passed, then binding
    async with client.get("/g/s?let=in&n=5") as resp:
        assert [f.data for f in await FrameReader(resp).rest()] == ["5"]
    assert calls == ["controller", "route"] * 3
    assert live.total == 1  # only the admitted request subscribed
