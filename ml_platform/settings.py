"""Where the platform keeps its state, decided in one place: the embedded default or the production profile.

Embedded (no configuration): everything lives under one directory, ML_PLATFORM_HOME (default
`./.ml_platform` at the project root): Dagster storage (SQLite), the MLflow store (SQLite) and
artifacts, the DuckDB warehouse, data snapshots and reports. Deleting it resets everything.

Production (`ML_PLATFORM_DATABASE_URL=postgresql://user[:password]@host:port/<name>`): every store
moves to that PostgreSQL server, each in its own database - `<name>` (the warehouse: dbt's features,
predictions, audit log, alerts), `<name>_dagster` (Dagster's run, event-log and schedule storage)
and `<name>_mlflow` (MLflow's tracking and registry backend) - created on first use. Snapshots,
reports and MLflow artifacts stay on a shared directory (ML_PLATFORM_HOME, or
ML_PLATFORM_ARTIFACT_ROOT for artifacts, which may be an s3:// URI).

Values are read from the environment when asked for, never at import time, so a test or a CLI
call can point the platform at another home or database before it runs.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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


# Every ML_PLATFORM_* environment variable the platform reads (docs/configuration.md); set by the platform itself:
# ML_PLATFORM_DBT_TARGET and ML_PLATFORM_PG_* (for dbt), ML_PLATFORM_DAGSTER_DATABASE_URL (for dagster.yaml),
# ML_PLATFORM_WARM_DBT (for dagster-dbt); ML_PLATFORM_TEST_POSTGRES is the test suite's.
ENVIRONMENT_VARIABLES = frozenset({
    "ML_PLATFORM_HOME", "ML_PLATFORM_CONFIG", "ML_PLATFORM_DATABASE_URL", "ML_PLATFORM_MLFLOW_TRACKING_URI",
    "ML_PLATFORM_ARTIFACT_ROOT", "ML_PLATFORM_EXECUTOR", "ML_PLATFORM_CELERY_BROKER", "ML_PLATFORM_CELERY_QUEUE",
    "ML_PLATFORM_CELERY_RESULT_BACKEND", "ML_PLATFORM_DBT", "ML_PLATFORM_DBT_PROJECT_DIR", "ML_PLATFORM_MLFLOW_UI_URL",
    "ML_PLATFORM_DAGSTER_UI_URL", "ML_PLATFORM_SERVING_TOKEN", "ML_PLATFORM_ALERT_WEBHOOK_URL", "ML_PLATFORM_ACTOR",
    "ML_PLATFORM_NO_PROGRESS",
    "ML_PLATFORM_DBT_TARGET", "ML_PLATFORM_PG_HOST", "ML_PLATFORM_PG_PORT", "ML_PLATFORM_PG_USER",
    "ML_PLATFORM_PG_PASSWORD", "ML_PLATFORM_PG_DBNAME", "ML_PLATFORM_DAGSTER_DATABASE_URL", "ML_PLATFORM_WARM_DBT",
    "ML_PLATFORM_TEST_POSTGRES",
})


def check_environment(environ: dict[str, str] | None = None) -> None:
    """Refuse an ML_PLATFORM_* variable the platform does not read: a misspelt setting is otherwise ignored without a
    word, and the misspelt ML_PLATFORM_DATABASE_URL of a deployment runs it on the embedded SQLite stores instead."""
    import difflib

    environ = os.environ if environ is None else environ
    unknown = sorted(name for name in environ if name.startswith("ML_PLATFORM_") and name not in ENVIRONMENT_VARIABLES)
    if unknown:
        prefix = len("ML_PLATFORM_")  # compared without it: every name shares it

        def hint(name: str) -> str:
            close = difflib.get_close_matches(name[prefix:], sorted(n[prefix:] for n in ENVIRONMENT_VARIABLES), n=1,
                                              cutoff=0.75)
            return f"{name} (did you mean ML_PLATFORM_{close[0]}?)" if close else name
        raise ValueError(f"unknown environment variable{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(hint(n) for n in unknown)}: the platform reads no such setting (names that start with "
                         "ML_PLATFORM_ are its own; its settings: docs/configuration.md)")


def platform_home() -> Path:
    return Path(os.environ.get("ML_PLATFORM_HOME") or PROJECT_ROOT / ".ml_platform").resolve()


def config_path() -> Path:
    return Path(os.environ.get("ML_PLATFORM_CONFIG") or PROJECT_ROOT / "ml_platform.yaml").resolve()


def database_url() -> str | None:
    """The production profile's PostgreSQL URL (ML_PLATFORM_DATABASE_URL), or None for the embedded default."""
    url = (os.environ.get("ML_PLATFORM_DATABASE_URL") or "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in {"postgresql", "postgres"} or not parts.hostname or not parts.path.strip("/"):
        raise ValueError(f"ML_PLATFORM_DATABASE_URL={redacted(url)}: expected postgresql://user[:password]@host[:port]/name")
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))


