"""Deployed as docs/deploying.md says: an rxsse app behind Debian's nginx with TLS and HTTP/2,
run from ``examples/deploy/nginx.conf`` as shipped (ports, certificate and times changed), with a
certificate the test makes. Over HTTP/2 one page holds 12 EventSources and still fetches; over
HTTP/1.1 straight to the app the same page gets 6, which is what the proxy buys. An idle stream
opens at once behind the proxy, outlives a proxy read timeout just above its heartbeat, and
slow-loris clients are closed by the proxy without reaching the app."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import reactivex as rx
import trustme
from aiohttp import web
from reactivex import operators as ops

import rxsse
from rxsse import MessageEvent
from tests.conftest import ROOT, FrameReader, LiveSubscriptions, free_port, wait_until
from tests.nginx import Nginx

DEPLOY = ROOT / "examples" / "deploy" / "nginx.conf"
HEARTBEAT = 1.0
PAGE = "<!doctype html><title>rxsse</title>"


def deploy_config(
    *, listen: int, upstream: str, certificate: Path, key: Path, header: str, read: str
) -> str:
    """``examples/deploy/nginx.conf`` pointed at the test's ports and certificate, with its
    timeouts."""
    config = DEPLOY.read_text()
    replacements = {
        r"listen 443 ssl http2;": f"listen 127.0.0.1:{listen} ssl http2;",
        r"server 127\.0\.0\.1:8080;": f"server {upstream};",
        r"ssl_certificate +\S+;": f"ssl_certificate {certificate};",
        r"ssl_certificate_key +\S+;": f"ssl_certificate_key {key};",
        r"client_header_timeout \d+s;": f"client_header_timeout {header};",
        r"proxy_read_timeout \d+s;": f"proxy_read_timeout {read};",
    }
    for pattern, value in replacements.items():
        config, count = re.subn(pattern, value, config)
        assert count == 1, f"{DEPLOY.name} has no {pattern!r}"
    return config


@dataclass
class Deployment:
    """The app (``direct``) and nginx in front of it (``proxied``, https), the live
    subscriptions of the app's streams, and when ``/stubborn`` was opened."""

    direct: str
    proxied: str
    ticks: LiveSubscriptions
    idle: LiveSubscriptions
    opens: list[float]


def deployed_app(
    ticks: LiveSubscriptions, idle: LiveSubscriptions, opens: list[float]
) -> web.Application:
    @rxsse.sse("/stubborn")
    def stubborn() -> rx.Observable[MessageEvent]:
        """Sends ids 0 and 1, then fails: every time, whatever the client had (``opens``: when
        each attempt came, loop time)."""
        opens.append(asyncio.get_running_loop().time())
        events = rx.of(MessageEvent("a", id="0"), MessageEvent("b", id="1"))
        return events.pipe(ops.concat(rx.throw(RuntimeError("fails the same way each time"))))

    @rxsse.sse("/ticks")
    def tick_stream(i: int = 0) -> rx.Observable[int]:
        return ticks.track(rx.interval(0.2))

    @rxsse.sse("/idle")
    def idle_stream() -> rx.Observable[int]:
        return idle.track(rx.never())

    @rxsse.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    rxsse.setup(
        app,
        tick_stream,
        idle_stream,
        stubborn,
        ping,
        options=rxsse.StreamOptions(heartbeat=HEARTBEAT),
    )
    return app


@pytest.fixture
async def deploy(serve: Any, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Deployment]]]:
    """``await deploy(header="1s", read="60s")``: the test app behind nginx."""
    started: list[Nginx] = []
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    certificate.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    certificate.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))

    async def start(*, header: str = "10s", read: str = "60s") -> Deployment:
        ticks, idle, opens = LiveSubscriptions(), LiveSubscriptions(), []
        server = await serve(deployed_app(ticks, idle, opens))
        port = free_port()
        config = deploy_config(
            listen=port,
            upstream=server.base_url.split("//", 1)[1],
            certificate=tmp_path / "cert.pem",
            key=tmp_path / "key.pem",
            header=header,
            read=read,
        )
        nginx = Nginx(tmp_path, config, port)
        await asyncio.to_thread(nginx.start)
        started.append(nginx)
        return Deployment(server.base_url, f"https://127.0.0.1:{port}", ticks, idle, opens)

    yield start
    for nginx in started:
        await asyncio.to_thread(nginx.stop)


