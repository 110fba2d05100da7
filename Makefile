# Two commands do all the set-up on a fresh machine (Python 3.11, no internet beyond PyPI):
#   make run    builds .venv and runs the whole pipeline on configs/small.yaml
#   make test   builds .venv and runs the test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha256sum | cut -c1-12)
CONFIG ?= configs/small.yaml
PYTEST_ARGS ?=

.PHONY: setup run test test-fast ui bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or: make PYTHON=python3 ...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24"
	# -c pins every package (torch 2.13.0 CPU included: never a CUDA download)
	$(BIN)/pip install -q -c requirements.lock -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $@

run: setup
	$(BIN)/crawl2model run --config $(CONFIG)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The Prefect UI over the embedded runs' database (.prefect/): http://127.0.0.1:4200
ui: setup
	PREFECT_HOME=$(CURDIR)/.prefect PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/prefect server start --host 127.0.0.1 --port 4200

clean:
	rm -rf data/runs .prefect
