# Two entry points work from a fresh clone with only python3: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python

.PHONY: demo test lint typecheck pytest lab bench native clean

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

# The C accelerators are rebuilt in place whenever their sources change (pip install builds them
# too; this keeps an existing venv's build from going stale after an edit).
NATIVE_SRC := $(wildcard src/cachescope/_native/*.c src/cachescope/_native/*.h) hatch_build.py
$(VENV)/.built-native: $(NATIVE_SRC) | $(BIN)/activate
	$(PY) hatch_build.py
	touch $@

# Every C accelerator has a pure-Python twin; the suites that exercise them run again without them.
PURE_PYTEST := CACHESCOPE_PURE=1 $(BIN)/pytest -q -m "not browser and not notebooks and not slow" \
	tests/foundation tests/sim tests/stability tests/client tests/logs tests/lint

## native: rebuild the optional C accelerators in place
native:
	$(PY) hatch_build.py
	touch $(VENV)/.built-native

## demo: set up and run the main job on the offline simulator
demo: $(VENV)/.installed-base $(VENV)/.built-native
	$(PY) examples/demo.py

## test: set up and run ruff, mypy and the whole test suite
test: $(VENV)/.installed-dev $(VENV)/.built-native
	$(BIN)/ruff check src tests benchmarks examples hatch_build.py
	$(BIN)/ruff format --check src tests benchmarks examples hatch_build.py
	$(BIN)/mypy
	$(BIN)/pytest
	@echo "== the hot paths again on their pure-Python twins (CACHESCOPE_PURE=1) =="
	$(PURE_PYTEST)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks examples hatch_build.py
	$(BIN)/ruff format --check src tests benchmarks examples hatch_build.py

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

pytest: $(VENV)/.installed-dev $(VENV)/.built-native
	$(BIN)/pytest

## lab: open JupyterLab on the tutorials
lab: $(VENV)/.installed-dev
	$(BIN)/jupyter lab notebooks/01-quickstart.ipynb

## bench: run every benchmark (ratios against named peers), not part of `make test`
bench: $(VENV)/.installed-dev $(VENV)/.built-native
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
