# Two entry points that set themselves up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 6

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/xenon --max-absolute C --max-modules B --max-average A src

test: setup lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal -q --durations=15

clean:
	rm -rf $(VENV) .meshpilot .pytest_cache .ruff_cache .hypothesis