def profile() -> str:
    """'postgres' when ML_PLATFORM_DATABASE_URL is set, else 'embedded'."""
    return "postgres" if database_url() else "embedded"


def database_for(url: str, suffix: str) -> str:
    """The same server and credentials, database `<name><suffix>` (e.g. `_dagster`)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + suffix, parts.query, ""))


def sqlalchemy_url(url: str) -> str:
    """The URL as SQLAlchemy-based stores (Dagster, MLflow) need it: SQLAlchemy 2.1 reads a bare
    postgresql:// as psycopg 3; the driver installed here is psycopg2."""
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def redacted(url: str) -> str:
    """A URL safe to print or log: the password replaced by ***."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def executor() -> str:
    """How a run's steps execute (ML_PLATFORM_EXECUTOR): `in_process` (the default: one process, no start-up
    cost per step), `multiprocess` (a process per step, independent steps in parallel) or `celery` (steps go to
    `ml-platform worker` processes on any machine, through ML_PLATFORM_CELERY_BROKER). The last two need the
    PostgreSQL profile: DuckDB takes one writing process at a time."""
    chosen = os.environ.get("ML_PLATFORM_EXECUTOR") or "in_process"
    if chosen not in {"in_process", "multiprocess", "celery"}:
        raise ValueError(f"ML_PLATFORM_EXECUTOR={chosen!r}: expected in_process, multiprocess or celery")
    if chosen != "in_process" and not database_url():
        raise ValueError(f"ML_PLATFORM_EXECUTOR={chosen}: steps in several processes need the PostgreSQL profile "
                         "(set ML_PLATFORM_DATABASE_URL); the embedded DuckDB warehouse takes one writing process")
    return chosen


def celery_broker() -> str:
    """The Celery broker steps are queued on: RabbitMQ (default, local) or Redis (redis://host:6379/0)."""
    return os.environ.get("ML_PLATFORM_CELERY_BROKER") or "pyamqp://guest:guest@127.0.0.1:5672//"


def celery_result_backend() -> str:
    """Where workers leave each step's outcome (ML_PLATFORM_CELERY_RESULT_BACKEND): Redis by default. A stored
    state, not a message to the launcher (rpc://), so the failure of a step whose process was killed reaches it."""
    return os.environ.get("ML_PLATFORM_CELERY_RESULT_BACKEND") or "redis://127.0.0.1:6379/0"


def celery_queue() -> str:
    """The queue a project's steps go to (ML_PLATFORM_CELERY_QUEUE): its workers listen on it, and projects or
    environments sharing a broker keep to their own."""
    return os.environ.get("ML_PLATFORM_CELERY_QUEUE") or "ml_platform"


def dbt_project_dir() -> Path:
    """The dbt feature project (ML_PLATFORM_DBT_PROJECT_DIR overrides; default: dbt_project/ in this repository)."""
    explicit = os.environ.get("ML_PLATFORM_DBT_PROJECT_DIR")
    return Path(explicit).resolve() if explicit else DBT_PROJECT_DIR


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
        """MLflow's tracking and registry store: ML_PLATFORM_MLFLOW_TRACKING_URI (e.g. a tracking server,
        http://mlflow:5000) if set, else `<name>_mlflow` on the PostgreSQL server, else SQLite in the home."""
        explicit = os.environ.get("ML_PLATFORM_MLFLOW_TRACKING_URI")
        if explicit:
            return explicit
        url = database_url()
        if url:
            return sqlalchemy_url(database_for(url, "_mlflow"))
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        """Where MLflow artifacts go: ML_PLATFORM_ARTIFACT_ROOT (a shared directory or an s3:// URI), else the home."""
        return os.environ.get("ML_PLATFORM_ARTIFACT_ROOT") or str(self.mlflow_dir / "artifacts")

    @property
    def warehouse_url(self) -> str:
        """The warehouse: the PostgreSQL database of the production profile, else the DuckDB file."""
        return database_url() or str(self.warehouse)

    @property
    def warehouse(self) -> Path:
        """The embedded DuckDB warehouse file (used only without ML_PLATFORM_DATABASE_URL)."""
        return self.home / "warehouse.duckdb"

    @property
    def dagster_database_url(self) -> str | None:
        url = database_url()
        return database_for(url, "_dagster") if url else None

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
        for path in (self.dagster_home, self.mlflow_dir, self.snapshots, self.quarantine, self.reports):
            path.mkdir(parents=True, exist_ok=True)
        if len(urlsplit(self.artifact_root).scheme) <= 1:  # a directory, not s3://... or mlflow-artifacts:/
            Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
        # dbt reads the warehouse location from the environment (dbt_project/profiles.yml).
        os.environ["ML_PLATFORM_HOME"] = str(self.home)
        return self


def platform_paths() -> PlatformPaths:
    return PlatformPaths(platform_home())
