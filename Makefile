# One-command setup: every target below creates .venv and installs what it needs.

# The supported Pythons, newest first. .venv (make demo, make test) is made with the newest
# found: pyenv's builds first, then python3.X on the PATH, else python3.
PYTHONS := 3.13 3.12 3.11
find_python = $(firstword $(wildcard $(HOME)/.pyenv/versions/$(1).*/bin/python3) \
	$(shell python$(1) -c 'import sys; print(sys.executable)' 2>/dev/null))
PYTHON ?= $(firstword $(foreach v,$(PYTHONS),$(call find_python,$(v))) python3)
# pyenv's shims find each of them (for nox).
export PYENV_VERSION := $(subst $() $(),:,$(strip $(shell pyenv versions --bare 2>/dev/null | grep -E '^3\.1[1-9]\.[0-9]+$$')))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-pythons test-oldest-clients lint typecheck bench cluster clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

PORT ?= 8080

demo: $(STAMP)  ## Serve every example at http://127.0.0.1:$(PORT) (make demo PORT=8000)
	$(BIN)/python -m examples.demo --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check rxsse tests examples bench docs/hooks noxfile.py
	$(BIN)/ruff format --check rxsse tests examples bench docs/hooks noxfile.py

typecheck: $(STAMP)
	$(BIN)/mypy --strict rxsse

# The JavaScript the tests use (npm eventsource, @asyncapi/parser), as locked.
NODE_CLIENTS := tests/clients/node_modules/.installed

$(NODE_CLIENTS): tests/clients/package-lock.json
	npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error
	touch $(NODE_CLIENTS)

test: lint typecheck $(NODE_CLIENTS)  ## ruff, mypy --strict, then the test suite (newest Python)
	$(BIN)/python -c 'import sys; print("the full suite on Python", sys.version.split()[0])'
	$(BIN)/python -m pytest

# The older supported Pythons, each in a venv of its own (nox): the suite less the system
# tests, which the newest runs in make test. Fails when one of them is missing.
OLDER_PYTHONS := $(wordlist 2,$(words $(PYTHONS)),$(PYTHONS))

test-pythons: $(STAMP)  ## the tests on the older supported Pythons (3.11, 3.12)
	$(BIN)/nox --error-on-missing-interpreters --python $(OLDER_PYTHONS)

# The bus tests again with the oldest redis-py and nats-py that pyproject.toml allows.
OLDEST_REDIS := 5.0.8
OLDEST_NATS := 2.15.0
OLD_VENV := .venv-oldest-clients
OLD_STAMP := $(OLD_VENV)/.installed

$(OLD_STAMP): pyproject.toml
	test -x $(OLD_VENV)/bin/python || $(PYTHON) -m venv $(OLD_VENV)
	$(OLD_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OLD_VENV)/bin/python -m pip install --quiet -e '.[test]' \
		'redis[hiredis]==$(OLDEST_REDIS)' 'nats-py==$(OLDEST_NATS)'
	touch $(OLD_STAMP)

test-oldest-clients: $(OLD_STAMP)  ## the bus tests with redis-py $(OLDEST_REDIS), nats-py $(OLDEST_NATS)
	$(OLD_VENV)/bin/python -m pytest -p no:cacheprovider tests/bus

# The documentation site, in site/ (mkdocs build --strict: a broken link or reference fails).
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

.PHONY: docs
docs: $(DOCS_STAMP)  ## The documentation site (docs/*.md, the API from the docstrings) in site/
	$(BIN)/mkdocs build --strict --site-dir site

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# The compiled load client (the Python one is the fallback without gcc).
bench/loadclient: bench/loadclient.c
	gcc -O2 -o $@ $<

bench: $(BENCH_STAMP) bench/loadclient  ## rxsse against the limit and its peers; threads; bus fan-out; compression
	ulimit -n 20000 && $(BIN)/python -m bench.run
	$(BIN)/python -m bench.threads
	ulimit -n 20000 && $(BIN)/python -m bench.fanout
	$(BIN)/python -m bench.publish
	$(BIN)/python -m bench.compression
	ulimit -n 20000 && $(BIN)/python -m bench.capacity

clean:
	rm -rf $(VENV) $(OLD_VENV) .nox site .mypy_cache .ruff_cache .pytest_cache

cluster: $(STAMP)  ## The demo on gunicorn: two workers on port 8081 sharing one redis-server
	$(BIN)/python -m examples.cluster
