"""``make bench``: rxsse against the limit (raw aiohttp doing only what rxsse must), beside a weak
raw baseline, aiohttp-sse and sse-starlette, in one run.

Every server runs in its own process pinned to one core (``bench/servers.py``). The load client
is pinned to the other core: the compiled one (``bench/loadclient.c``, epoll, counting frames
and when the last client got each), or this process's asyncio client with ``--python-client``
(or without ``gcc``), which is slower than the servers it measures at thousands of clients.
Scenarios:

- single stream: 100,000 small JSON events as fast as the server makes them (events/s, read by
  this process), beside the rxsse pipeline's Observable drained by a no-op observer (the Rx
  ceiling);
- broadcast to 1,000, 5,000 and 15,000 clients (the peers up to 5,000, sse-starlette 1,000):
  200 events emitted 50 ms apart, the time from each emit to the last client having it (p50,
  p99, max); then 200 events in a burst, the time until every client has all of them
  (deliveries/s) and the server's CPU time per delivered event;
- idle memory: the server's RSS growth per open idle connection, at each size.

It prints markdown tables, writes them to ``bench/results/bench.md`` with a plot
``bench/results/bench.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    CLIENT_CORE,
    RESULTS,
    SERVER_CORE,
    FrameCounter,
    cpu_seconds,
    free_port,
    pin,
    request,
    wait_for_port,
)
from bench.loadclient import LoadClient, build
from rxsse import use_uvloop

KINDS = ["raw", "raw-per-write", "rxsse", "aiohttp-sse", "sse-starlette"]
LABELS = {
    "raw": "raw aiohttp, coalesced (the limit)",
    "raw-per-write": "raw aiohttp, a write per event per client",
    "rxsse": "**rxsse**",
    "aiohttp-sse": "aiohttp-sse",
    "sse-starlette": "sse-starlette (uvicorn)",
}
PACED_INTERVAL = 0.05
#: The peers (and the weak baseline) are measured up to this many clients: past it they take
#: minutes per run and say nothing new. sse-starlette's 5,000-client run has never delivered
#: every event within the load client's two minutes: it stops at 1,000.
PEER_MAX_CLIENTS = 5000
MAX_CLIENTS = {"sse-starlette": 1000}


class Server:
    """One server process of a kind, pinned to the server core."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.servers", kind, str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # uvicorn complains about streams cut at the end
        )

    async def __aenter__(self) -> Server:
        await wait_for_port(self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    async def wait_for_subscribers(self, count: int, timeout: float = 120) -> None:
        """Poll ``/stats`` (with a deadline) until ``count`` clients are subscribed."""
        deadline = time.monotonic() + timeout
        while (await self.http("GET", "/stats"))["subscribers"] < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind}: clients did not all subscribe")
            await asyncio.sleep(0.05)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    async def http(self, method: str, path: str) -> Any:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(
                f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            raw = await reader.read()
        finally:
            writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        if b"chunked" in head.lower():
            body = _dechunk(body)
        return json.loads(body)


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


# -- single stream ------------------------------------------------------------------------------


async def single_stream(server: Server, events: int) -> float:
    """Seconds from the request to the last of ``events`` frames."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    started = time.perf_counter()
    received = 0

    def on_frames(count: int) -> None:
        nonlocal received
        received += count
        if received >= events and not done.done():
            done.set_result(time.perf_counter() - started)

    transport, _ = await loop.create_connection(
        lambda: FrameCounter(on_frames), "127.0.0.1", server.port
    )
    started = time.perf_counter()
    transport.write(request(f"/single?n={events}"))
    try:
        return await asyncio.wait_for(done, timeout=120)
    finally:
        transport.close()


def rx_ceiling(events: int, rounds: int, *, encoded: bool, lean: bool = False) -> float:
    """Best events/s of the rxsse single-stream Observable drained by a no-op observer, in a
    process on the server's core; with ``encoded``, each event also made into its frame; with
    ``lean``, on rxsse's LoopScheduler instead of reactivex's AsyncIOScheduler."""
    command = [sys.executable, "-m", "bench.run", "--ceiling", str(events)]
    command += ["--rounds", str(rounds)] + (["--encoded"] if encoded else [])
    command += ["--lean"] if lean else []
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return events / min(float(x) for x in out.stdout.split())


async def drain_observable(events: int, encoded: bool, lean: bool) -> float:
    import reactivex as rx
    from reactivex import operators as ops
    from reactivex.scheduler.eventloop import AsyncIOScheduler

    from bench.servers import FIELDS
    from rxsse import LoopScheduler, MessageEvent

    loop = asyncio.get_running_loop()
    done = loop.create_future()
    started = time.perf_counter()
    # The very Observable rxsse's /single handler returns; with `encoded`, the frames too,
    # as `rx.range(n).pipe(ops.map(frame))` does.
    source = rx.range(events).pipe(ops.map(lambda i: MessageEvent({"n": i, **FIELDS})))
    if encoded:
        source = source.pipe(ops.map(MessageEvent.encode))
    source.subscribe(
        lambda _: None,
        done.set_exception,
        lambda: done.set_result(None),
        scheduler=(LoopScheduler if lean else AsyncIOScheduler)(loop),
    )
    await done
    return time.perf_counter() - started


# -- broadcast ----------------------------------------------------------------------------------


@dataclass
class Arrivals:
    """Per event index: how many clients have it, and when the last one got it."""

    clients: int
    counts: list[int] = field(default_factory=lambda: [0] * 1000)
    last: dict[int, float] = field(default_factory=dict)
    complete: asyncio.Event = field(default_factory=asyncio.Event)
    target: int = 0

    def on_frames(self, first: int, count: int) -> None:
        now = time.monotonic()
        counts = self.counts
        for k in range(first, first + count):
            counts[k] += 1
            if counts[k] == self.clients:
                self.last[k] = now
                if k + 1 >= self.target and len(self.last) >= self.target:
                    self.complete.set()


class Client(FrameCounter):
    def __init__(self, arrivals: Arrivals) -> None:
        super().__init__()
        self.arrivals = arrivals

    def data_received(self, data: bytes) -> None:
        found = (self.tail + data).count(b"\n\n")
        self.tail = data[-1:]
        if found:
            self.arrivals.on_frames(self.count, found)
            self.count += found


class PythonClients:
    """The fallback load client, in this process (``LoadClient``'s interface): it measures
    itself as much as the server once thousands of clients get frames fast."""

    def __init__(self, port: int, clients: int, path: str) -> None:
        self.port, self.clients, self.path = port, clients, path
        self.arrivals = Arrivals(clients)
        self.transports: list[asyncio.BaseTransport] = []
        self.reported = 0

    async def __aenter__(self) -> PythonClients:
        loop = asyncio.get_running_loop()
        for start in range(0, self.clients, 250):
            batch = await asyncio.gather(
                *(
                    loop.create_connection(lambda: Client(self.arrivals), "127.0.0.1", self.port)
                    for _ in range(min(250, self.clients - start))
                )
            )
            for transport, _ in batch:
                transport.write(request(self.path))
                self.transports.append(transport)
        return self

    async def expect(self, total: int, timeout: float = 120) -> list[float]:
        self.arrivals.complete.clear()
        self.arrivals.target = total
        if len(self.arrivals.counts) < total:
            self.arrivals.counts += [0] * (total - len(self.arrivals.counts))
        if len(self.arrivals.last) < total:
            await asyncio.wait_for(self.arrivals.complete.wait(), timeout)
        last = [self.arrivals.last[k] for k in range(self.reported, total)]
        self.reported = total
        return last

    async def __aexit__(self, *exc: object) -> None:
        for transport in self.transports:
            transport.close()


async def broadcast(
    server: Server, clients: int, events: int, loadclient: Path | None
) -> dict[str, float]:
    rss_before = server.rss_kib()
    load = os.getloadavg()[0]
    if loadclient is not None:
        connections: Any = LoadClient(loadclient, server.port, clients, "/broadcast")
    else:
        connections = PythonClients(server.port, clients, "/broadcast")
    async with connections as client:
        await server.wait_for_subscribers(clients)
        await asyncio.sleep(0.5)  # let the server settle before reading its memory
        rss_after = server.rss_kib()
        # paced: the latency of each event to the last client, and the CPU each delivery costs
        paced_cpu_before = server.cpu_seconds()
        paced = asyncio.ensure_future(
            server.http("POST", f"/emit?n={events}&interval={PACED_INTERVAL}")
        )
        arrived = await client.expect(events)
        emitted = await paced
        paced_cpu = server.cpu_seconds() - paced_cpu_before
        latencies = sorted(arrived[k] - emitted[k] for k in range(events))
        # burst: everything at once, until every client has every event
        cpu_before = server.cpu_seconds()
        started = time.monotonic()
        burst = asyncio.ensure_future(server.http("POST", f"/emit?n={events}&interval=0"))
        total = max(await client.expect(2 * events)) - started
        await burst
        cpu = server.cpu_seconds() - cpu_before
    deliveries = clients * events
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "max_ms": 1000 * latencies[-1],
        "burst_s": total,
        "deliveries_per_s": deliveries / total,
        "cpu_us_per_delivery": 1e6 * cpu / deliveries,
        "paced_cpu_us_per_delivery": 1e6 * paced_cpu / deliveries,
        "rss_per_conn_kib": (rss_after - rss_before) / clients,
        "load": load,
    }


# -- the run ------------------------------------------------------------------------------------


async def measure(
    kinds: list[str], events: int, rounds: int, sizes: list[int], loadclient: Path | None
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for kind in kinds:
        result: dict[str, Any] = {"load": os.getloadavg()[0]}
        async with Server(kind) as server:
            await single_stream(server, events)  # warm up (and let raw pre-encode its frames)
            seconds = [await single_stream(server, events) for _ in range(rounds)]
            result["single"] = events / min(seconds)
        for size in sizes:
            if size > PEER_MAX_CLIENTS and kind not in ("raw", "rxsse"):
                continue
            if size > MAX_CLIENTS.get(kind, size):
                continue
            async with Server(kind) as server:
                try:
                    result[size] = await broadcast(server, size, 200, loadclient)
                except TimeoutError:  # a server that never delivers everything: said, not fatal
                    print(f"{kind}: {size} clients did not get every event in time", flush=True)
        print(f"{kind}: {result}", flush=True)
        results[kind] = result
    return results


def ratio(value: float, limit: float) -> str:
    return f"{value / limit:.2f}" if limit else "-"


def tables(
    results: dict[str, Any],
    ceiling: float,
    bare: float,
    lean: float,
    events: int,
    sizes: list[int],
    loop_name: str,
    client: str,
) -> str:
    raw = results["raw"]
    lines = [
        f"Machine: {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, {loop_name} event loop; server and load client pinned to "
        f"separate cores; load client: {client}. The load average (1 min) when each server's "
        "runs began: "
        + ", ".join(f"{LABELS[k].strip('*')} {results[k]['load']:.2f}" for k in results)
        + ".",
        "",
        f"Single stream, {events:,} small JSON events, best of the rounds:",
        "",
        "| server | events/s | x limit | x Rx ceiling | x aiohttp-sse | x sse-starlette |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    peers = {k: results[k]["single"] for k in ("aiohttp-sse", "sse-starlette") if k in results}
    for kind in results:
        value = results[kind]["single"]
        lines.append(
            f"| {LABELS[kind]} | {value:,.0f} | {ratio(value, raw['single'])} "
            f"| {ratio(value, ceiling)} | {ratio(value, peers.get('aiohttp-sse', 0))} "
            f"| {ratio(value, peers.get('sse-starlette', 0))} |"
        )
    lines.append(
        "| Rx ceiling: rxsse's Observable, each event made into its frame, no-op observer, "
        f"no I/O, reactivex's AsyncIOScheduler | {ceiling:,.0f} | {ratio(ceiling, raw['single'])} "
        "| 1.00 | | |"
    )
    lines.append(
        f"| the same on rxsse's LoopScheduler (what rxsse subscribes with) | {lean:,.0f} "
        f"| {ratio(lean, raw['single'])} | {ratio(lean, ceiling)} | | |"
    )
    lines.append(
        f"| the same Observable without making frames (AsyncIOScheduler) | {bare:,.0f} "
        f"| {ratio(bare, raw['single'])} | {ratio(bare, ceiling)} | | |"
    )
    for size in sizes:
        lines += [
            "",
            f"Broadcast to {size:,} clients, 200 events (latency: paced "
            f"{PACED_INTERVAL * 1000:.0f} ms apart, emit to the last client; throughput and CPU: "
            "a burst of 200):",
            "",
            "| server | p50 ms | p99 ms | max ms | p99 x limit | paced CPU µs/delivery "
            "| x limit | burst deliveries/s | x limit | burst CPU µs/delivery | load |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for kind in results:
            if size not in results[kind]:
                continue
            r, limit = results[kind][size], raw[size]
            lines.append(
                f"| {LABELS[kind]} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} "
                f"| {ratio(r['p99_ms'], limit['p99_ms'])} "
                f"| {r['paced_cpu_us_per_delivery']:.2f} "
                f"| {ratio(r['paced_cpu_us_per_delivery'], limit['paced_cpu_us_per_delivery'])} "
                f"| {r['deliveries_per_s']:,.0f} "
                f"| {ratio(r['deliveries_per_s'], limit['deliveries_per_s'])} "
                f"| {r['cpu_us_per_delivery']:.2f} | {r['load']:.2f} |"
            )
    lines += [
        "",
        "Idle memory: server RSS growth per open connection:",
        "",
        "| server | " + " | ".join(f"KiB at {size:,} | x limit" for size in sizes) + " |",
        "|---|" + "---:|---:|" * len(sizes),
    ]
    for kind in results:
        cells = []
        for size in sizes:
            if size not in results[kind]:
                cells += ["", ""]
                continue
            value = results[kind][size]["rss_per_conn_kib"]
            cells += [f"{value:.1f}", ratio(value, raw[size]["rss_per_conn_kib"])]
        lines.append(f"| {LABELS[kind]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict[str, Any], ceiling: float, sizes: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(results)
    names = ["raw aiohttp" if k == "raw" else k for k in kinds]
    colors = ["#888888" if k == "raw" else "#d62728" if k == "rxsse" else "#1f77b4" for k in kinds]
    largest = max(size for size in sizes if all(size in results[k] for k in kinds))
    figure, grid = plt.subplots(2, 2, figsize=(11, 6.5))
    axes = grid.flatten()
    panels = [
        ("single stream (events/s, log scale)", [results[k]["single"] for k in kinds]),
        (
            f"broadcast {largest:,}: p99 latency (ms)",
            [results[k][largest]["p99_ms"] for k in kinds],
        ),
        (
            f"broadcast {largest:,}: deliveries/s",
            [results[k][largest]["deliveries_per_s"] for k in kinds],
        ),
        (
            "idle memory (KiB / connection)",
            [results[k][largest]["rss_per_conn_kib"] for k in kinds],
        ),
    ]
    for axis, (title, values) in zip(axes, panels, strict=True):
        axis.barh(names, values, color=colors)
        axis.set_title(title)
        axis.invert_yaxis()
        if title.startswith("single"):
            axis.set_xscale("log")
            axis.axvline(ceiling, linestyle="--", color="black", linewidth=1)
            axis.text(ceiling, len(names) - 0.6, " Rx ceiling", va="center")
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 15000])
    parser.add_argument(
        "--python-client", action="store_true", help="load with the Python client, not the C one"
    )
    parser.add_argument(
        "--kinds", nargs="+", default=KINDS, help="servers to run (a subset only prints its rows)"
    )
    parser.add_argument("--ceiling", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--encoded", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lean", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--plot-only", action="store_true", help="redraw from bench.json")
    args = parser.parse_args()
    loop_name = "uvloop" if use_uvloop() else "asyncio"  # the load client too, when installed
    if args.ceiling:
        pin(SERVER_CORE)
        runs = (
            asyncio.run(drain_observable(args.ceiling, args.encoded, args.lean))
            for _ in range(args.rounds)
        )
        print(*runs)
        return
    if args.plot_only:
        saved = json.loads((RESULTS / "bench.json").read_text())
        results = {
            kind: {(int(k) if k.isdigit() else k): v for k, v in result.items()}
            for kind, result in saved["results"].items()
        }
        plot(results, saved["ceiling"], args.sizes, RESULTS / "bench.png")
        return
    pin(CLIENT_CORE)
    # 15,000 clients and as many server sockets: the processes may open as many files as allowed.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loadclient = None if args.python_client else build()
    client = "compiled (bench/loadclient.c)" if loadclient else "Python (asyncio, uvloop)"
    started = time.monotonic()
    results = asyncio.run(measure(args.kinds, args.events, args.rounds, args.sizes, loadclient))
    if set(args.kinds) != set(KINDS):  # the tables compare every server: a subset cannot fill them
        print("a run of some --kinds only: rows printed above, bench/results left as they are")
        return
    ceiling = rx_ceiling(args.events, args.rounds, encoded=True)
    bare = rx_ceiling(args.events, args.rounds, encoded=False)
    lean = rx_ceiling(args.events, args.rounds, encoded=True, lean=True)
    text = tables(results, ceiling, bare, lean, args.events, args.sizes, loop_name, client)
    print(text)
    print(f"\n(bench took {time.monotonic() - started:.0f} s)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench.md").write_text(text + "\n")
    summary = {"results": results, "ceiling": ceiling, "bare": bare, "lean": lean}
    (RESULTS / "bench.json").write_text(json.dumps(summary))
    plot(results, ceiling, args.sizes, RESULTS / "bench.png")


if __name__ == "__main__":
    main()
