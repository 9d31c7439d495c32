"""A Redis Cluster on loopback: three primaries, each with a replica (six Debian redis-server
processes in cluster mode), for the tests to spread keys over and to kill a primary under."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import RedisServer, free_port, missing

#: How long a silent primary is taken for dead (its replica is promoted then).
NODE_TIMEOUT_MS = 1000


class Cluster:
    """Six nodes: ``nodes[:3]`` start as primaries, ``nodes[3:]`` as their replicas."""

    def __init__(self, directory: Path, *, size: int = 3, replicas: int = 1) -> None:
        self.directory = directory
        self.nodes: list[RedisServer] = []
        for index in range(size * (1 + replicas)):
            home = directory / f"node-{index}"
            home.mkdir()
            args = (
                *("--cluster-enabled", "yes", "--cluster-config-file", str(home / "nodes.conf")),
                *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
                # (Its own bus port: the default, port + 10000, may be past 65535.)
                *("--cluster-port", str(free_port())),
                # A replica syncs at once, and takes over however far behind it is.
                *("--repl-diskless-sync-delay", "0", "--cluster-replica-validity-factor", "0"),
            )
            self.nodes.append(RedisServer(home, args=args))
        self.replicas = replicas

    @property
    def url(self) -> str:
        """What ``RedisBroker`` takes: every node, so it finds the cluster with any one down."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"redis+cluster://{hosts}"

    def start(self) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            missing("redis-cli is not installed (Debian package redis-tools)")
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                *("--cluster-replicas", str(self.replicas), "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
        )
        self.wait(self.healthy)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    @staticmethod
    def ask(node: RedisServer, *words: str) -> str:
        """One command to ``node`` (with ``redis-cli``); its answer as text."""
        command = ["redis-cli", "-p", str(node.port), *words]
        return subprocess.run(command, capture_output=True, text=True).stdout

    def info(self, node: RedisServer, section: str) -> dict[str, str]:
        """A node's ``CLUSTER INFO`` or ``INFO <section>`` as a mapping."""
        out = self.ask(node, *(["CLUSTER", "INFO"] if section == "cluster" else ["INFO", section]))
        return dict(line.strip().split(":", 1) for line in out.splitlines() if ":" in line.strip())

    def healthy(self) -> bool:
        """Every live node sees every slot served, and every replica is in sync."""
        live = [node for node in self.nodes if node.process is not None and node.ping()]
        for node in live:
            if self.info(node, "cluster").get("cluster_state") != "ok":
                return False
            replication = self.info(node, "replication")
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                return False
        return True

    def primary_of(self, key: str) -> RedisServer:
        """The node that serves ``key``'s slot now (as a live node's ``CLUSTER NODES`` says)."""
        live = [node for node in self.nodes if node.process is not None and node.ping()]
        slot = int(live[0].command("CLUSTER", "KEYSLOT", key).lstrip(b":"))
        table = self.ask(live[0], "CLUSTER", "NODES")
        for line in table.splitlines():
            _id, address, flags, *rest = line.split()
            if "master" not in flags or "fail" in flags:
                continue
            for part in rest[5:]:
                low, _, high = part.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    port = int(address.split("@")[0].rpartition(":")[2])
                    return next(node for node in self.nodes if node.port == port)
        raise RuntimeError(f"no live primary serves {key!r}")

    def roles(self, prefix: str) -> tuple[RedisServer, RedisServer]:
        """The primary that serves ``prefix``'s slot (to be killed) and its replica (to be
        promoted)."""
        primary = self.primary_of(f"{{{prefix}}}:seq")
        primary_id = self.ask(primary, "CLUSTER", "MYID").strip()
        table = self.ask(primary, "CLUSTER", "NODES")
        for line in table.splitlines():
            _id, address, flags, master, *_ = line.split()
            if "slave" in flags and master == primary_id:
                port = int(address.split("@")[0].rpartition(":")[2])
                return primary, next(node for node in self.nodes if node.port == port)
        raise RuntimeError(f"the primary of {prefix!r} has no replica")

    def primary_port(self, prefix: str) -> int | None:
        """The port of the primary that serves ``prefix``'s slot now."""
        try:
            return self.primary_of(f"{{{prefix}}}:seq").port
        except (RuntimeError, OSError):
            return None

    @staticmethod
    def wait(condition: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not get there in time")
            time.sleep(0.05)
