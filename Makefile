# fednet: every recipe installs the project first, so any of them works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= configs/default.toml
RUN_DIR ?=
export FLWR_TELEMETRY_ENABLED := 0
export HF_HUB_OFFLINE := 1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1

.PHONY: install simulate run test test-fast lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

simulate: install  ## run the default federation in simulation
	$(BIN)/fednet simulate --config $(CONFIG) $(if $(RUN_DIR),--run-dir $(RUN_DIR))

run: simulate

test: install  ## unit and integration tests
	$(BIN)/pytest

test-fast: install  ## unit tests only
	$(BIN)/pytest -m "not integration and not slow"

lint: install
	$(BIN)/ruff check fednet server clients tests
	$(BIN)/ruff format --check fednet server clients tests
	$(BIN)/mypy

format: install
	$(BIN)/ruff format fednet server clients tests
	$(BIN)/ruff check --fix fednet server clients tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
