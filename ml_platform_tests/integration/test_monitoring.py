"""Monitoring on a real home: daily runs (no training) score and monitor with the live champion, a drifted
batch fails the drift check and alerts the team channel (a real HTTP receiver on loopback), the drift
sensor starts exactly one gated retraining, a missing drift reference is a clear error, and a stale
asset makes the freshness sensor run the failing check and the daily job."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ml_platform.resources import ModelRegistry, Warehouse
from ml_platform.runner import DAILY_JOB, run_lifecycle, tick_sensor
from ml_platform.settings import COST_TABLE, PROJECT_ROOT
from ml_platform_tests.conftest import write_config

pytestmark = pytest.mark.slow

TRAINING_ASSETS = {"training_data", "trained_model", "model_evaluation", "champion_model"}


def test_daily_monitoring_drift_alert_gated_retraining_and_freshness(platform_env, tmp_path, webhook_receiver,
                                                                     monkeypatch):
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK_URL", webhook_receiver.url)
    config = write_config(tmp_path, {"data": {"source": {"demo": {"data_drift_from_batch": 2}}},
                                     "alerts": {"backoff_seconds": 0.05}})
    registry = ModelRegistry()

    first = run_lifecycle(config_file=config)
    assert first.success, first.errors
    assert first.checks["drift_report:no_dataset_drift"]["passed"]
    assert first.checks["prediction_drift:score_distribution_stable"]["passed"], first.outputs["prediction_drift"]
    assert all(v["passed"] for k, v in first.checks.items() if k.endswith(":fresh")), first.checks
    cost = first.outputs["cost_report"]
    assert cost["predictions_24h"] == 3000 and cost["champion_size_mb"] > 0 and cost["champion_training_seconds"] > 0
    assert set(Warehouse().query(f"select metric from {COST_TABLE}")["metric"]) >= {
        "predictions_24h", "champion_size_mb", "champion_training_seconds", "versions_registered_7d"}

    # A production day: a drifted batch is scored and monitored; nothing is trained.
    day = run_lifecycle(config_file=config, job_name=DAILY_JOB)
    assert day.success, day.errors
    assert not TRAINING_ASSETS & set(day.assets), day.assets
    assert day.outputs["batch_predictions"]["model_version"] == "1"
    drift = day.outputs["drift_report"]
    assert drift["dataset_drift"] is True and drift["columns"]["monthly_charges"]["drifted"]
    assert drift["current_rows"] == 3000, "decisions use every row"
    check = day.checks["drift_report:no_dataset_drift"]
    assert check["passed"] is False and "monthly_charges" in check["metadata"]["drifted_features"]
    [alert] = [m for m in webhook_receiver.messages if "drift" in m["text"].lower() and "monthly_charges" in m["text"]]
    assert drift["report_path"] in alert["text"] and "drift-alert.md" in alert["text"]
    assert f"/runs/{day.run_id}" in alert["text"]

    # The drift sensor starts one gated retraining for that report, and only one.
    [retraining] = tick_sensor("drift_sensor")
    assert retraining.success
    assert retraining.dagster_run.tags["ml_platform/trigger"] == "drift"
    gate = retraining.output_for_node("champion_model")
    assert gate["challenger_version"] == "2" and registry.version("churn", "2").tags["gate_decision"] == gate["decision"]
    assert tick_sensor("drift_sensor") == []

    shown = subprocess.run([sys.executable, "-m", "ml_platform.cli", "--config", str(config), "status", "--json"],
                           capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert shown.returncode == 0, shown.stderr
    monitoring = json.loads(shown.stdout)["monitoring"]
    assert monitoring["drift"]["dataset_drift"] is True
    assert {f["name"] for f in monitoring["freshness"]} == {"raw_batch", "features", "predictions"}
    assert all(f["fresh"] for f in monitoring["freshness"])

    # A missing drift reference (the champion's training snapshot) stops the drift report with a clear error.
    snapshot = Path(registry.champion("churn").tags["data_snapshot_path"])
    moved = tmp_path / "snapshot-backup.parquet"
    shutil.move(snapshot, moved)
    try:
        broken = run_lifecycle(config_file=config, job_name=DAILY_JOB)
    finally:
        shutil.move(moved, snapshot)
    assert not broken.success and broken.assets["drift_report"] == "failed"
    assert any("drift reference missing" in e and str(snapshot) in e for e in broken.errors), broken.errors

    # Freshness: with a 2-second SLO the raw data is soon stale; the sensor runs the checks (failing, with an
    # alert) and the daily job, once for that stale state.
    write_config(tmp_path, {"data": {"source": {"demo": {"data_drift_from_batch": 2}}},
                            "alerts": {"backoff_seconds": 0.05}, "freshness": {"raw_batch_max_age_hours": 2 / 3600}})
    time.sleep(2.1)
    runs = tick_sensor("freshness_sensor")
    by_job = {r.dagster_run.job_name: r for r in runs}
    assert set(by_job) == {"freshness", "daily"}
    assert by_job["daily"].success
    evaluations = [e.event_specific_data for e in by_job["freshness"].all_events
                   if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert {(e.asset_key.to_user_string(), e.passed) for e in evaluations} >= {("raw_batch", False)}
    assert any("stale" in m["text"] and "freshness-breach.md" in m["text"] for m in webhook_receiver.messages)
