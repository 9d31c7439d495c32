"""Every fenced code block of the README and of the pages in ``docs/`` runs as written: one test
per block, named by its page, its number there and its heading, so that a new block nobody runs
fails here. Every Python block also type-checks with ``mypy --strict``, and the site builds with
``mkdocs build --strict`` (its links, anchors and API reference checked). What the pages list
is checked against the code: the API reference names every public name, the extras tables
every extra, the loggers named are rxsse's, and the README's links lead to files.

How each block is run, by what it is:

- a Python program: in a process of its own (exit 0, no traceback, what its comments say it
  prints); one that serves (``web.run_app``) is served on its port until one of its streams sends
  an event, then stopped with Ctrl-C; a client of the demo app gets the demo at
  http://127.0.0.1:8080 for its run;
- an excerpt of an example (a tutorial step, whose heading links ``../examples/NAME.py``): its
  code, line by line and in order, is the file's (comments aside; a ``...`` line skips lines),
  and the example itself is served and sends an event;
- the JavaScript line: in Node (npm's ``eventsource``, standing in for a page the app served),
  against the first program of its page;
- the install commands: each names this project (a clone's path, ``/path/to/rxsse``, or a git
  URL of it) with extras that pyproject.toml has, in pip's syntax. pip itself is not run: it
  would build the package and install it over the one under test;
- blocks another test runs as written, and checks more of: the testing page's two test files
  (``tests/testing/test_plugin.py`` runs them with pytest), the nginx configuration
  (``tests/system/test_deploy.py`` runs it in nginx), the gunicorn command
  (``tests/system/test_workers.py`` runs it with redis-server): here, that it is exactly what that
  test runs.

Types: one ``mypy --strict`` run checks every Python block, each a module of its own (a block
that goes on from another, after that one's code). An excerpt cannot be checked alone: its
example file, which it is line by line, is checked instead.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import rxsse
from rxsse import MessageEvent, Parser
from tests.conftest import missing

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NODE_EVENTSOURCE = ROOT / "tests" / "clients" / "node_modules" / "eventsource" / "dist" / "index.js"
PORT = 8080  # web.run_app's default, and the demo's: the port the blocks name
TIMEOUT = 30.0


@dataclass(frozen=True)
class Block:
    """One fenced code block: its page, its number there (from 1), the heading it is under."""

    page: str
    number: int
    heading: str
    lang: str
    code: str

    @property
    def id(self) -> str:
        title = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", self.heading).replace("`", "")
        return f"{self.page} {self.number:02d} {title.split(' — ')[0]}"

    @property
    def module(self) -> str:
        """A module name for the block (mypy checks each block as a module of its own)."""
        return f"{Path(self.page).stem.lower()}_block_{self.number:02d}"


def page_blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, in order."""
    name = page.relative_to(ROOT).as_posix()
    blocks: list[Block] = []
    heading, lang, lines = "", None, []
    for line in page.read_text().splitlines(keepends=True):
        if lang is None and line.startswith("```"):
            lang, lines = line[3:].strip(), []
        elif lang is not None and line.rstrip() == "```":
            blocks.append(Block(name, len(blocks) + 1, heading, lang, "".join(lines)))
            lang = None
        elif lang is not None:
            lines.append(line)
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
    assert lang is None, f"an unclosed block in {name}"
    return blocks


BLOCKS = [block for page in PAGES for block in page_blocks(page)]
PYTHON_BLOCKS = [block for block in BLOCKS if block.lang == "python"]
TESTING_PAGE = "docs/testing.md"

# What the serving programs stream, by their heading: the path read for an event.
SERVED = {
    "A first program": "/events/ticks",
    "rxsse": "/events/ticks",
    "Embedding `stream()` in an existing app": "/prices/ACME",
}
# Blocks that go on from the one before them (under the heading named, on the same page): run
# after its code.
CONTINUES = {
    "Several processes: `RedisBroker`": (
        "The event bus: resume with `Last-Event-ID`, and many processes with Redis or NATS"
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
def test_the_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest):
    if block.lang == "nginx":
        from tests.system.test_deploy import DEPLOY  # what test_deploy serves through nginx

        assert block.code == DEPLOY.read_text()
    elif block.lang == "sh" and "pip install" in block.code:
        assert_installs_rxsse(block.code)
    elif block.lang == "sh":
        from tests.system.test_workers import readme_gunicorn_command  # what test_workers runs

        assert block.code == readme_gunicorn_command()
    elif block.lang == "js":
        run_javascript(block, tmp_path)
    elif block.lang != "python":
        pytest.fail(f"nothing runs a {block.lang!r} block: teach this test how")
    elif block.page == TESTING_PAGE:
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


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[block.id for block in PYTHON_BLOCKS])
def test_the_python_block_typechecks(block: Block, mypy_errors: dict[str, list[str]]):
    assert mypy_errors[block.id] == []


