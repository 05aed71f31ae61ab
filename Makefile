# Two commands for a fresh machine: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_SECONDS ?= 0
PYTEST_ARGS ?=

.PHONY: demo test lint bench chaos contracts config-reference clean system

# lifetimes is installed without its dependencies (its pins are old): its CDNOW data file
# is used by `crmstream backfill cdnow` and the evaluations, and its BG/NBD and
# Gamma-Gamma fitters only by `crmstream evaluate value`, whose dependencies (autograd,
# dill, scipy) come with the `evaluate` extra, which `test` includes.
# The Node example's packages (Ajv) are installed too when npm is there: its test needs them.
$(STAMP): pyproject.toml Makefile examples/node/package-lock.json | system
	@test -n "$(PYTHON)" || { echo "Python 3.11 is required (python3.11 not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps 'lifetimes>=0.11.3'
	@if command -v npm >/dev/null; then npm ci --prefix examples/node --no-audit --no-fund --silent; \
	else echo "npm not found: tests/integration/test_language_examples.py will fail (Debian: apt-get install nodejs npm)"; fi
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/crmstream demo --seconds $(DEMO_SECONDS)

# Two pytest processes: the tests with servers run one after another on one of them (see
# tests/conftest.py), the pure tests and doctests on the other.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# Debian packages some tests need: chromium for the browser test (tests/browser, driven by
# Playwright's executable_path: Playwright's own browser download cannot work offline),
# Node with npm for the Ajv example (examples/node), Go with gojsonschema for the Go example
# (examples/go, built in GOPATH mode from Debian's sources: no module proxy needed) and kcat
# for the README's kcat commands (tests/integration/test_kcat.py). Installed with apt when
# run as root; otherwise the make goes on and says what is missing (those tests then skip
# with a hint, and fail under CI=true).
system:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	command -v go >/dev/null 2>&1 || missing="$$missing golang-go"; \
	test -d /usr/share/gocode/src/github.com/xeipuuv/gojsonschema || missing="$$missing golang-github-xeipuuv-gojsonschema-dev"; \
	command -v kcat >/dev/null 2>&1 || missing="$$missing kcat"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing for the tests (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "not installed:$$missing (as root: apt-get install$$missing)"; \
	  fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check schemas models streams agents tests bench
	$(BIN)/ruff format --check schemas models streams agents tests bench

# The mixed-stream benchmark (bench/mixed.py): a table, and bench/out/mixed.json. It ends
# within BENCH_BUDGET minutes on 2 cores: the soak gets what the runs leave of it, up to
# SOAK_MINUTES. First, the cost of 20 marketing rules per event (bench/rules.py, seconds),
# of recommendations per purchase (bench/recommend.py, half a minute) and of an event as
# the customers' state ages (bench/aging.py, about a minute): `make bench` ends within
# 15 minutes.
# The older benchmarks (bench/purchase_path.py, ...) run by hand.
SOAK_MINUTES ?= 10
BENCH_BUDGET ?= 13
bench: $(STAMP)
	$(BIN)/python bench/rules.py
	$(BIN)/python bench/recommend.py
	$(BIN)/python bench/aging.py
	$(BIN)/python bench/mixed.py --soak-minutes $(SOAK_MINUTES) --budget-minutes $(BENCH_BUDGET)

# The fault-injection suite (tests/chaos/) with its full schedules: 100,000 events with 20
# worker kills and scaling 1 -> 3 -> 1 (C1), Redis restarts (C2). `make test` runs reduced ones.
chaos: $(STAMP)
	CRM_CHAOS_FULL=1 $(BIN)/python -m pytest tests/chaos -m chaos -s $(PYTEST_ARGS)

# Regenerate schemas/json/*.json and schemas/asyncapi.yaml from the msgspec records.
contracts: $(STAMP)
	$(BIN)/python -m crmstream.streams.tools.contracts

# Regenerate the README's table of settings from streams/settings.py (a test checks it).
config-reference: $(STAMP)
	$(BIN)/python -m crmstream.streams.tools.config_reference README.md

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
