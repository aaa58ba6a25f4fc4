# Everyday commands. The first run builds .venv from the machine's python3 and installs the
# package (editable) with every extra; later runs only re-install when setup.cfg, setup.py or
# pyproject.toml changed. An existing .venv is updated, never recreated.

PY ?= python3
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.aikit-installed
EXTRAS := test,dev,docs,django,redis,testing
PYTEST_ARGS ?=

.PHONY: all demo test lint typecheck docs bench bench-redis bench-scale clean distclean ensure-redis install

all: lint typecheck test

$(BIN)/python:
	$(PY) -m venv $(VENV)

# pip's config on these machines names local indexes that may not exist: drop those warnings.
$(STAMP): setup.cfg setup.py pyproject.toml | $(BIN)/python
	@echo "installing aikit-transports (editable) with extras [$(EXTRAS)] into $(VENV)"
	set -o pipefail; $(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]' 2>&1 \
	  | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/aikit-transports demo

# redis-server is needed by the tests marked `redis`. Installed only when missing: with apt-get
# as root (as in CI), through `sudo -n` otherwise; without either, those tests are skipped.
ensure-redis:
	@if ! command -v redis-server >/dev/null 2>&1; then \
	  echo "redis-server not found: installing it with apt-get"; \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	    sudo -n apt-get update -qq && DEBIAN_FRONTEND=noninteractive sudo -n apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "warning: cannot install redis-server (not root, no sudo): tests marked redis will be skipped" >&2; \
	  fi; \
	fi

test: $(STAMP) ensure-redis
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check aikit_transports tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

# The benchmark's peers (extra `bench`) go into .venv once; BENCH_ARGS passes options to
# bench/run.py, e.g. `make bench BENCH_ARGS=--quick` (see `bench/run.py --help`).
BENCH_STAMP := $(VENV)/.aikit-bench-installed
BENCH_ARGS ?=

$(BENCH_STAMP): $(STAMP)
	set -o pipefail; $(BIN)/python -m pip install --quiet -e '.[bench]' 2>&1 \
	  | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	touch $@

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Fan-out through Redis (about 2 minutes; starts its own redis-server): readers' throughput,
# latency and lease takeover. REDIS_BENCH_ARGS: see `bench/redis_fanout.py --help`.
REDIS_BENCH_ARGS ?=

bench-redis: $(STAMP) ensure-redis
	$(BIN)/python bench/redis_fanout.py $(REDIS_BENCH_ARGS)

# One process, many streams (issue 18): N SSE and N WebSocket streams idle, then under load,
# ours (plain and under a manager) and the asyncio peers in the same run; about a minute per
# (client, wire, N) by default. SCALE_ARGS: see `bench/scale.py --help`, e.g.
# `make bench-scale SCALE_ARGS=--quick` or `SCALE_ARGS="--n 1000 --idle 10"`.
SCALE_ARGS ?=

bench-scale: $(BENCH_STAMP)
	$(BIN)/python bench/scale.py $(SCALE_ARGS)

clean:
	rm -rf build dist *.egg-info docs/_build .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