def test_the_site_builds_with_mkdocs_strict(tmp_path: Path):
    if find_spec("mkdocs") is None:
        missing("mkdocs is not installed (pip install -e '.[docs]')")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "api" / "index.html").is_file()


def test_the_api_reference_documents_every_public_name():
    documented = re.findall(r"^::: (\S+)", (ROOT / "docs" / "api.md").read_text(), re.M)
    public = [f"rxsse.{name}" for name in rxsse.__all__]
    assert sorted(documented) == sorted([*public, "rxsse.testing"])


def test_the_readmes_links_lead_to_files():
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text())
    assert links
    assert [link for link in links if not (ROOT / link).is_file()] == []


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_the_extras_table_names_every_extra_for_users(page: str):
    text = (ROOT / page).read_text()
    table = text.split("| extra | what it adds |", 1)[1].split("\n\n", 1)[0]
    listed = re.findall(r"^\| `([\w-]+)` \|", table, re.M)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert sorted(listed) == sorted(set(extras) - {"bench", "docs", "test"})  # (the project's own)


def test_the_loggers_the_pages_name_are_rxsses():
    text = (ROOT / "docs" / "production.md").read_text()
    logs = text.split("- **Logs**", 1)[1].split("\n- ", 1)[0]
    named = re.findall(r"`(rxsse(?:\.\w+)*)`", logs)
    assert "rxsse.stream" in named
    import_module("rxsse.testing")  # every module that logs is imported: these,
    assert rxsse.RedisBroker is not None  # and the brokers' (imported on first use)
    assert rxsse.NatsBroker is not None
    loggers = logging.Logger.manager.loggerDict
    assert [name for name in named if name not in loggers] == []


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """One ``mypy --strict`` run over every Python block, each written to a module of its own
    (an excerpt: its example): each block's errors, by its id."""
    folder = tmp_path_factory.mktemp("blocks")
    checked: dict[str, Path] = {}
    for block in PYTHON_BLOCKS:
        example = excerpted_example(block)
        if example is not None:
            checked[block.id] = ROOT / "examples" / f"{example}.py"
        else:
            checked[block.id] = folder / f"{block.module}.py"
            checked[block.id].write_text(program(block))
    files = sorted({path.resolve() for path in checked.values()})
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--show-absolute-path", *map(str, files)],
        cwd=folder,
        env={**os.environ, "MYPYPATH": str(ROOT)},  # rxsse and the examples, from this clone
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode in (0, 1) and not done.stderr, done.stdout + done.stderr
    errors: dict[Path, list[str]] = {path: [] for path in files}
    for line in done.stdout.splitlines():
        found = re.match(r"(/.+?\.py):\d+: error: ", line)
        if found is not None:
            errors[Path(found[1]).resolve()].append(line)
    return {id: errors[path.resolve()] for id, path in checked.items()}


def program(block: Block) -> str:
    """The block's code, after the code of the block it goes on from, if any."""
    if block.heading not in CONTINUES:
        return block.code
    (before,) = [
        b
        for b in BLOCKS
        if b.page == block.page and b.heading == CONTINUES[block.heading] and b.lang == "python"
    ]
    return before.code + "\n" + block.code


def excerpted_example(block: Block) -> str | None:
    """The example a tutorial step's heading links, if the block is under one."""
    found = re.search(r"\(\.\./examples/(\w+)\.py\)$", block.heading)
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


def assert_installs_rxsse(commands: str) -> None:
    """Each ``pip install`` line installs this project, from its clone's path or a git URL,
    with extras it has."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(project["optional-dependencies"])
    lines = [line.split("  #", 1)[0].strip() for line in commands.splitlines() if line.strip()]
    assert lines and all(line.startswith("pip install ") for line in lines), commands
    for line in lines:
        (argument,) = re.findall(r'"([^"]+)"', line)
        if argument.startswith("/path/to/rxsse["):  # a clone, by its path: a directory[extras]
            requirement = Requirement(argument.replace("/path/to/rxsse", project["name"], 1))
        else:
            requirement = Requirement(argument)
            assert requirement.url == "git+file:///path/to/rxsse", line
        assert requirement.name == project["name"], line
        assert requirement.extras and requirement.extras <= extras, line


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
    """The block in Node, as on a page served by the first program of the block's page (the
    app it is the client of): ``EventSource`` is npm's, resolving URLs against that page's
    origin. The block's first ``console.log`` ends the run."""
    first = next(b for b in BLOCKS if b.page == block.page and b.lang == "python")
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
