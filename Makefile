# caitool — set-up, tests, and the paper's pipeline as file targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
CAITOOL := $(VENV)/bin/caitool
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test lint help

help:
	@echo "make install   create $(VENV) with the CPU build of torch and caitool"
	@echo "make test      run the test suite (offline)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# CPU torch first: a plain 'torch' requirement would pull the multi-GB CUDA build.
install: $(PY)
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"

test:
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check src tests

# Speed figures (about 10-15 minutes on a CPU); writes docs/benchmarks.md. BENCH_ARGS=--quick
.PHONY: bench
bench:
	HF_HUB_OFFLINE=1 $(PY) bench/run.py $(BENCH_ARGS)
