# Two entry points work from a fresh clone with only python3: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python

.PHONY: demo test lint typecheck pytest lab bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Stamp files: reinstall only when pyproject.toml changes.
$(VENV)/.installed-base: pyproject.toml | $(BIN)/activate
	$(PY) -m pip install --quiet -e ".[notebook]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/activate
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed-base

## demo: set up and run the main job on the offline simulator
demo: $(VENV)/.installed-base
	$(PY) examples/demo.py

## test: set up and run ruff, mypy and the whole test suite
test: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

pytest: $(VENV)/.installed-dev
	$(BIN)/pytest

## lab: open JupyterLab on the tutorials
lab: $(VENV)/.installed-dev
	$(BIN)/jupyter lab notebooks/01-quickstart.ipynb

## bench: run every benchmark (ratios against named peers), not part of `make test`
bench: $(VENV)/.installed-dev
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
