"""Where the platform keeps its state, decided in one place.

With no configuration everything lives under one directory, ML_PLATFORM_HOME (default
`./.ml_platform` at the project root): Dagster storage, the MLflow store and artifacts, the DuckDB
warehouse, data snapshots and reports. Deleting it resets everything.

Values are read from the environment when asked for, never at import time, so a test or a CLI
call can point the platform at another home before it runs.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"

# Warehouse tables the platform writes (besides dbt's features.*), named once. Here rather than in the
# Warehouse resource so that light readers (`ml-platform lineage`) need not import Dagster.
PREDICTIONS_TABLE = "serving.batch_predictions"
MODEL_VERSIONS_TABLE = "registry.model_versions"  # lineage of every registered version
AUDIT_TABLE = "governance.audit_log"
ALERTS_TABLE = "governance.alerts"
PREDICTION_LOG_TABLE = "serving.prediction_log"  # every online prediction
LABELS_TABLE = "monitoring.labels"  # late labels, one row per labelled prediction
LIVE_PERFORMANCE_TABLE = "monitoring.live_performance"  # the live metric per day
COST_TABLE = "monitoring.cost_metrics"  # cost drift: one row per day and metric


def platform_home() -> Path:
    return Path(os.environ.get("ML_PLATFORM_HOME") or PROJECT_ROOT / ".ml_platform").resolve()


def config_path() -> Path:
    return Path(os.environ.get("ML_PLATFORM_CONFIG") or PROJECT_ROOT / "ml_platform.yaml").resolve()


def mlflow_ui_url() -> str:
    """Where people open the MLflow UI (`make ui` serves it here); used for links in Dagster metadata."""
    return os.environ.get("ML_PLATFORM_MLFLOW_UI_URL", "http://127.0.0.1:5000").rstrip("/")


def dagster_ui_url() -> str:
    """Where people open the Dagster UI (`make ui` serves it here); used for links in alerts."""
    return os.environ.get("ML_PLATFORM_DAGSTER_UI_URL", "http://127.0.0.1:3000").rstrip("/")


def dbt_executable() -> str:
    """dbt runs from its own virtualenv (see pyproject's `dbt` extra); ML_PLATFORM_DBT overrides."""
    explicit = os.environ.get("ML_PLATFORM_DBT")
    if explicit:
        return explicit
    bundled = PROJECT_ROOT / ".dbt-venv" / "bin" / "dbt"
    if bundled.exists():
        return str(bundled)
    # Not installed: name the expected path, so the error from running it says what `make setup` creates.
    return shutil.which("dbt") or str(bundled)


@dataclass(frozen=True)
class PlatformPaths:
    home: Path

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.mlflow_dir / "artifacts"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def snapshots(self) -> Path:
        return self.home / "snapshots"

    @property
    def online_store(self) -> Path:
        """SQLite file of the online feature table (one row per entity, for the serving process)."""
        return self.home / "online" / "features.sqlite"

    @property
    def label_landing(self) -> Path:
        """Where late label files land (performance.labels_path overrides)."""
        return self.home / "landing" / "labels"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    def ensure(self) -> PlatformPaths:
        for path in (self.dagster_home, self.mlflow_dir, self.artifact_root, self.snapshots, self.quarantine, self.reports):
            path.mkdir(parents=True, exist_ok=True)
        # dbt reads the warehouse location from the environment (dbt_project/profiles.yml).
        os.environ["ML_PLATFORM_HOME"] = str(self.home)
        return self


def platform_paths() -> PlatformPaths:
    return PlatformPaths(platform_home())
