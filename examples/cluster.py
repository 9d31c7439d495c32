"""Several worker processes, one Redis: an event emitted through any of them reaches the clients
of all of them, and a client resumes on whichever worker takes its reconnect.

``make cluster`` (or ``python -m examples.cluster``) starts a redis-server on a loopback port
(Debian package ``redis-server``; or pass ``--redis URL``) and the demo on gunicorn with
aiohttp's worker, two worker processes on one port::

    RXSSE_REDIS_URL=redis://127.0.0.1:6399/0 gunicorn 'examples.cluster:app' \\
        --worker-class aiohttp.GunicornWebWorker --workers 2 --bind 127.0.0.1:8081

- open http://127.0.0.1:8081/ twice and press "POST /verify": whichever worker takes the POST,
  the notification reaches both pages;
- ``kill -HUP`` the gunicorn master: it starts new workers and stops the old ones gracefully;
  their clients get a ``shutdown`` event, reconnect with ``Last-Event-ID`` to a new worker and
  lose nothing. A worker that dies (``kill -9``) is replaced; its clients reconnect the same way.

``--serve PORT`` runs one app process on its own, without gunicorn (the two-process test uses
it, to choose which process each client talks to).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import FrameType

from aiohttp import web

from examples import demo
from rxsse import EventBus, MessageEvent, RedisBroker

#: What every open stream of a worker that is stopping gets, before it ends: a browser
#: reconnects half a second later, to a worker that is running.
SHUTDOWN = MessageEvent({"reason": "the server is restarting"}, type="shutdown", retry=500)


def create_app(redis_url: str, prefix: str) -> web.Application:
    """The demo, its bus on Redis (a log long enough to resume across a restart)."""
    bus = EventBus(RedisBroker(redis_url, prefix=prefix), history=100_000)
    served_by = {"X-Served-By": f"pid {os.getpid()}"}  # which worker a stream is on
    return demo.create_app(bus, shutdown_event=SHUTDOWN, headers=served_by)


async def app() -> web.Application:
    """The app factory gunicorn's aiohttp worker calls, once in each worker process (after the
    fork, so every worker has connections of its own): ``RXSSE_REDIS_URL``, ``RXSSE_PREFIX``."""
    url = os.environ.get("RXSSE_REDIS_URL", "redis://127.0.0.1:6379/0")
    return create_app(url, os.environ.get("RXSSE_PREFIX", "rxsse-demo"))


def gunicorn_command(bind: str, workers: int) -> list[str]:
    """The gunicorn command line that serves :func:`app`."""
    return [
        *(sys.executable, "-m", "gunicorn", "examples.cluster:app"),
        *("--worker-class", "aiohttp.GunicornWebWorker", "--workers", str(workers)),
        *("--bind", bind, "--graceful-timeout", "10", "--no-control-socket"),
    ]


def start_redis(port: int, directory: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed: apt-get install redis-server (or pass --redis)")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "yes", "--dir", directory]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL)


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"nothing listens on port {port} after {timeout:g} s")
            time.sleep(0.05)  # the poll's pace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1:8081")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis", help="use this Redis instead of starting one")
    parser.add_argument("--redis-port", type=int, default=6399)
    parser.add_argument("--prefix", default="rxsse-demo")
    parser.add_argument("--serve", type=int, help="run one app process on this port")
    args = parser.parse_args()
    if args.serve:
        logging.basicConfig(level=logging.INFO, format=f"[{args.serve}] %(asctime)s %(message)s")
        web.run_app(create_app(args.redis, args.prefix), host="127.0.0.1", port=args.serve)
        return
    processes: list[subprocess.Popen[bytes]] = []
    redis_url = args.redis
    if redis_url is None:
        processes.append(start_redis(args.redis_port, tempfile.mkdtemp(prefix="rxsse-redis-")))
        redis_url = f"redis://127.0.0.1:{args.redis_port}/0"
        _wait_for_port(args.redis_port)
    env = {**os.environ, "RXSSE_REDIS_URL": redis_url, "RXSSE_PREFIX": args.prefix}
    print(f"{args.workers} workers on http://{args.bind}/ (Redis {redis_url})", flush=True)
    processes.append(subprocess.Popen(gunicorn_command(args.bind, args.workers), env=env))

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=15)


if __name__ == "__main__":
    main()
