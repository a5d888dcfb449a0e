"""The whole lifecycle on the embedded default and on the PostgreSQL profile: real Dagster, dbt (DuckDB or
PostgreSQL), GX, scikit-learn, MLflow, Evidently."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ml_platform.lib.snapshots import file_sha256
from ml_platform.resources import ModelRegistry, Warehouse
from ml_platform.runner import run_lifecycle, tick_sensor
from ml_platform.settings import PROJECT_ROOT
from ml_platform_tests.conftest import on_postgres, write_config

pytestmark = pytest.mark.slow

LINEAGE_TAGS = ("data_snapshot_sha256", "data_snapshot_path", "feature_code_version", "config_sha256",
                "git_commit", "seed", "packages", "training_run_id", "evaluation_report", "gate_decision",
                "gate_reasons", "gate_evidence")


@pytest.fixture(params=["embedded", pytest.param("postgres", marks=on_postgres)])
def profile(request, platform_env):
    if request.param == "postgres":
        request.getfixturevalue("postgres_profile")  # ML_PLATFORM_DATABASE_URL: fresh databases, dropped after
    return request.param


def test_full_lifecycle_from_raw_batches_to_a_gated_champion(profile, platform_env, tmp_path):
    # A training window wider than the data (the demo's days): the same rows as without one, but the window's SQL
    # runs on each warehouse (DuckDB, PostgreSQL).
    config = write_config(tmp_path, {"data": {"source": {"demo": {"data_drift_from_batch": 2}}},
                                     "training": {"window_days": 365}})

    first = run_lifecycle(config_file=config)
    assert first.success, first.errors
    assert first.outputs["training_data"]["window"] == \
        "the last 365 day(s) of event_date: 2026-01-01 to 2026-01-01, 0 other row(s) left out"
    skipped = {k for k, v in first.assets.items() if v != "materialized"}
    assert skipped == {"traffic_drift_report"}, first.assets  # nothing served online yet: no traffic to compare
    assert len(first.assets) == 16
    contract_checks = [k for k in first.checks if k.startswith("raw_batch:") and k != "raw_batch:fresh"]
    assert len(contract_checks) == 7
    assert all(c["passed"] for c in first.checks.values()), first.checks
    assert any(k.startswith("features/churn_features:") for k in first.checks), "dbt tests should be asset checks"

    gate = first.outputs["champion_model"]
    assert (gate["decision"], gate["champion_version"]) == ("promoted", "1")

    # The champion is the alias, with its full lineage on the version.
    registry = ModelRegistry()
    champion = registry.champion("churn")
    assert str(champion.version) == "1"
    for tag in LINEAGE_TAGS:
        assert champion.tags.get(tag), f"version 1 lacks the {tag} tag"
    training = first.outputs["training_data"]
    assert champion.tags["data_snapshot_sha256"] == training["sha256"]
    assert file_sha256(Path(champion.tags["data_snapshot_path"])) == training["sha256"]
    assert champion.tags["feature_code_version"] == training["feature_code_version"]
    assert champion.tags["seed"] == "42"
    assert "scikit-learn==" in champion.tags["packages"]
    assert len(champion.tags["git_commit"]) >= 7

    run = registry.run(champion.run_id)
    assert run.data.metrics["holdout_roc_auc"] > 0.7
    for metric in ("holdout_f1", "holdout_log_loss", "holdout_brier", "holdout_ece", "holdout_latency_p99_ms",
                   "holdout_fairness_gap"):
        assert metric in run.data.metrics
    assert run.inputs.dataset_inputs, "the training dataset should be logged as a run input"
    artifacts = {a.path for a in registry.client().list_artifacts(champion.run_id, "evaluation")}
    assert {"evaluation/evaluation.html", "evaluation/evaluation.json", "evaluation/roc.png",
            "evaluation/calibration.png"} <= artifacts

    predictions = Warehouse().query("select * from serving.batch_predictions")
    assert len(predictions) == 3000
    assert set(predictions["model_version"]) == {"1"}
    assert predictions["prediction_id"].is_unique
    assert predictions["score"].between(0, 1).all()
    assert first.outputs["drift_report"]["dataset_drift"] is False

    # Day two: a drifted batch. A second training goes through the gate against the champion.
    second = run_lifecycle(config_file=config)
    assert second.success, second.errors
    gate = second.outputs["champion_model"]
    assert gate["challenger_version"] == "2"
    assert gate["decision"] in {"promoted", "rejected"}
    assert any("vs champion" in r for r in gate["reasons"]), "a challenger is compared with the champion"
    assert registry.version("churn", "2").tags["gate_decision"] == gate["decision"]
    assert registry.champion_version("churn") == gate["champion_version"]
    drift = second.outputs["drift_report"]
    assert drift["dataset_drift"] is True
    assert drift["columns"]["monthly_charges"]["drifted"]
    assert Path(drift["report_path"]).read_text().lstrip().lower().startswith("<!doctype html") or "<html" in Path(
        drift["report_path"]).read_text()[:2000].lower()

    # The drift report flagged drift, but this lifecycle run already trained on the drifted batch and gated the
    # model: the drift sensor starts no retraining (it would be a cache hit on version 2 and the same decision
    # again). After a daily run, which does not train, it does: test_monitoring.py; its rule: unit/test_drift_sensor.py.
    assert tick_sensor("drift_sensor") == []
    assert len(registry.versions("churn")) == 2

    # `ml-platform status --json` answers "what is live?" from the registry.
    shown = subprocess.run([sys.executable, "-m", "ml_platform.cli", "--config", str(config), "status", "--json"],
                           capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["champion"]["version"] == registry.champion_version("churn")
    assert status["champion"]["lineage"]["data_snapshot_sha256"]
    assert status["versions"] == 2

    # Every store is where the profile says, and nothing of the other profile was made.
    from ml_platform.runner import dagster_instance

    with dagster_instance() as instance:
        storage = type(instance.run_storage).__name__
    if profile == "postgres":
        assert registry.resolved_tracking_uri().startswith("postgresql")
        assert Warehouse().engine == "postgres"
        assert storage == "PostgresRunStorage"
        assert not (platform_env / "warehouse.duckdb").exists() and not (platform_env / "mlflow" / "mlflow.db").exists()
    else:
        assert registry.resolved_tracking_uri().startswith("sqlite:///")
        assert (Warehouse().engine, storage) == ("duckdb", "SqliteRunStorage")