def insecure() -> ssl.SSLContext:
    """The test's own certificate, not checked."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# -- in Chromium ------------------------------------------------------------------------------

# Opens 12 EventSources on one page (one idle, 11 of ticks); says how many opened, how soon the
# idle one did, how many tick streams got an event, and whether a fetch of the same origin
# answered meanwhile. The timeouts only bound the waits.
OPEN_12_STREAMS = """async (waitMs) => {
  const until = (ms, value) => new Promise(r => setTimeout(() => r(value), ms));
  const t0 = performance.now();
  const idle = new EventSource("/idle");
  const ticks = Array.from({length: 11}, (_, i) => new EventSource(`/ticks?i=${i}`));
  const opened = [idle, ...ticks].map(s => new Promise(r => {
    s.onopen = () => r(performance.now() - t0);
  }));
  const events = ticks.map(s => new Promise(r => {
    s.addEventListener("message", () => r(true), {once: true});
  }));
  const openTimes = await Promise.all(opened.map(p => Promise.race([p, until(waitMs, -1)])));
  const got = await Promise.all(events.map(p => Promise.race([p, until(1000, false)])));
  const fetched = await Promise.race([fetch("/ping").then(r => r.status), until(2000, "blocked")]);
  window.streams = {ticks, idle};
  return {
    open: openTimes.filter(t => t >= 0).length,
    idleOpenMs: openTimes[0],
    ticksWithEvents: got.filter(Boolean).length,
    fetched,
    protocol: performance.getEntriesByType("navigation")[0].nextHopProtocol,
  };
}"""


async def test_over_http2_one_page_holds_12_streams_and_still_fetches(deploy, browser):
    deployed = await deploy()
    context = await browser.new_context(ignore_https_errors=True)
    page = await context.new_page()
    await page.goto(deployed.proxied + "/")
    result = await page.evaluate(OPEN_12_STREAMS, 10_000)
    assert result["protocol"] == "h2"
    assert result["open"] == 12
    assert result["ticksWithEvents"] == 11
    assert result["fetched"] == 200
    assert 0 <= result["idleOpenMs"] < 1000, "the idle stream's headers waited for a body byte"
    await wait_until(lambda: deployed.ticks.live == 11 and deployed.idle.live == 1)
    await page.evaluate("() => window.streams.ticks.slice(0, 6).forEach(s => s.close())")
    await wait_until(lambda: deployed.ticks.live == 5)
    assert deployed.ticks.disposed == 6  # exactly the 6 closed ones, upstream of the proxy
    await context.close()
    await wait_until(lambda: deployed.ticks.live == 0 and deployed.idle.live == 0)


async def test_over_http1_the_same_page_gets_6_streams_and_fetch_waits(deploy, browser):
    deployed = await deploy()
    page = await browser.new_page()
    await page.goto(deployed.direct + "/")
    # 6 connections per origin, each held by a stream: the other 6 wait, and so does fetch.
    result = await page.evaluate(OPEN_12_STREAMS, 3000)
    assert result["protocol"] == "http/1.1"
    assert result["open"] == 6
    assert result["fetched"] == "blocked"
    await page.close()


async def test_a_stream_that_fails_the_same_way_each_time_is_no_storm(deploy, browser):
    """Ids 0 and 1, then a failure, on every attempt: the ids never pass the Last-Event-ID the
    reconnect starts from, so the failures count as in a row and Chromium backs off (2 s, 4 s,
    8 s...): at most 3 opens in 10 s, behind nginx over HTTP/2, with the default options."""
    deployed = await deploy()
    context = await browser.new_context(ignore_https_errors=True)
    page = await context.new_page()
    await page.goto(deployed.proxied + "/")
    await page.evaluate("() => { window.stubborn = new EventSource('/stubborn'); }")
    await wait_until(lambda: deployed.opens, timeout=10)
    window = 10.0  # the issue's measure: opens within 10 s of the first
    await asyncio.sleep(window)
    opened = [t - deployed.opens[0] for t in deployed.opens if t - deployed.opens[0] <= window]
    assert 1 <= len(opened) <= 3, f"opened at {opened}"
    await context.close()


# -- with other clients -----------------------------------------------------------------------


async def test_an_idle_stream_outlives_a_proxy_timeout_just_above_the_heartbeat(deploy):
    deployed = await deploy(read=f"{int(HEARTBEAT * 1500)}ms")
    async with (
        aiohttp.ClientSession() as session,
        session.get(deployed.proxied + "/idle", ssl=insecure()) as response,
    ):
        assert response.status == 200
        reader = FrameReader(response)
        assert (await reader.next(comments=True)).fields == [("", "open")]
        # Five periods of silence, each ended by a ping: nginx (1.5 s) never cuts it.
        for _ in range(5):
            frame = await reader.next(timeout=HEARTBEAT * 3, comments=True)
            assert frame is not None, "the proxy ended the idle stream"
            assert frame.fields == [("", "ping")]
    await wait_until(lambda: deployed.idle.live == 0)


async def test_slow_loris_clients_are_closed_by_the_proxy(deploy):
    deployed = await deploy(header="1s")
    host, port = deployed.proxied.split("//", 1)[1].split(":")

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.open_connection(host, int(port), ssl=insecure())
        except (ConnectionError, ssl.SSLError):
            return None  # closed during the handshake: nginx's header timeout covers it too

    async def slow_loris(
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    ) -> bytes:
        if connection is None:
            return b""
        reader, writer = connection
        writer.write(b"GET /idle HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        try:
            while True:  # one byte of a header that never ends, every 200 ms
                try:
                    return await asyncio.wait_for(reader.read(1024), timeout=0.2)
                except TimeoutError:
                    writer.write(b"a")
        except (ConnectionError, ssl.SSLError):
            return b""
        finally:
            writer.close()

    # The TLS handshakes first, a few at a time (nginx's header timeout covers them too).
    connections = []
    for _ in range(20):
        connections += await asyncio.gather(*(connect() for _ in range(10)))
    assert sum(c is not None for c in connections) >= 100  # most got as far as their headers
    answers = await asyncio.wait_for(
        asyncio.gather(*(slow_loris(connection) for connection in connections)), timeout=30
    )
    # Closed (nginx ends the connection, with at most a 408), and the app never saw them.
    assert all(a == b"" or a.startswith(b"HTTP/1.1 408") for a in answers), answers[:3]
    assert deployed.idle.total == 0


def test_the_readme_shows_the_tested_configuration():
    blocks = re.findall(r"```nginx\n(.*?)```", (ROOT / "docs" / "deploying.md").read_text(), re.S)
    assert blocks == [DEPLOY.read_text()]
