# Two commands a newcomer needs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test lint bench services

$(BIN)/integrity: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	@touch $@

setup: $(BIN)/integrity

demo: setup
	$(BIN)/integrity demo

services:
	bash scripts/services.sh

test: setup services lint
	$(BIN)/python -m pytest -q -n auto

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup services
	$(BIN)/python -m bench.run_all
