"""Setting up the stores of the active profile (settings.py decides which), before anything runs.

Idempotent: a second call changes nothing. Embedded: the home's folders and Dagster's instance file.
Production (ML_PLATFORM_DATABASE_URL): also the three PostgreSQL databases (warehouse, Dagster, MLflow),
created when missing; Dagster and MLflow create or check their own tables on first connection, and the
warehouse tables are made with `create ... if not exists` by whoever writes them first.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ml_platform import settings

# Dagster's instance file, written into DAGSTER_HOME. The PostgreSQL URL comes from the environment
# (set by `prepare`), so no password is written to disk.
_INSTANCE_YAML = """\
# Written by ml_platform (ml_platform/storage.py) for the {profile} profile; rewritten when the profile changes.
telemetry:
  enabled: false
run_monitoring:
  enabled: true
  poll_interval_seconds: 15
  # A run launched by the daemon whose process died is marked failed, not left "started" (CLI runs: the next
  # `ml-platform run` does it, runner.fail_abandoned_runs). A run still going after 6 h is failed: the backstop
  # for a step lost with a whole Celery worker.
  max_resume_run_attempts: 0
  max_runtime_seconds: 21600
{storage}{run_queue}"""

_POSTGRES_STORAGE = """\
storage:
  postgres:
    postgres_url:
      env: ML_PLATFORM_DAGSTER_DATABASE_URL
"""

# The daemon starts at most one run that trains at a time (runs of the lifecycle and retraining jobs carry the
# tag); others wait in its queue. Inside the step, a lock makes the same hold for runs started any other way.
_RUN_QUEUE = """\
run_queue:
  tag_concurrency_limits:
    - key: ml_platform/trains
      limit: 1
"""


class StorageError(RuntimeError):
    """A store of the profile cannot be reached or set up."""


def prepare(paths: settings.PlatformPaths) -> None:
    """Make the profile's stores ready and point this process (and the dbt and Dagster processes it starts)
    at them."""
    paths.ensure()
    os.environ["DAGSTER_HOME"] = str(paths.dagster_home)
    url = settings.database_url()
    if url:
        ensure_databases([url, settings.database_for(url, "_dagster"), settings.database_for(url, "_mlflow")])
        os.environ["ML_PLATFORM_DAGSTER_DATABASE_URL"] = settings.sqlalchemy_url(paths.dagster_database_url or "")
    else:
        os.environ.pop("ML_PLATFORM_DAGSTER_DATABASE_URL", None)
    os.environ.update(dbt_environment())
    instance_yaml = _INSTANCE_YAML.format(
        profile=settings.profile(), storage=_POSTGRES_STORAGE if url else "", run_queue=_RUN_QUEUE)
    target = paths.dagster_home / "dagster.yaml"
    if not target.exists() or target.read_text() != instance_yaml:
        target.write_text(instance_yaml)


def foreign_instance_warning(instance_root: str | Path | None, paths: settings.PlatformPaths) -> str | None:
    """What to tell a run whose Dagster instance is not the platform's (None when it is). `dg dev`, `dagster dev`
    and `dg launch` started without DAGSTER_HOME run on a temporary instance of their own: the models, tables and
    reports land in the platform's home as usual, but the run's history, its asset versions and the sensors'
    cursors do not, so `ml-platform` commands and `make ui` never see them (and `dagster dev` deletes them)."""
    expected = paths.dagster_home.resolve()
    if instance_root is None or Path(instance_root).resolve() == expected:
        return None
    return (f"this run's Dagster instance is {instance_root}, not the platform's ({expected}): its run history and "
            "asset versions are kept apart from those of `ml-platform run` and `make ui`, so the next `ml-platform "
            "run` does not know what this run materialized, and a temporary instance (`dg dev`, `dagster dev` or "
            "`dg launch` without DAGSTER_HOME) is deleted with all of it. Start the UI with `make ui` "
            f"(`ml-platform ui`), or set DAGSTER_HOME={expected} first (an `ml-platform` command writes its "
            "dagster.yaml there)")


def dbt_environment() -> dict[str, str]:
    """What dbt_project/profiles.yml reads: the target of the active profile and where it is. Set before each dbt
    call too (defs/features), so that a step on any worker builds into the profile's warehouse."""
    url = settings.database_url()
    if not url:
        return {"ML_PLATFORM_DBT_TARGET": "duckdb", "ML_PLATFORM_HOME": str(settings.platform_home())}
    parts = urlsplit(url)
    return {
        "ML_PLATFORM_HOME": str(settings.platform_home()),
        "ML_PLATFORM_DBT_TARGET": "postgres",
        "ML_PLATFORM_PG_HOST": parts.hostname or "127.0.0.1",
        "ML_PLATFORM_PG_PORT": str(parts.port or 5432),
        "ML_PLATFORM_PG_USER": unquote(parts.username or "postgres"),
        "ML_PLATFORM_PG_PASSWORD": unquote(parts.password or ""),
        "ML_PLATFORM_PG_DBNAME": parts.path.strip("/"),
    }


def ensure_databases(urls: list[str]) -> list[str]:
    """Create each URL's database on its server if it does not exist. Returns the ones created."""
    import psycopg2
    from psycopg2 import sql

    created = []
    for url in urls:
        parts = urlsplit(url)
        name = parts.path.strip("/")
        maintenance = parts._replace(path="/postgres").geturl()
        try:
            con = psycopg2.connect(maintenance, connect_timeout=10)
        except psycopg2.OperationalError as exc:
            raise StorageError(f"PostgreSQL at {settings.redacted(url)} is not reachable: {str(exc).strip()}. "
                               "Is the server running, and is ML_PLATFORM_DATABASE_URL right?") from None
        con.autocommit = True
        try:
            with con.cursor() as cur:
                cur.execute("select 1 from pg_database where datname = %s", (name,))
                if cur.fetchone() is None:
                    try:
                        cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
                        created.append(name)
                    except psycopg2.errors.DuplicateDatabase:
                        pass  # another process made it first
                    except psycopg2.Error as exc:
                        raise StorageError(f"cannot create database {name!r} on {settings.redacted(url)}: "
                                           f"{str(exc).strip()}. Create it, or grant CREATEDB.") from None
        finally:
            con.close()
    return created


def drop_databases(url: str) -> None:
    """Drop the profile's three databases (tests and `make clean` on a scratch database)."""
    import psycopg2
    from psycopg2 import sql

    parts = urlsplit(url)
    con = psycopg2.connect(parts._replace(path="/postgres").geturl(), connect_timeout=10)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            for name in (parts.path.strip("/"), parts.path.strip("/") + "_dagster", parts.path.strip("/") + "_mlflow"):
                cur.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
    finally:
        con.close()
