"""A real nats-server with JetStream, for the NATS broker's tests: started on a free loopback
port with its store in a directory of the test's, and killed, stopped and restarted by them."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import free_port, missing


class NatsServer:
    """A ``nats-server -js`` process; its store (``directory``) outlives restarts."""

    def __init__(self, directory: Path, *, config: str = "") -> None:
        self.port = free_port()
        self.directory = directory
        self.config = config  #: a configuration file's text (e.g. ``max_payload: 4096``)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")
        if binary is None:
            missing("nats-server is not installed (Debian package nats-server)")
        args = [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.directory)]
        if self.config:
            config = self.directory / "server.conf"
            config.write_text(self.config)
            args += ["-c", str(config)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.ready():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("nats-server did not start")
            time.sleep(0.02)

    def ready(self) -> bool:
        """Whether it answers, with JetStream up (its monitoring-free check: a PING)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                info = sock.recv(4096)
                sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
                return info.startswith(b"INFO") and b"PONG" in sock.recv(64)
        except OSError:
            return False

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        """Die at once (SIGKILL), as a crash does."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def wipe(self) -> None:
        """Kill it and delete its store: the next start is empty."""
        self.kill()
        for path in self.directory.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.name != "server.conf":
                path.unlink()

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open, nothing is answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
