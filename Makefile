# Each target creates or reuses .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test flake-guard lint bench security clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/changeconsole --local

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(MAKE) --no-print-directory security
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The suite twice in a row on a fresh clone of HEAD (.ci/flake-guard).
flake-guard:
	.ci/flake-guard

# bandit (findings fixed or explained) and pip-audit (reports plainly when it cannot reach PyPI).
security: $(STAMP)
	$(BIN)/python tests/security/static_check.py
	$(BIN)/python tests/security/dependency_audit.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# All benches (moto runs in its own process); one alone: make bench BENCH="fanout --sizes 30".
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
