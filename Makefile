# The verbs a newcomer types. Everything installs into ./.venv (the platform) and ./.dbt-venv (dbt,
# kept apart so the Dagster definitions load without importing dbt-core). State lives in ./.ml_platform.
PYTHON ?= python3.11
VENV := .venv
DBT_VENV := .dbt-venv
BIN := $(VENV)/bin
# `make clean` removes it. Not exported: each command finds its home itself (ML_PLATFORM_HOME or ./.ml_platform) and
# points Dagster at it; an exported DAGSTER_HOME reached the tests' subprocesses and opened this home from them.
ML_PLATFORM_HOME ?= $(CURDIR)/.ml_platform
DAGSTER_PORT ?= 3000
MLFLOW_PORT ?= 5000

.PHONY: setup demo ui test lint bench clean

setup: $(VENV)/.installed $(DBT_VENV)/.installed chromium

# The browser test (ml_platform_tests/integration/test_browser.py) drives Debian's Chromium with Playwright; never
# `playwright install` (its browser download is not used). Installed when we can (apt-get, as root), else a hint.
.PHONY: chromium
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium and chromium-driver (for the browser test)"; \
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; } \
		|| echo "hint: apt-get could not install chromium: the browser test will be skipped"; \
	else \
		echo "hint: /usr/bin/chromium is missing, so the browser test will be skipped; install it with" \
		     "'sudo apt-get install -y chromium chromium-driver' (Debian/Ubuntu)"; \
	fi

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: ml_platform needs Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# dbt's pins come from pyproject's `dbt` extra: one place for every dependency.
$(DBT_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DBT_VENV)
	$(DBT_VENV)/bin/pip install --quiet --upgrade pip
	$(DBT_VENV)/bin/pip install --quiet $$($(PYTHON) -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml','rb'))['project']['optional-dependencies']['dbt']))")
	touch $@

demo: setup
	$(BIN)/ml-platform demo

# Both UIs on the profile's stores: SQLite by default, PostgreSQL with ML_PLATFORM_DATABASE_URL (ml_platform/ui.py).
ui: setup
	$(BIN)/ml-platform ui --dagster-port $(DAGSTER_PORT) --mlflow-port $(MLFLOW_PORT)

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python bench/lifecycle.py
	$(BIN)/python bench/batch_scoring.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/incremental.py

.PHONY: bench-serving
bench-serving: setup
	$(BIN)/python bench/serving.py

clean:
	rm -rf $(ML_PLATFORM_HOME) dbt_project/target dbt_project/logs
