# The two commands of README.md: `make run` and `make test`. Both set up .venv first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test lint bench setup tools lock

setup: $(VENV)/.installed

# Quiet: the installers' output goes to $(VENV)/install.log, shown only when something fails.
# Every dependency comes pinned and hashed from requirements-dev.lock (regenerate: make lock).
$(VENV)/.installed: pyproject.toml requirements-dev.lock
	@echo "setting up $(VENV) (a minute or two the first time; log: $(VENV)/install.log)"
	@$(PYTHON) -m venv $(VENV)
	@{ $(BIN)/pip install --quiet --upgrade pip \
	   && $(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock \
	   && $(BIN)/pip install --quiet --no-deps -e .; } \
	  > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $@

# The lock files, from pyproject.toml: the runtime (the image) and the whole test set.
LOCK := $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links
lock: setup
	$(LOCK) --output-file requirements.lock pyproject.toml
	$(LOCK) --extra dev --extra train --extra report --output-file requirements-dev.lock pyproject.toml

# The service on its embedded defaults, with the provider simulator beside it (stopped with it)
# and, on a fresh data folder, the demo whitelist (the README's example applicants). The
# simulator listens on SIMULATOR_PORT; if it cannot start, neither does the service.
SIMULATOR_PORT ?= 8081
run: setup
	@test -f "$${LOAN_DATA_DIR:-var}/whitelist/ACTIVE" || $(BIN)/loan-decision whitelist import docs/demo-whitelist.csv
	@$(BIN)/loan-decision providers simulate --port $(SIMULATOR_PORT) & sim=$$!; \
	trap 'kill $$sim 2>/dev/null' EXIT INT TERM; \
	sleep 1; kill -0 $$sim 2>/dev/null || exit 2; \
	LOAN_PROVIDERS_URL="$${LOAN_PROVIDERS_URL:-http://127.0.0.1:$(SIMULATOR_PORT)}" \
	LOAN_PROVIDER_KEY="$${LOAN_PROVIDER_KEY:-dev-provider-key}" $(BIN)/loan-decision serve

lint: setup
	@$(BIN)/ruff check service offline
	@$(BIN)/mypy service
	$(BIN)/loan-decision rules lint rules
	$(BIN)/loan-decision rules test rules

# Debian packages the tests need and start themselves: 'prometheus' (promtool checks and
# unit-tests ops/prometheus/alerts.yml; the server scrapes a live service in test_prometheus.py),
# 'postgresql' (a throw-away cluster on a loopback port for the store and replica tests,
# tests/pgcluster.py) and 'chromium' with 'chromium-driver' (the review console driven in a
# headless browser, tests/test_console_browser.py). Installed when missing; without root the
# tests that need them are skipped with a loud line.
NEEDED = $(if $(shell command -v promtool),,prometheus) $(if $(wildcard /usr/lib/postgresql/*/bin/postgres),,postgresql) \
	$(if $(shell command -v chromium),,chromium) $(if $(shell command -v chromedriver),,chromium-driver)
tools:
	@needed="$(strip $(NEEDED))"; [ -z "$$needed" ] && exit 0; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; else \
	    echo "*** $$needed missing and no root: the tests that need them will be SKIPPED ***"; exit 0; fi; \
	  echo "installing $$needed (apt-get)"; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$needed >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$needed >/dev/null; } || \
	  echo "*** could not install $$needed: the tests that need them will be SKIPPED ***"

test: setup lint tools
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python loadtests/bench.py
