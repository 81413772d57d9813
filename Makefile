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

# The service on its embedded defaults, with the provider simulator beside it (stopped with it)
# and, on a fresh data folder, the demo whitelist (the README's example applicant).
SIMULATOR_PORT ?= 8081
run: setup
	@test -f "$${LOAN_DATA_DIR:-var}/whitelist/ACTIVE" || $(BIN)/loan-decision whitelist import docs/demo-whitelist.csv
	@$(BIN)/loan-decision providers simulate --port $(SIMULATOR_PORT) & sim=$$!; \
	trap 'kill $$sim 2>/dev/null' EXIT INT TERM; \
	LOAN_PROVIDERS_URL="$${LOAN_PROVIDERS_URL:-http://127.0.0.1:$(SIMULATOR_PORT)}" \
	LOAN_PROVIDER_KEY="$${LOAN_PROVIDER_KEY:-dev-provider-key}" $(BIN)/loan-decision serve

lint: setup
	$(BIN)/loan-decision rules lint rules
	$(BIN)/loan-decision rules test rules

test: setup lint
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python loadtests/bench.py
