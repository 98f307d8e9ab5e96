# Every target sets up .venv itself (idempotent: reinstalls only when pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test check bench fmt emulator clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/autoscaler demo

test: $(STAMP)
	$(BIN)/python -m pytest

check: $(STAMP)
	$(BIN)/ruff format --check autoscaler tests bench
	$(BIN)/ruff check autoscaler tests bench
	$(BIN)/mypy autoscaler
	$(BIN)/lint-imports
	# Offline-tolerant: packages whose advisories cannot be fetched are listed as skipped.
	$(BIN)/pip-audit --skip-editable --progress-spinner off

fmt: $(STAMP)
	$(BIN)/ruff format autoscaler tests bench
	$(BIN)/ruff check --fix autoscaler tests bench

# The benchmark alone needs the bench extra (statsmodels, scipy); test/check do not pay for it.
$(VENV)/.installed-bench: $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench

emulator: $(STAMP)
	$(BIN)/autoscaler emulator --port 0

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
