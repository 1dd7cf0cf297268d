# Daybook: `make run` serves everything, `make test` runs the whole suite.
# Both create .venv and install the project first; nothing is installed by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/daybook serve

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/hot_sku.py
	$(BIN)/python bench/webhooks.py
	$(BIN)/python bench/noisy_neighbour.py
	$(BIN)/python bench/deployment.py

clean:
	rm -rf $(VENV) .daybook .pytest_cache .mypy_cache .ruff_cache .hypothesis
