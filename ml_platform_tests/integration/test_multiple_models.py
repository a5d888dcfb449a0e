"""Two models in one project: the demo's churn model (plain asset keys, the workspace's first code location) and a
model a team added with `ml-platform init` (keys under its name, a code location of its own). They share one
Dagster instance, one MLflow and one warehouse; each has its own assets, registry entry, jobs and sensors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from ml_platform.resources import ModelRegistry
from ml_platform.runner import dagster_instance
from ml_platform.settings import PROJECT_ROOT
from ml_platform_tests.conftest import write_config

pytestmark = pytest.mark.slow

LIST_LOCATION = """
import json, runpy, sys
if sys.argv[1].endswith(".py"):
    defs = runpy.run_path(sys.argv[1])["defs"]
else:
    from ml_platform.definitions import defs as load
    defs = load()
graph = defs.resolve_asset_graph()
print(json.dumps({"keys": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
                  "sensors": sorted(s.name for s in defs.sensors), "jobs": sorted(j.name for j in defs.jobs)}))
"""


def test_two_models_share_one_dagster_and_mlflow_without_a_clash(platform_env, tmp_path):
    dbt = tmp_path / "dbt_project"
    shutil.copytree(PROJECT_ROOT / "dbt_project", dbt, ignore=shutil.ignore_patterns("target", "logs"))
    shutil.copy(PROJECT_ROOT / "workspace.yaml", tmp_path / "workspace.yaml")
    (tmp_path / "tumours").mkdir()
    shutil.copy(PROJECT_ROOT / "docs" / "tutorial" / "tumour_model.py", tmp_path / "tumours")
    # PYTHONPATH: this checkout's code, whichever checkout the virtualenv was installed from.
    env = {**os.environ, "ML_PLATFORM_DBT_PROJECT_DIR": str(dbt), "NO_COLOR": "1", "PYTHONPATH": str(PROJECT_ROOT)}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "ml_platform.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    subprocess.run([sys.executable, str(PROJECT_ROOT / "docs" / "tutorial" / "make_data.py"), "1",
                    str(tmp_path / "tumours" / "patients.csv")], check=True, capture_output=True)
    added = json.loads(cli("init", "--data", "tumours/patients.csv", "--target", "diagnosis", "--name", "tumours",
                           "--pipeline", "tumour_model:build_pipeline", "--output", "tumours/ml_platform.yaml",
                           "--json"))
    assert added["workspace_entry_added"]
    tumours = tmp_path / "tumours" / "ml_platform.yaml"
    churn = write_config(tmp_path, name="churn.yaml")

    assert "gate: version 1 promoted" in cli("--config", str(churn), "run")
    assert "gate: version 1 promoted" in cli("--config", str(tumours), "run")

    # Each code location, loaded as Dagster loads it (the workspace's entries), in a process of its own.
    def location(target: str, config: str) -> dict:
        done = subprocess.run([sys.executable, "-c", LIST_LOCATION, target], cwd=tmp_path, capture_output=True,
                              text=True, env={**env, "ML_PLATFORM_CONFIG": config}, timeout=300, check=True)
        return json.loads(done.stdout.splitlines()[-1])

    demo = location("ml_platform.definitions", str(churn))
    team = location(str(tmp_path / "tumours" / "definitions.py"), str(churn))  # the file pins its own config
    assert "raw_batch" in demo["keys"] and "tumours/raw_batch" in team["keys"]
    assert "tumours/features/tumours_features" in team["keys"] and "features/churn_features" in demo["keys"]
    assert not set(demo["keys"]) & set(team["keys"]), "no asset key is defined by both locations"
    for defs in (demo, team):
        assert {"drift_sensor", "performance_sensor", "freshness_sensor"} <= set(defs["sensors"])
        assert {"lifecycle", "daily", "retraining"} <= set(defs["jobs"])
    workspace = (tmp_path / "workspace.yaml").read_text()
    assert "relative_path: tumours/definitions.py" in workspace and "location_name: tumours" in workspace

    registry = ModelRegistry()
    assert registry.champion_version("churn") == "1" and registry.champion_version("tumours") == "1"
    import dagster as dg

    with dagster_instance() as instance:
        for key in (["raw_batch"], ["tumours", "raw_batch"], ["tumours", "trained_model"]):
            assert instance.get_latest_materialization_event(dg.AssetKey(key)) is not None, key
    status = json.loads(cli("--config", str(tumours), "status", "--json"))
    assert status["champion"]["version"] == "1"
