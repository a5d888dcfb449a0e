"""Lineage and reproduction on a real lifecycle run: Dagster, dbt on DuckDB, MLflow on SQLite."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ml_platform.config import ProjectConfig
from ml_platform.lineage import LineageError, lineage_for_prediction, lineage_for_version
from ml_platform.reproduce import ReproductionError, reproduce_version
from ml_platform.resources import ModelRegistry, Warehouse
from ml_platform.runner import run_lifecycle
from ml_platform.settings import PROJECT_ROOT
from ml_platform_tests.conftest import platform_home, write_config

pytestmark = pytest.mark.slow

MODEL = "churn"


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    """One lifecycle run in a fresh home, shared by this module; the environment is restored afterwards."""
    root = tmp_path_factory.mktemp("lineage")
    with platform_home(root / "home") as home:
        result = run_lifecycle(config_file=write_config(root), quiet=True)
        assert result.success, result.errors
        yield {"home": home, "result": result}


def _failed_attempts(registry: ModelRegistry) -> list:
    experiment = registry.mlflow().get_experiment_by_name(f"{MODEL}-reproduce")
    if experiment is None:
        return []
    return registry.client().search_runs([experiment.experiment_id], "attributes.status = 'FAILED'")


def test_lineage_of_a_prediction_is_what_the_registry_recorded(lifecycle, tmp_path):
    row = Warehouse().query("select * from serving.batch_predictions order by prediction_id limit 1").iloc[0]

    record = lineage_for_prediction(row["prediction_id"], verify=True)

    tags = ModelRegistry().version(MODEL, row["model_version"]).tags
    assert (record["model"], record["version"]) == (MODEL, row["model_version"])
    assert record["run_id"] == tags["training_run_id"]
    assert record["data_snapshot"]["sha256"] == tags["data_snapshot_sha256"]
    assert record["data_snapshot"]["path"] == tags["data_snapshot_path"]
    assert record["data_snapshot"]["exists"] is True and record["data_snapshot"]["sha256_ok"] is True
    for key in ("feature_code_version", "feature_table", "config_sha256", "git_commit", "split_rule"):
        assert record[key] == tags[key], key
    assert str(record["seed"]) == tags["seed"] == "42"
    # The recorded config is the run's config artifact, and validates to the recorded fingerprint.
    artifact = ModelRegistry().client().download_artifacts(
        record["run_id"], f"config/{tags['config_sha256']}.json", str(tmp_path))
    assert record["config"] == json.loads(Path(artifact).read_text())
    assert ProjectConfig.model_validate(record["config"]).fingerprint() == tags["config_sha256"]
    assert record["prediction"] == {
        "prediction_id": row["prediction_id"], "entity_id": row["entity_id"], "score": row["score"],
        "scored_at": row["scored_at"].isoformat(), "batch_snapshot_sha256": row["snapshot_hash"],
    }
    assert record["created_at"]


def test_lineage_answers_without_importing_mlflow_or_dagster(lifecycle):
    prediction_id = Warehouse().query("select prediction_id from serving.batch_predictions limit 1").iloc[0, 0]
    code = ("import json, sys; from ml_platform.lineage import lineage_for_prediction; "
            f"print(json.dumps(lineage_for_prediction({prediction_id!r}))); "
            "print(sorted(m for m in ('mlflow', 'dagster', 'pandas', 'sklearn') if m in sys.modules))")
    started = time.perf_counter()
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT,
                           timeout=60, env={**os.environ, "ML_PLATFORM_HOME": str(lifecycle["home"])})
    seconds = time.perf_counter() - started
    assert shown.returncode == 0, shown.stderr
    record, imported = shown.stdout.strip().splitlines()
    assert json.loads(record)["prediction"]["prediction_id"] == prediction_id
    assert imported == "[]", f"lineage imported {imported}: it must stay a quick, local look-up"
    print(f"lineage subprocess: {seconds:.2f} s")


def test_lineage_of_unknown_ids_says_what_is_unknown(lifecycle):
    with pytest.raises(LineageError, match=r"no prediction 'churn-v1-0000' in serving\.batch_predictions"):
        lineage_for_prediction("churn-v1-0000")
    with pytest.raises(LineageError, match=r"model 'churn' has no version 99 .*recorded versions: 1\)"):
        lineage_for_version(MODEL, "99")
    with pytest.raises(LineageError, match=r"model 'nope' has no version 1"):
        lineage_for_version("nope", "1")


def test_lineage_command_from_a_prediction_id(lifecycle):
    prediction = Warehouse().query("select prediction_id from serving.batch_predictions limit 1").iloc[0, 0]
    shown = subprocess.run([sys.executable, "-m", "ml_platform.cli", "lineage", "--prediction-id", prediction, "--json"],
                           capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60,
                           env={**os.environ, "ML_PLATFORM_HOME": str(lifecycle["home"])})
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["prediction"]["prediction_id"] == prediction
    assert record["version"] == "1" and record["seed"] == 42 and record["git_commit"]
    unknown = subprocess.run([sys.executable, "-m", "ml_platform.cli", "lineage", "--prediction-id", "nope"],
                             capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60,
                             env={**os.environ, "ML_PLATFORM_HOME": str(lifecycle["home"])})
    assert unknown.returncode == 2 and "no prediction 'nope'" in unknown.stderr


def test_reproduce_of_an_unknown_version_is_bad_input(lifecycle):
    shown = subprocess.run([sys.executable, "-m", "ml_platform.cli", "reproduce", "--version", "99"],
                           capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
                           env={**os.environ, "ML_PLATFORM_HOME": str(lifecycle["home"])})
    assert shown.returncode == 2 and "has no version 99" in shown.stderr


def test_reproduce_command_in_a_fresh_process_matches_the_registered_metrics_exactly(lifecycle):
    registry = ModelRegistry()
    versions_before = len(registry.versions(MODEL))
    shown = subprocess.run([sys.executable, "-m", "ml_platform.cli", "reproduce", "--version", "1", "--json"],
                           capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300,
                           env={**os.environ, "ML_PLATFORM_HOME": str(lifecycle["home"])})
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)

    assert result["match"] is True, result
    assert result["differences"] == []
    assert {"roc_auc", "f1", "log_loss", "brier", "ece", "positive_rate", "rows"} <= set(result["compared"])
    assert all(c["equal"] and c["registered"] == c["reproduced"] for c in result["compared"].values())
    assert set(result["excluded"]) == {"latency_p99_ms"}
    # The dbt models are those the version was trained with: no warning about the feature code, not even that it
    # could not be compared.
    assert not [w for w in result["warnings"] if "feature code version" in w], result["warnings"]
    assert result["snapshot_sha256"] == lineage_for_version(MODEL, "1")["data_snapshot"]["sha256"]
    run = registry.run(result["reproduction_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["match"] == "true"
    assert run.data.metrics["holdout_roc_auc"] == result["compared"]["roc_auc"]["reproduced"]
    assert registry.mlflow().get_experiment(run.info.experiment_id).name == f"{MODEL}-reproduce"
    assert len(registry.versions(MODEL)) == versions_before, "reproducing must not register a version"


def test_reproduce_reports_each_step_as_it_starts_for_the_progress_bar(lifecycle):
    reports = []
    result = reproduce_version(MODEL, "1", progress=reports.append)
    assert result["match"] is True, result
    assert [(r.done, r.total, r.current, r.finished) for r in reports] == [
        (0, 4, "read the training snapshot", False), (1, 4, "compare the environment", False),
        (2, 4, "fit", False), (3, 4, "evaluate on the holdout", False), (4, 4, None, True)]
    assert {(r.job_name, r.run_id, r.failed) for r in reports} == {("reproduce", result["reproduction_run_id"], 0)}


def test_reproduce_refuses_a_missing_snapshot_and_records_the_attempt(lifecycle, tmp_path):
    registry = ModelRegistry()
    champion = registry.champion_version(MODEL)
    snapshot = Path(lineage_for_version(MODEL, "1")["data_snapshot"]["path"])
    failed_before = len(_failed_attempts(registry))
    shutil.move(snapshot, tmp_path / snapshot.name)
    try:
        reports = []
        with pytest.raises(ReproductionError, match=rf"training snapshot {re.escape(str(snapshot))} is missing"):
            reproduce_version(MODEL, "1", progress=reports.append)
        assert [(r.done, r.failed, r.finished) for r in reports] == [(0, 0, False), (0, 1, True)]
    finally:
        shutil.move(tmp_path / snapshot.name, snapshot)

    failed = _failed_attempts(registry)
    assert len(failed) == failed_before + 1
    assert "is missing" in failed[0].data.tags["failure_reason"]
    assert failed[0].data.tags["reproduces_version"] == "1"
    assert registry.champion_version(MODEL) == champion


def test_reproduce_refuses_an_altered_snapshot_and_records_the_attempt(lifecycle):
    registry = ModelRegistry()
    champion = registry.champion_version(MODEL)
    snapshot = Path(lineage_for_version(MODEL, "1")["data_snapshot"]["path"])
    original = snapshot.read_bytes()
    failed_before = len(_failed_attempts(registry))
    altered = bytearray(original)
    altered[len(altered) // 2] ^= 0xFF
    snapshot.write_bytes(bytes(altered))
    try:
        assert lineage_for_version(MODEL, "1", verify=True)["data_snapshot"]["sha256_ok"] is False
        with pytest.raises(ReproductionError, match=rf"snapshot {re.escape(str(snapshot))} was altered"):
            reproduce_version(MODEL, "1")
    finally:
        snapshot.write_bytes(original)

    failed = _failed_attempts(registry)
    assert len(failed) == failed_before + 1
    assert "was altered" in failed[0].data.tags["failure_reason"]
    assert registry.champion_version(MODEL) == champion
