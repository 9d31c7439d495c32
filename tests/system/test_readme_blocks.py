"""Every fenced code block of the README runs as written: one test per block, so that a new block
nobody runs fails here.

How each block is run, by what it is:

- a Python program: in a process of its own (exit 0, no traceback, what its comments say it
  prints); one that serves (``web.run_app``) is served on its port until one of its streams sends
  an event, then stopped with Ctrl-C; a client of the demo app gets the demo at
  http://127.0.0.1:8080 for its run;
- an excerpt of an example (a tutorial step, whose heading links ``examples/NAME.py``): its code,
  line by line and in order, is the file's (comments aside; a ``...`` line skips lines), and the
  example itself is served and sends an event;
- the JavaScript line: in Node (npm's ``eventsource``, standing in for a page the app served),
  against the README's first program;
- blocks another test runs as written, and checks more of: the testing section's two test files
  (``tests/testing/test_plugin.py`` runs them with pytest), the nginx configuration
  (``tests/system/test_deploy.py`` runs it in nginx), the gunicorn command (``tests/system/test_workers.py``
  runs it with redis-server): here, that it is exactly what that test runs.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from rxsse import MessageEvent, Parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
NODE_EVENTSOURCE = ROOT / "tests" / "clients" / "node_modules" / "eventsource" / "dist" / "index.js"
PORT = 8080  # web.run_app's default, and the demo's: the port the blocks name
TIMEOUT = 30.0


@dataclass(frozen=True)
class Block:
    """One fenced code block: its number in the README (from 1), the heading it is under."""

    number: int
    heading: str
    lang: str
    code: str

    @property
    def id(self) -> str:
        title = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", self.heading).replace("`", "")
        return f"{self.number:02d} {title.split(' — ')[0]}"


def readme_blocks() -> list[Block]:
    """Every fenced block of the README, in order."""
    blocks: list[Block] = []
    heading, lang, lines = "", None, []
    for line in README.read_text().splitlines(keepends=True):
        if lang is None and line.startswith("```"):
            lang, lines = line[3:].strip(), []
        elif lang is not None and line.rstrip() == "```":
            blocks.append(Block(len(blocks) + 1, heading, lang, "".join(lines)))
            lang = None
        elif lang is not None:
            lines.append(line)
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
    assert lang is None, "an unclosed block"
    return blocks


BLOCKS = readme_blocks()

# What the serving programs stream, by their heading: the path read for an event.
SERVED = {"rxsse": "/events/ticks", "Embedding `stream()` in an existing app": "/prices/ACME"}
# Blocks that go on from the one before them (under the heading named): run after its code.
CONTINUES = {
    "Several processes: `RedisBroker`": (
        "The event bus: resume with `Last-Event-ID`, and many processes with Redis"
    )
}
# What a block prints, as its comments say: lines it must print, by a piece of its code.
PRINTS = {
    "producers.start(": [
        "Resumable streams outlive their connections.",
        "end {'reason': 'complete'}",
    ],
    "bus.presence(": ["{'ann': 1, 'bob': 1}", "leave ann 1 {'bob': 1}"],
    "custom-events?limit=5": [f"{n} UPDATE " for n in range(5)],
    "ticks?period=0.1": ["[{'count': 0, "],
    'method="POST"': ["comment: thinking", "to", "be", "or", "not"],
    "events.restart()": ["0", "1", "2", "3", "4", "2"],
}
# Each example an excerpt comes from: a stream of it to read (and a POST that makes an event).
EXAMPLE_STREAMS = {
    "ticks": ("/ticks?period=0.05", None),
    "custom_events": ("/custom-events?period=0.05&limit=2", None),
    "notifications": (
        "/notifications?email=ann@example.com",
        ("/verify", {"email": "ann@example.com"}),
    ),
}


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_the_readme_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest):
    if block.lang == "nginx":
        from tests.system.test_deploy import DEPLOY  # what test_deploy serves through nginx

        assert block.code == DEPLOY.read_text()
    elif block.lang == "sh":
        from tests.system.test_workers import readme_gunicorn_command  # what test_workers runs

        assert block.code == readme_gunicorn_command()
    elif block.lang == "js":
        run_javascript(block, tmp_path)
    elif block.lang != "python":
        pytest.fail(f"nothing runs a {block.lang!r} block: teach this test how")
    elif block.heading.startswith("Testing your own streams"):
        from tests.testing.test_plugin import readme_testing_blocks  # run by pytest, as test files

        assert block.code in readme_testing_blocks()
    elif (example := excerpted_example(block)) is not None:
        assert_excerpt(block.code, ROOT / "examples" / f"{example}.py")
        serve_example(example, tmp_path)
    elif "web.run_app(" in block.code:
        assert block.heading in SERVED, f"which stream of block {block.id} should be read?"
        with serving(program(block), tmp_path):
            event = read_event(PORT, SERVED[block.heading])
        assert event.data, event
    else:
        if f"127.0.0.1:{PORT}" in block.code:
            request.getfixturevalue("demo")
        printed = run_script(program(block), tmp_path)
        for code, lines in PRINTS.items():
            if code in block.code:
                assert_prints(printed, lines)


def program(block: Block) -> str:
    """The block's code, after the code of the block it goes on from, if any."""
    if block.heading not in CONTINUES:
        return block.code
    (before,) = [b for b in BLOCKS if b.heading == CONTINUES[block.heading] and b.lang == "python"]
    return before.code + "\n" + block.code


