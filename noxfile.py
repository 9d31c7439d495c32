"""The tests on every supported Python (``make test-pythons``), each in a venv of its own.

The system tests (browsers, nginx, worker processes) run on the newest Python in ``make
test``; here every other test runs: the layers, Redis included.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

#: The Pythons pyproject.toml promises (requires-python and the classifiers).
PYTHONS = ["3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """pytest on this Python, the system tests aside."""
    session.install("--quiet", "-e", ".[test]")
    args = session.posargs or ["tests", "--ignore=tests/system"]
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", "-q", *args)
