# One-command setup: every target below creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench cluster clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)  ## Serve every example at http://127.0.0.1:8080
	$(BIN)/python -m examples.demo

lint: $(STAMP)
	$(BIN)/ruff check rxsse tests examples bench
	$(BIN)/ruff format --check rxsse tests examples bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict rxsse

test: lint typecheck  ## ruff, mypy --strict, then the test suite
	$(BIN)/python -m pytest

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)  ## rxsse beside raw aiohttp, aiohttp-sse and sse-starlette; bus fan-out
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.fanout

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

cluster: $(STAMP)  ## Two demo apps (ports 8081, 8082) sharing one redis-server
	$(BIN)/python -m examples.cluster
