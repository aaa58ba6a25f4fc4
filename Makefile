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

.PHONY: all demo test test-main test-floor test-matrix lint typecheck docs bench bench-redis bench-resp \
	bench-scale clean distclean ensure-redis install

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

# `make test` (what CI runs) is the main suite on .venv's Python, then the same suite on the oldest
# supported Python with the lowest declared versions of the runtime dependencies (test-floor), so
# neither the 3.9 support nor a floor in setup.cfg can silently rot. The main suite runs the
# transports as users get them (AIKIT_TRANSPORTS_IO=auto: a lone transport on its own reader
# thread), the floor run puts every one on the shared I/O threads, so both ways are tested in
# full. Where that Python is missing
# (a fresh machine with only python3), the floor run is skipped with a warning, except in CI
# (CI=true), where it must run.
test: test-main
	@if [ -x "$(PYENV_ROOT)/versions/$(FLOOR_PYTHON)/bin/python3" ]; then \
	  $(MAKE) --no-print-directory test-floor; \
	elif [ "$${CI:-}" = true ]; then \
	  echo "error: Python $(FLOOR_PYTHON) is not installed at $(PYENV_ROOT)/versions/$(FLOOR_PYTHON): CI runs the suite on it (pyenv install $(FLOOR_PYTHON))" >&2; exit 1; \
	else \
	  echo "warning: Python $(FLOOR_PYTHON) is not installed at $(PYENV_ROOT)/versions/$(FLOOR_PYTHON): skipping the run on the oldest supported Python with the lowest floors (CI runs it; pyenv install $(FLOOR_PYTHON) to run it here)" >&2; \
	fi

test-main: $(STAMP) ensure-redis
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# --- the support matrix -------------------------------------------------------------------------
# One venv per Python of the classifiers under .venv-matrix/<version> (kept, and re-installed only
# when setup.cfg, setup.py or pyproject.toml changed, like .venv), plus .venv-matrix/floor: the
# oldest Python with requests and websocket-client pinned to the floors that install_requires
# declares (read from setup.cfg, so the floors are written in one place) and urllib3 pinned below.
# pip resolves the rest (Django, redis, websockets) to what these versions accept.
# `make test-matrix` runs the suite on each in turn; `make test-floor` only on the floor venv.
PYENV_ROOT ?= $(HOME)/.pyenv
MATRIX_PYTHONS := 3.9.18 3.10.13 3.11.7 3.12.1 3.13.0
FLOOR_PYTHON := $(firstword $(MATRIX_PYTHONS))
MATRIX_DIR := .venv-matrix
MATRIX_EXTRAS := test,testing,django,redis
# "requests==2.30 websocket-client==1.9.0": install_requires' `>=` lines turned into `==`, and
# urllib3 (requests' dependency, which we use directly too) at the oldest version that works
# (see the comment on install_requires in setup.cfg).
FLOOR_PINS = $(shell sed -n '/^install_requires *=/,/^[^ ]/s/^ \{1,\}\([A-Za-z0-9_.-]\{1,\}\) *>= *\([0-9][0-9.]*\).*/\1==\2/p' setup.cfg) \
  urllib3==2.2.0

# $(call matrix-python,VERSION): that pyenv Python, or a clear error when it is not installed.
matrix-python = $(or $(wildcard $(PYENV_ROOT)/versions/$(1)/bin/python3),$(error Python $(1) is not \
  installed at $(PYENV_ROOT)/versions/$(1) (the support matrix needs it: `pyenv install $(1)`, \
  or PYENV_ROOT=... for another root)))

# $(1): venv directory, $(2): Python version, $(3): extra requirements (the floor pins),
# $(4): more files whose change means a re-install.
define matrix-venv
$(1)/.aikit-installed: setup.cfg setup.py pyproject.toml $(4)
	@test -x $(1)/bin/python || { echo "creating $(1) (Python $(2))"; \
	  $$(call matrix-python,$(2)) -m venv $(1); }
	@echo "installing aikit-transports (editable) with extras [$(MATRIX_EXTRAS)] $(3) into $(1)"
	set -o pipefail; $(1)/bin/python -m pip install --quiet -e '.[$(MATRIX_EXTRAS)]' $(3) 2>&1 \
	  | { grep -v -e 'is ignored: it is neither a file nor a directory' -e 'new release of pip' \
	      -e 'pip install --upgrade pip' || true; }
	touch $$@
endef

$(foreach v,$(MATRIX_PYTHONS),$(eval $(call matrix-venv,$(MATRIX_DIR)/$(v),$(v),)))
$(eval $(call matrix-venv,$(MATRIX_DIR)/floor,$(FLOOR_PYTHON),$(FLOOR_PINS),Makefile))

test-floor: $(MATRIX_DIR)/floor/.aikit-installed ensure-redis
	@echo "== Python $(FLOOR_PYTHON) with the lowest supported $(FLOOR_PINS)"
	AIKIT_TRANSPORTS_IO=shared $(MATRIX_DIR)/floor/bin/python -m pytest $(PYTEST_ARGS)

# Every Python of the classifiers, then the floors; one at a time, stopping at the first failure
# (`make -k test-matrix` runs them all and reports each).
test-matrix: $(foreach v,$(MATRIX_PYTHONS),test-matrix-$(v)) test-floor

test-matrix-%: $(MATRIX_DIR)/%/.aikit-installed ensure-redis
	@echo "== Python $*"
	$(MATRIX_DIR)/$*/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check aikit_transports tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Nitpicky (-n): every cross-reference must resolve; warnings are errors (-W); -E reads every
# page again, so that a warning of a page that did not change is not skipped.
docs: $(STAMP)
	$(BIN)/sphinx-build -E -n -W --keep-going -b html docs docs/_build/html

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
	$(BIN)/python bench/resp_parsers.py $(RESP_BENCH_ARGS)

# RESP reply parsing (issue 18; under a minute, also run by bench-redis): our pure-Python parser
# against hiredis, alone on the readers' and the relay's replies, then end to end against its own
# redis-server. RESP_BENCH_ARGS: see `bench/resp_parsers.py --help` (--quick, --no-e2e).
RESP_BENCH_ARGS ?=

bench-resp: $(STAMP) ensure-redis
	$(BIN)/python bench/resp_parsers.py $(RESP_BENCH_ARGS)

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
	rm -rf $(VENV) $(MATRIX_DIR)
