"""A real nginx (Debian's ``nginx-light``) in front of a test's app: the tests write the
``server`` block, this wraps it in a complete configuration with its own prefix, runs nginx in
the foreground and waits until it listens."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import missing

_MAIN = """\
{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{server}
}}
"""


def nginx_binary() -> str:
    """The nginx executable; a missing one fails the run under CI, else skips the test."""
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if binary is None:
        missing("nginx is not installed (Debian package nginx-light)")
    return binary


class Nginx:
    """One nginx process serving ``server`` (an nginx ``server { ... }`` block) on ``port``."""

    def __init__(self, prefix: Path, server: str, port: int) -> None:
        self.prefix = prefix
        self.port = port
        self.config = prefix / "nginx.conf"
        user = "user root;" if os.geteuid() == 0 else ""  # workers may read the temp paths
        self.config.write_text(_MAIN.format(user=user, prefix=prefix, server=server))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = nginx_binary()
        self.process = subprocess.Popen(
            [binary, "-p", str(self.prefix), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while not self._listening():
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.process.stderr.read()!r}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not start listening")
            time.sleep(0.02)

    def _listening(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
