# The two commands of the README: `make demo` and `make test`. Both set up what is missing first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP_SYS := $(VENV)/.system-ok
STAMP_PY := $(VENV)/.deps-ok
JSIPFS := tools/ipfs/node_modules/.bin/jsipfs

# Tests run in a loopback-only network namespace when possible (tools/loopback-only), one pytest
# worker per core (at most 4): the integration tests often wait on rounds and daemons, so on CI's
# 2 cores two workers cut the tests from 18.7 to 13.8 minutes (2026-12-01).
NETNS := tools/loopback-only
WORKERS := -n auto --maxprocesses 4 --dist worksteal

.PHONY: demo test setup lint unit integration bench clean

demo: setup
	$(VENV)/bin/swarm-node demo $(ARGS)

test: setup lint
	$(NETNS) $(VENV)/bin/pytest $(WORKERS) $(PYTEST_ARGS)

setup: $(STAMP_SYS) $(STAMP_PY) $(JSIPFS)

$(STAMP_SYS): tools/setup-system.sh
	@mkdir -p $(VENV)
	bash tools/setup-system.sh
	@touch $@

$(STAMP_PY): pyproject.toml requirements.lock $(STAMP_SYS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	@touch $@

$(JSIPFS): tools/ipfs/package.json tools/ipfs/package-lock.json $(STAMP_SYS)
	cd tools/ipfs && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lint: $(STAMP_PY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy p2p storage swarm node bootstrap

unit: setup
	$(NETNS) $(VENV)/bin/pytest $(WORKERS) -m "not integration" $(PYTEST_ARGS)

integration: setup
	$(NETNS) $(VENV)/bin/pytest $(WORKERS) -m integration $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) tools/ipfs/node_modules .pytest_cache .ruff_cache .mypy_cache
