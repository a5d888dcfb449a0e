# The verbs a newcomer types. Everything installs into ./.venv (the platform) and ./.dbt-venv (dbt,
# kept apart so the Dagster definitions load without importing dbt-core). State lives in ./.ml_platform.
PYTHON ?= python3.11
VENV := .venv
DBT_VENV := .dbt-venv
BIN := $(VENV)/bin
export ML_PLATFORM_HOME ?= $(CURDIR)/.ml_platform
export DAGSTER_HOME := $(ML_PLATFORM_HOME)/dagster
DAGSTER_PORT ?= 3000
MLFLOW_PORT ?= 5000

.PHONY: setup demo ui test lint bench clean

setup: $(VENV)/.installed $(DBT_VENV)/.installed

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

ui: setup
	@mkdir -p $(DAGSTER_HOME)
	@$(BIN)/python -c "from ml_platform.runner import use_environment; use_environment()"
	@echo "Dagster UI: http://127.0.0.1:$(DAGSTER_PORT)   MLflow UI: http://127.0.0.1:$(MLFLOW_PORT)   (Ctrl-C stops both)"
	@trap 'kill 0' INT TERM EXIT; \
	$(BIN)/mlflow server --host 127.0.0.1 --port $(MLFLOW_PORT) \
		--backend-store-uri sqlite:///$(ML_PLATFORM_HOME)/mlflow/mlflow.db \
		--default-artifact-root $(ML_PLATFORM_HOME)/mlflow/artifacts & \
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(DAGSTER_PORT) & \
	wait

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python bench/lifecycle.py
	$(BIN)/python bench/batch_scoring.py
	$(BIN)/python bench/drift.py

.PHONY: bench-serving
bench-serving: setup
	$(BIN)/python bench/serving.py

clean:
	rm -rf $(ML_PLATFORM_HOME) dbt_project/target dbt_project/logs
