"""Stream limits: over the limit is a 503 with Retry-After, and nothing is subscribed."""

from __future__ import annotations

import pytest
import reactivex as rx
from aiohttp import web

import rxsse
from tests.conftest import LiveSubscriptions, wait_until


async def test_route_and_app_limits_answer_503_with_retry_after(serve):
    live = LiveSubscriptions()

    @rxsse.controller()
    class Limited:
        @rxsse.sse("/one", max_streams=2)
        def one(self) -> rx.Observable[int]:
            return live.track(rx.never())

        @rxsse.sse("/two")
        def two(self) -> rx.Observable[int]:
            return live.track(rx.never())

    app = web.Application()
    rxsse.setup(app, Limited(), max_streams=3, retry_after=7)
    client = await serve(app)
    first, second = await client.get("/one"), await client.get("/one")
    async with client.get("/one") as resp:  # the route's limit
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "7"
        assert "error" in await resp.json()
    third = await client.get("/two")
    async with client.get("/two") as resp:  # the app's limit
        assert resp.status == 503
    assert live.total == 3
    assert rxsse.metrics(app).rejected == 2
    first.close()
    await wait_until(lambda: live.live == 2)
    await wait_until(lambda: rxsse.metrics(app).open_streams == 2)
    fourth = await client.get("/one")  # a slot is free again
    assert fourth.status == 200
    for resp in (second, third, fourth):
        resp.close()


async def test_rejected_guard_gives_its_slot_back(serve):
    async def deny(request: web.Request) -> bool:
        return False

    @rxsse.sse("/guarded", guards=[deny], max_streams=1)
    def guarded() -> rx.Observable[int]:
        return rx.never()

    app = web.Application()
    rxsse.setup(app, guarded)
    client = await serve(app)
    for _ in range(3):
        async with client.get("/guarded") as resp:
            assert resp.status == 403  # never 503: the failed request left no slot taken


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_bad_limits_are_rejected(bad):
    with pytest.raises(ValueError, match="max_streams"):
        rxsse.sse("/x", max_streams=bad)
