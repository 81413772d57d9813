# The two commands of README.md: `make run` and `make test`. Both set up .venv first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test lint bench setup

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: setup
	$(BIN)/loan-decision serve

lint: setup
	$(BIN)/loan-decision rules lint rules
	$(BIN)/loan-decision rules test rules

test: setup lint
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python loadtests/bench.py
