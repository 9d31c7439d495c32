"""Emissions from threads: 8 threads emit into one ``Subject`` that 200 streams follow.

Each stream's observer gets every event on the emitting thread and must hand it to the event
loop; how often it hops there decides the rate. Measured with the compiled load client: the time
from the emits' start to the last stream having every event.

Run: ``python -m bench.threads`` (``--threads 8 --streams 200 --events 20000`` per thread).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

from bench.common import CLIENT_CORE, pin, save_table
from bench.loadclient import LoadClient, build
from bench.run import Server


async def measure(threads: int, streams: int, events: int) -> dict[str, float]:
    binary = build()
    if binary is None:
        raise SystemExit("this benchmark needs gcc for its load client")
    async with (
        Server("rxsse") as server,
        LoadClient(binary, server.port, streams, "/broadcast") as client,
    ):
        await server.wait_for_subscribers(streams)
        cpu_before = server.cpu_seconds()
        answer = await server.http("POST", f"/emit-threads?threads={threads}&n={events}")
        arrived = await client.expect(threads * events, timeout=600)
        cpu = server.cpu_seconds() - cpu_before
    seconds = max(arrived) - answer["started"]
    deliveries = threads * events * streams
    return {
        "deliveries_per_s": deliveries / seconds,
        "seconds": seconds,
        "cpu_us_per_delivery": 1e6 * cpu / deliveries,
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pin(CLIENT_CORE)
    runs = [
        asyncio.run(measure(args.threads, args.streams, args.events)) for _ in range(args.rounds)
    ]
    best = max(runs, key=lambda run: run["deliveries_per_s"])
    table = (
        f"Emissions from threads: {args.threads} threads x {args.events:,} events into one "
        f"Subject, {args.streams} streams ({args.threads * args.events * args.streams:,} "
        f"deliveries), best of {args.rounds}, compiled load client\n\n"
        "| deliveries/s | seconds | server CPU µs/delivery | load |\n|---:|---:|---:|---:|\n"
        f"| {best['deliveries_per_s']:,.0f} | {best['seconds']:.2f} "
        f"| {best['cpu_us_per_delivery']:.2f} | {best['load']:.2f} |"
    )
    print(json.dumps(runs))
    save_table("threads.md", table)


if __name__ == "__main__":
    main()
