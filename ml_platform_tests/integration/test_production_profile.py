"""The PostgreSQL profile by configuration alone, on the real server: the databases are set up automatically and
a second start changes nothing; `ml-platform ui` (what `make ui` runs) serves the Dagster UI and an MLflow
tracking server on PostgreSQL; a server that is not there is a clear error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request

import pytest

from ml_platform import settings
from ml_platform.resources import ModelRegistry
from ml_platform.runner import dagster_instance, use_environment
from ml_platform.settings import PROJECT_ROOT
from ml_platform_tests.conftest import on_postgres, write_config
from ml_platform_tests.ui_support import running_ui


def _schema(url: str) -> list[tuple]:
    """Every table and column of a database, and the migration versions its owners recorded."""
    from ml_platform.sql import connect

    with connect(url) as con:
        columns = con.execute("select table_schema, table_name, column_name, data_type from information_schema.columns "
                              "where table_schema not in ('pg_catalog', 'information_schema') order by 1, 2, 3").fetchall()
        versions = [("alembic", *row) for row in con.execute("select version_num from alembic_version").fetchall()] \
            if con.table_exists("public.alembic_version") else []
    return columns + versions


def _start(config) -> None:
    """What every command does first: the profile's stores, then Dagster's and MLflow's own tables."""
    use_environment(config_file=config)
    with dagster_instance() as instance:
        instance.get_runs(limit=1)
    ModelRegistry().client().search_registered_models()


@on_postgres
def test_schema_setup_is_automatic_and_idempotent(postgres_profile, tmp_path):
    config = write_config(tmp_path)
    _start(config)
    databases = [postgres_profile, f"{postgres_profile}_dagster", f"{postgres_profile}_mlflow"]
    before = {url: _schema(url) for url in databases}
    assert any(t[1] == "runs" for t in before[databases[1]]), "Dagster's tables are made on first start"
    assert any(t[1] == "registered_models" for t in before[databases[2]]), "MLflow's tables are made on first start"
    instance_file = settings.platform_paths().dagster_home / "dagster.yaml"
    written = (instance_file.read_text(), instance_file.stat().st_mtime_ns)
    assert "postgres_url:\n      env: ML_PLATFORM_DAGSTER_DATABASE_URL" in written[0], "the URL stays out of the file"

    _start(config)
    assert {url: _schema(url) for url in databases} == before
    assert (instance_file.read_text(), instance_file.stat().st_mtime_ns) == written


def test_an_unreachable_server_is_a_clear_error(platform_env, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    os.environ["ML_PLATFORM_DATABASE_URL"] = f"postgresql://postgres:hunter2@127.0.0.1:{closed}/ml_platform"
    shown = subprocess.run([sys.executable, "-m", "ml_platform.cli", "--config", str(write_config(tmp_path)), "status"],
                           capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert shown.returncode == 1
    assert f"PostgreSQL at postgresql://postgres:***@127.0.0.1:{closed}/ml_platform is not reachable" in shown.stderr
    assert "hunter2" not in shown.stderr + shown.stdout


def _get(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
@on_postgres
def test_ui_serves_dagster_and_an_mlflow_tracking_server_on_postgresql(postgres_profile, tmp_path):
    config = write_config(tmp_path)
    use_environment(config_file=config)
    ModelRegistry().client().create_registered_model("churn")  # as a run does: straight to PostgreSQL
    with running_ui(config, tmp_path / "ui.log") as ui:
        # The tracking server reads the store the runs write: the model registered directly is there.
        found = _get(f"{ui.mlflow_url}/api/2.0/mlflow/registered-models/search")
        assert [m["name"] for m in found["registered_models"]] == ["churn"]
        # The Dagster webserver's instance is on PostgreSQL, and the code location loaded.
        info = _get(f"{ui.dagster_url}/graphql",
                    {"query": "{ instance { info } workspaceOrError { ... on Workspace { locationEntries { name "
                              "locationOrLoadError { __typename } } } } }"})["data"]
        assert "PostgresRunStorage" in info["instance"]["info"]
        [location] = info["workspaceOrError"]["locationEntries"]
        assert location["locationOrLoadError"]["__typename"] == "RepositoryLocation", location
        assert "profile postgres" in ui.log.read_text()
