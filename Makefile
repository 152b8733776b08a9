# Siyu: `make demo` runs the platform, `make test` runs every check CI runs.
# Both set up what they need first and skip what is already up to date.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.siyu-installed
NODE_STAMP := node_modules/.siyu-installed
PO_FILES := $(wildcard src/siyu/locale/*/LC_MESSAGES/*.po)
MO_FILES := $(PO_FILES:.po=.mo)
TEST_DATA := $(CURDIR)/var/test
PYTEST := $(BIN)/pytest -q
export SIYU_REQUIRE_REDIS := 1

.PHONY: demo test setup lint test-sqlite test-postgres test-browser test-deps format clean

demo: setup
	$(BIN)/siyu demo

test: setup test-deps lint test-sqlite test-postgres test-browser
	@echo "== all stages passed: lint, SQLite, PostgreSQL, browser (Chromium) =="

setup: $(PY_STAMP) $(NODE_STAMP) $(MO_FILES)

$(PY_STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 \
		| grep -v -i "warning" || true
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

%.mo: %.po $(PY_STAMP)
	$(BIN)/python scripts/compile_messages.py $<

# Debian packages the test stages need: PostgreSQL server, redis-server, Chromium.
test-deps:
	scripts/ensure-debian-packages.sh pg_ctl:postgresql redis-server:redis-server chromium:chromium

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(PY_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test-sqlite: setup
	@echo "== stage 1/3: test suite on SQLite =="
	rm -rf $(TEST_DATA)-sqlite
	SIYU_DATA_DIR=$(TEST_DATA)-sqlite $(PYTEST)

test-postgres: setup
	@echo "== stage 2/3: test suite on PostgreSQL =="
	rm -rf $(TEST_DATA)-postgres
	url="$${SIYU_TEST_DATABASE_URL:-$$(scripts/test-postgres.sh start)}"; \
	echo "   database: $${url%%@*}@…"; \
	SIYU_DATA_DIR=$(TEST_DATA)-postgres SIYU_DATABASE_URL="$$url" $(PYTEST)

test-browser: setup
	@echo "== stage 3/3: browser tests in headless Chromium =="
	rm -rf $(TEST_DATA)-browser
	SIYU_DATA_DIR=$(TEST_DATA)-browser $(PYTEST) -m browser tests/browser

clean:
	-scripts/test-postgres.sh stop
	rm -rf var/test-* $(VENV) node_modules
