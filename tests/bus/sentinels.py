"""A Redis set-up that fails over: a primary, a replica of it, and three Redis Sentinels that
watch them (Debian's redis-server and redis-sentinel, each a process on a loopback port), for
the tests to kill the primary under."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import RedisServer, free_port, missing

SERVICE = "rxsse"
#: How long a silent primary is taken for dead (the failover starts then).
DOWN_AFTER_MS = 1000


class Sentinels:
    """The primary, its replica and three sentinels (quorum 2)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        (directory / "primary").mkdir()
        (directory / "replica").mkdir()
        # (No 5 s wait before the first full sync: the replica is in sync at once.)
        self.primary = RedisServer(directory / "primary", args=("--repl-diskless-sync-delay", "0"))
        replica_of = ("--replicaof", "127.0.0.1", str(self.primary.port))
        self.replica = RedisServer(directory / "replica", args=replica_of)
        self.ports = [free_port() for _ in range(3)]
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def start(self) -> None:
        binary = shutil.which("redis-sentinel")
        if binary is None:
            missing("redis-sentinel is not installed (Debian package redis-sentinel)")
        self.primary.start()
        self.replica.start()
        for port in self.ports:
            config = self.directory / f"sentinel-{port}.conf"  # (a sentinel rewrites its own)
            config.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\n"
                f"dir {self.directory}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self.processes.append(
                subprocess.Popen([binary, str(config)], stdout=subprocess.DEVNULL)
            )
        self.wait(self.replica_in_sync)
        self.wait(lambda: self.replicas_seen() >= 1 and self.sentinels_seen() >= 2)

    def replica_in_sync(self) -> bool:
        """Whether the replica's link to the primary is up (its first full sync done)."""
        with socket.create_connection(("127.0.0.1", self.replica.port), timeout=5) as sock:
            sock.sendall(b"INFO replication\r\n")
            return "master_link_status:up" in "\n".join(_read_resp(sock.makefile("rb")))

    def ask(self, port: int, *words: str) -> list[str]:
        """One command to the sentinel on ``port``; the lines of its answer (RESP, flattened)."""
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(" ".join(words).encode() + b"\r\n")
            return _read_resp(sock.makefile("rb"))

    def roles(self, prefix: str) -> tuple[RedisServer, RedisServer]:
        """The primary (to be killed) and the replica (to be promoted), for any prefix."""
        return self.primary, self.replica

    def primary_port(self, prefix: str = "") -> int | None:
        """Where the sentinels say the primary is now (of every prefix)."""
        try:
            answer = self.ask(self.ports[0], "SENTINEL", "get-master-addr-by-name", SERVICE)
        except OSError:
            return None
        return int(answer[1]) if len(answer) == 2 else None

    def replicas_seen(self) -> int:
        try:
            return self.ask(self.ports[0], "SENTINEL", "replicas", SERVICE).count("name")
        except OSError:
            return 0

    def sentinels_seen(self) -> int:
        """The other sentinels the first one knows of."""
        try:
            return self.ask(self.ports[0], "SENTINEL", "sentinels", SERVICE).count("name")
        except OSError:
            return 0

    def wait(self, condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinels did not get there")
            time.sleep(0.05)

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait(timeout=10)
        self.processes = []
        self.primary.kill()
        self.replica.kill()


def _read_resp(answer) -> list[str]:  # type: ignore[no-untyped-def]
    """A RESP answer, flattened to its strings (arrays of bulk strings, as SENTINEL answers)."""
    line = answer.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"*":
        count = int(rest)
        items: list[str] = []
        for _ in range(max(count, 0)):
            items += _read_resp(answer)
        return items
    if kind == b"$":
        length = int(rest)
        if length < 0:
            return []
        data = answer.read(length + 2)[:length]
        return [data.decode()]
    if kind == b"-":
        raise OSError(rest.decode())
    return [rest.decode()]
