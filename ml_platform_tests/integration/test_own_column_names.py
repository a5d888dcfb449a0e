"""A team's own export, as spreadsheets write them: column names with spaces and capitals ("Customer ID",
"Plan Type", "Churn"), text labels, a category that is sometimes empty. From `ml-platform init` to a champion,
online answers by entity id and late labels, on PostgreSQL: the engine that folds an unquoted capital to lower
case, so every SQL statement the platform writes must quote the team's names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ml_platform.resources import Warehouse
from ml_platform.settings import PREDICTIONS_TABLE, PROJECT_ROOT
from ml_platform_tests.conftest import on_postgres
from ml_platform_tests.serving_support import running_service

pytestmark = [pytest.mark.slow, on_postgres]


def _export(rows: int = 1500, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, rows)
    plan = rng.choice(["Basic", "Pro Plus", "Team"], rows).astype(object)
    churn_odds = -0.5 - tenure / 24 + np.where(plan == "Basic", 1.5, 0.0)
    churned = rng.random(rows) < 1 / (1 + np.exp(-churn_odds))
    plan[rng.random(rows) < 0.05] = None  # an empty cell: the warehouse hands it to pandas as None
    return pd.DataFrame({"Customer ID": [f"C{i:05d}" for i in range(rows)],
                         "Monthly Charges": rng.normal(70, 20, rows).round(2), "Plan Type": plan,
                         "tenure": tenure, "Churn": np.where(churned, "Yes", "No")})


def test_column_names_that_need_quotes_go_from_init_to_live_labels_on_postgresql(postgres_profile, platform_env,
                                                                                tmp_path):
    dbt = tmp_path / "dbt_project"
    shutil.copytree(PROJECT_ROOT / "dbt_project", dbt, ignore=shutil.ignore_patterns("target", "logs"))
    shutil.copy(PROJECT_ROOT / "workspace.yaml", tmp_path / "workspace.yaml")  # init adds the model's location
    export = _export()
    export.to_csv(tmp_path / "Telco Export.csv", index=False)
    env = {**os.environ, "ML_PLATFORM_DBT_PROJECT_DIR": str(dbt), "NO_COLOR": "1", "PYTHONPATH": str(PROJECT_ROOT)}

    def cli(*args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "ml_platform.cli", *args, "--json"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    started = cli("init", "--data", "Telco Export.csv", "--output", "ml_platform.yaml")
    assert (started["target"], started["id_column"], started["positive_label"]) == ("Churn", "Customer ID", "Yes")
    config = tmp_path / "ml_platform.yaml"
    # As the other tests' configs: guardrails for 1,200 training rows on a machine the test workers share.
    config.write_text(config.read_text().replace("max_latency_p99_ms: 100 ", "max_latency_p99_ms: 1000 ")
                      .replace("max_calibration_error: 0.1\n", "max_calibration_error: 0.2\n"))
    assert "quote: true" in (dbt / "models" / "features" / "telco_export_features.yml").read_text()

    first = cli("--config", str(config), "run")
    assert first["success"], first["errors"]
    dbt_tests = {k: v["passed"] for k, v in first["checks"].items() if "telco_export_features:" in k and not k.endswith(":fresh")}
    assert len(dbt_tests) == 4 and all(dbt_tests.values()), sorted(dbt_tests)  # unique and not_null on the quoted names
    assert first["outputs"]["champion_model"]["champion_version"] == "1", first["outputs"]["champion_model"]["reasons"]

    # Online by entity id, and the same score as the batch scoring of that row, also for an empty category.
    no_plan = export.loc[export["Plan Type"].isna(), "Customer ID"].head(3).tolist()
    asked = ["C00000", "C00001", *no_plan]
    batch = Warehouse().query(f"select entity_id, score from {PREDICTIONS_TABLE} where model_name = 'telco_export'")
    batch_score = dict(zip(batch["entity_id"], batch["score"], strict=True))
    with running_service(config, platform_env, env={"ML_PLATFORM_DBT_PROJECT_DIR": str(dbt)}) as service:
        answered = service.client.post("/predict", json={"entity_ids": asked})
        assert answered.status_code == 200, answered.text
        for prediction in answered.json()["predictions"]:
            assert prediction["score"] == pytest.approx(batch_score[prediction["entity_id"]], abs=1e-12), prediction
        # Served by the NumPy fast path: it imputes an empty category as training did (when training kept None as
        # a category of its own, the fast path disagreed on the probe rows and every request went through sklearn).
        assert "fast preprocessing" not in service.log(), service.log()

    # Late labels keyed by the team's id column come back as a judged live metric.
    labels = tmp_path / "labels.csv"
    export[["Customer ID", "Churn"]].head(400).to_csv(labels, index=False)
    cli("--config", str(config), "labels", str(labels))
    judged = cli("--config", str(config), "run")
    assert judged["success"], judged["errors"]
    # An id's label labels each logged prediction of it: its batch score and the online answers above.
    expected = 400 + sum(entity in set(export["Customer ID"].head(400)) for entity in asked)
    assert judged["outputs"]["late_labels"]["new_labels"] == expected
    assert not judged["outputs"]["late_labels"]["rejected"]
    days = judged["outputs"]["live_performance"]["days"]
    assert sum(d["labelled_rows"] for d in days) == expected and days[-1]["rolling_metric"] > 0.6, days