def excerpted_example(block: Block) -> str | None:
    """The example a tutorial step's heading links, if the block is under one."""
    found = re.search(r"\(examples/(\w+)\.py\)$", block.heading)
    return None if found is None else found[1]


def assert_excerpt(code: str, source: Path) -> None:
    """Each line of ``code`` is a line of ``source``, in order, its indentation and its comment
    aside; a ``...`` line stands for lines left out."""

    def bare(line: str) -> str:
        return line.split("  #", 1)[0].strip()

    wanted = [bare(line) for line in code.splitlines() if bare(line) not in ("", "...")]
    lines = iter(bare(line) for line in source.read_text().splitlines())
    for line in wanted:
        assert any(line == have for have in lines), f"not in {source.name}, in order: {line!r}"


def assert_prints(printed: str, lines: list[str]) -> None:
    """``printed`` has ``lines`` in order, each a line or the start of one."""
    rest = iter(printed.splitlines())
    for line in lines:
        assert any(have.startswith(line) for have in rest), f"{line!r} not printed:\n{printed}"


def run_script(code: str, tmp_path: Path) -> str:
    """Run ``code`` as a script from the repository's root; what it printed."""
    script = tmp_path / "block.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in output, output
    return done.stdout


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    output: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Served]:
    """``python -m examples.demo``, at http://127.0.0.1:8080 as the client blocks name it."""
    command = [sys.executable, "-m", "examples.demo", "--port", str(PORT)]
    with serving_command(command, tmp_path / "demo.log", PORT) as served:
        yield served


def serving(code: str, tmp_path: Path) -> AbstractContextManager[Served]:
    script = tmp_path / "server.py"
    script.write_text(code)
    return serving_command([sys.executable, str(script)], tmp_path / "server.log", PORT)


@contextmanager
def serving_command(command: list[str], log: Path, port: int) -> Iterator[Served]:
    """Run ``command`` until ``port`` answers; then stop it with Ctrl-C (SIGINT), which must
    end it cleanly (exit 0, no traceback)."""
    assert not port_answers(port), f"port {port} is taken: cannot serve a block"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=out)
    served = Served(process, log)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not port_answers(port):
            assert process.poll() is None, f"{command} exited:\n{served.text()}"
            assert time.monotonic() < deadline, f"{command} did not serve on {port}"
            time.sleep(0.02)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    assert code == 0 and "Traceback" not in served.text(), served.text()


def read_event(port: int, path: str, post: tuple[str, object] | None = None) -> MessageEvent:
    """Open the stream at ``path`` (then POST ``post``'s body to its path) and return its first
    event, parsed as a browser would."""
    stream = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        stream.request("GET", path, headers={"Accept": "text/event-stream"})
        response = stream.getresponse()
        assert response.status == 200, response.read()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        if post is not None:
            sender = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
            body = json.dumps(post[1])
            sender.request("POST", post[0], body, {"Content-Type": "application/json"})
            answer = sender.getresponse()
            assert answer.status == 200, answer.read()
            sender.close()
        parser = Parser()
        while True:
            chunk = response.read1(65536)
            assert chunk, "the stream ended without an event"
            events = parser.feed(chunk)
            if events:
                return events[0]
    finally:
        stream.close()


def serve_example(name: str, tmp_path: Path) -> None:
    """``python -m examples.NAME`` on a free port sends an event on its stream."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", f"examples.{name}", "--port", str(port)]
    path, post = EXAMPLE_STREAMS[name]
    with serving_command(command, tmp_path / f"{name}.log", port):
        event = read_event(port, path, post)
    assert event.data, event


def run_javascript(block: Block, tmp_path: Path) -> None:
    """The block in Node, as on a page served by the README's first program (the app it is
    the client of): ``EventSource`` is npm's, resolving URLs against that page's origin. The
    block's first ``console.log`` ends the run."""
    (first,) = [b for b in BLOCKS if b.number == 1]
    script = tmp_path / "page.mjs"
    script.write_text(
        f'import {{ EventSource as Base }} from "{NODE_EVENTSOURCE.as_uri()}";\n'
        "globalThis.EventSource = class extends Base {\n"
        "  constructor(url, init) { super(new URL(url, process.env.ORIGIN), init); }\n"
        "};\n"
        "const log = console.log;\n"
        "console.log = (...values) => { log(...values); process.exit(0); };\n"
        f"{block.code}"
    )
    with serving(first.code, tmp_path):
        done = subprocess.run(
            ["node", str(script)],
            env={**os.environ, "ORIGIN": f"http://127.0.0.1:{PORT}"},
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "{ count: 0 }\n", done.stdout + done.stderr
