"""Two app processes, one Redis: an event emitted through one reaches browsers of the other.

``make cluster`` (or ``python -m examples.cluster``) starts a redis-server on a free loopback
port (Debian package ``redis-server``; or pass ``--redis URL``) and two demo apps sharing it:

- http://127.0.0.1:8081/ and http://127.0.0.1:8082/ serve the demo page;
- open the page of one, press "POST /verify" on the page of the other: the notification arrives
  in both, because both processes follow one event stream on Redis;
- a browser that moves from one process to the other resumes with ``Last-Event-ID``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

from aiohttp import web

from examples import demo
from rxsse import EventBus
from rxsse.redis import RedisBroker


def serve_one(port: int, redis_url: str, prefix: str) -> None:
    """One app process: the demo, its bus on Redis."""
    logging.basicConfig(level=logging.INFO, format=f"[{port}] %(asctime)s %(name)s %(message)s")
    app = demo.create_app(EventBus(RedisBroker(redis_url, prefix=prefix)))
    print(f"app on http://127.0.0.1:{port}/ (Redis {redis_url})", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def start_redis(port: int, directory: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed: apt-get install redis-server (or pass --redis)")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "yes", "--dir", directory]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, nargs=2, default=[8081, 8082])
    parser.add_argument("--redis", help="use this Redis instead of starting one")
    parser.add_argument("--redis-port", type=int, default=6399)
    parser.add_argument("--prefix", default="rxsse-demo")
    parser.add_argument("--serve", type=int, help="run one app process on this port")
    args = parser.parse_args()
    if args.serve:
        serve_one(args.serve, args.redis, args.prefix)
        return
    processes: list[subprocess.Popen[bytes]] = []
    redis_url = args.redis
    if redis_url is None:
        processes.append(start_redis(args.redis_port, tempfile.mkdtemp(prefix="rxsse-redis-")))
        redis_url = f"redis://127.0.0.1:{args.redis_port}/0"
        time.sleep(0.3)
    for port in args.ports:
        command = [sys.executable, "-m", "examples.cluster", "--serve", str(port)]
        command += ["--redis", redis_url, "--prefix", args.prefix]
        processes.append(subprocess.Popen(command))

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
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
