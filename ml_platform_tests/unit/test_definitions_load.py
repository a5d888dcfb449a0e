"""Loading the Dagster definitions stays cheap: no heavy library is imported until an asset runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

from ml_platform.settings import PROJECT_ROOT

HEAVY = ("mlflow", "evidently", "great_expectations", "dbt", "sklearn", "matplotlib")


def test_loading_definitions_imports_no_heavy_library(tmp_path):
    probe = (
        "import json, sys; from ml_platform.definitions import defs; d = defs(); "
        "keys = sorted(k.to_user_string() for k in d.resolve_asset_graph().get_all_asset_keys()); "
        f"print(json.dumps({{'keys': keys, 'heavy': sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})}}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=PROJECT_ROOT,
                            env={"ML_PLATFORM_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["heavy"] == []
    assert {"raw_batch", "validated_batches", "features/churn_features", "training_data", "trained_model",
            "model_evaluation", "champion_model", "batch_predictions", "online_features", "drift_report",
            } <= set(loaded["keys"])


def test_dg_sees_every_stage(tmp_path):
    """[tool.dg] in pyproject.toml makes the project a dg project: `dg list defs` lists what Dagster loads."""
    dg = Path(sys.executable).parent / "dg"
    (tmp_path / "dagster").mkdir()  # dg's instance (and its telemetry) in the test's home, not in ~/.dagster
    result = subprocess.run([str(dg), "list", "defs", "--json"], capture_output=True, text=True, cwd=PROJECT_ROOT,
                            env={**os.environ, "ML_PLATFORM_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "dagster"),
                                 "VIRTUAL_ENV": str(dg.parent.parent)},
                            timeout=180)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout[result.stdout.index("{"):])
    groups = {a["group_name"] for a in listed["assets"]}
    assert groups == {"ingestion", "validation", "features", "training", "evaluation", "registry", "serving", "monitoring"}
    assert {"lifecycle", "approval_job"} <= {j["name"] for j in listed["jobs"]}
    assert "approval_sensor" in {s["name"] for s in listed["sensors"]}
    # Owners come from the project config (model.owner), applied to every asset in definitions.py.
    assert all(a["owners"] == [{"team": "ml-platform"}] for a in listed["assets"]), listed["assets"][0]["owners"]
