"""Bad input stops the line with a clear error; the champion and everything already stored stay as they were.

One good run establishes a champion; then each bad batch (a file source) or bad config is run against
that same home, and after each we check: the error names the problem, no new model version, the
champion unchanged, no stored snapshot, model artifact or prediction modified.
"""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform.lib.demo_data import generate_batch
from ml_platform.resources import ModelRegistry, Warehouse
from ml_platform.runner import run_lifecycle
from ml_platform.settings import PROJECT_ROOT
from ml_platform_tests.conftest import platform_home, tree_digest, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def established(tmp_path_factory) -> dict:
    """A home with one champion, from a good demo run."""
    root = tmp_path_factory.mktemp("bad_inputs")
    with platform_home(root / "home") as home:
        result = run_lifecycle(config_file=write_config(root))
        assert result.success, result.errors
        yield {"root": root, "home": home}


def good_batch() -> pd.DataFrame:
    return generate_batch(2, rows=600, seed=11)


def state(home: Path) -> dict:
    registry = ModelRegistry()
    stored = {**tree_digest(home / "snapshots"), **tree_digest(home / "mlflow" / "artifacts")}
    return {
        "versions": [str(v.version) for v in registry.versions("churn")],
        "champion": registry.champion_version("churn"),
        "predictions": len(Warehouse().query("select prediction_id from serving.batch_predictions")),
        "stored": stored,
    }


def assert_nothing_changed(before: dict, after: dict) -> None:
    assert after["versions"] == before["versions"], "no model version may be registered from bad input"
    assert after["champion"] == before["champion"]
    assert after["predictions"] == before["predictions"]
    for path, digest in before["stored"].items():
        assert after["stored"].get(path) == digest, f"stored file {path} was modified or removed"


def run_file_source(established: dict, name: str, write: Callable[[Path], None]):
    path = established["root"] / name
    write(path)
    config = write_config(established["root"], {"data": {"source": {"kind": "file", "path": str(path)}}},
                          name=f"{name}.yaml")
    before = state(established["home"])
    result = run_lifecycle(config_file=config)
    after = state(established["home"])
    assert not result.success
    assert_nothing_changed(before, after)
    return result


def csv_of(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda path: frame.to_csv(path, index=False)


def failed_checks(result) -> dict[str, str]:
    return {k.split(":")[1]: str(v["metadata"].get("failures", "")) for k, v in result.checks.items()
            if k.startswith("raw_batch:") and not v["passed"]}


def assert_stopped_at_validation(result) -> None:
    assert result.assets["raw_batch"] == "materialized"  # the bad batch is kept as evidence...
    for downstream in ("validated_batches", "training_data", "trained_model", "champion_model", "batch_predictions"):
        assert result.assets[downstream] == "skipped", downstream  # ...and nothing is built from it


def test_missing_source_file(established):
    result = run_file_source(established, "absent.csv", lambda path: None)
    assert result.assets["raw_batch"] == "failed"
    assert any("absent.csv does not exist" in e for e in result.errors), result.errors


def test_empty_source_file(established):
    result = run_file_source(established, "empty.csv", lambda path: path.write_text(""))
    assert any("empty.csv is empty (0 bytes)" in e for e in result.errors), result.errors


def test_unreadable_source_file(established):
    result = run_file_source(established, "garbage.parquet", lambda path: path.write_bytes(b"not parquet at all"))
    assert any("garbage.parquet could not be read as parquet" in e for e in result.errors), result.errors


def test_a_source_file_in_another_encoding_than_the_config_says(established):
    """A batch saved by Excel on Windows (cp1252) where the config says nothing (UTF-8): the fix is named."""
    batch = good_batch().assign(branch="Zürich")
    result = run_file_source(established, "windows.csv",
                             lambda path: batch.to_csv(path, index=False, encoding="cp1252"))
    assert result.assets["raw_batch"] == "failed"
    assert any("windows.csv is not utf-8 text (invalid start byte, byte 0xfc)" in e  # ü in cp1252
               and "set data.source.csv.encoding, e.g. cp1252 for a file saved by Excel on Windows" in e
               for e in result.errors), result.errors


def test_missing_source_table(established):
    with Warehouse().connect() as con:  # the team's landing schema, without the table the config names
        con.execute("create schema if not exists landing")
        con.execute("create table if not exists landing.crm_customers as select 1 as id")
    config = write_config(established["root"], {"data": {"source": {"kind": "table", "table": "landing.customers"}}},
                          name="absent_table.yaml")
    before = state(established["home"])
    result = run_lifecycle(config_file=config)
    assert_nothing_changed(before, state(established["home"]))
    assert result.assets["raw_batch"] == "failed"
    assert result.errors == [f"raw_batch: source table landing.customers does not exist in the warehouse "
                             f"({Warehouse().location()}): create it, or fix data.source.table; "
                             "schema landing holds: crm_customers"], result.errors


def test_missing_target_column(established):
    result = run_file_source(established, "no_target.csv", csv_of(good_batch().drop(columns=["churned"])))
    assert_stopped_at_validation(result)
    failures = failed_checks(result)
    assert "target_labels" in failures and "churned" in failures["schema"]


def test_target_with_unexpected_labels(established):
    frame = good_batch()
    frame.loc[:9, "churned"] = 2
    result = run_file_source(established, "bad_labels.csv", csv_of(frame))
    assert_stopped_at_validation(result)
    assert "2" in failed_checks(result)["target_labels"]


def test_wrong_column_types(established):
    frame = good_batch()
    frame["monthly_charges"] = frame["monthly_charges"].map(lambda v: f"{v} EUR")
    result = run_file_source(established, "bad_types.csv", csv_of(frame))
    assert_stopped_at_validation(result)
    assert "monthly_charges" in failed_checks(result)["schema"]


def test_all_null_column(established):
    frame = good_batch()
    frame["region"] = np.nan
    result = run_file_source(established, "null_region.csv", csv_of(frame))
    assert_stopped_at_validation(result)
    assert "region" in failed_checks(result)["nulls"]


def test_duplicate_ids_fail_a_blocking_check_that_stops_the_line_and_quarantine_the_batch(established):
    frame = good_batch()
    frame.loc[1:5, "customer_id"] = frame.loc[0, "customer_id"]
    result = run_file_source(established, "duplicate_ids.csv", csv_of(frame))
    assert_stopped_at_validation(result)
    assert "customer_id" in failed_checks(result)["unique_ids"]
    # One line, without Dagster's class path: the failed checks themselves are listed above it by `ml-platform run`.
    assert result.errors == ["raw_batch_contract: 1 blocking asset check failed with ERROR severity: "
                             "raw_batch: unique_ids"], result.errors
    record = established["home"] / "quarantine" / f"{result.outputs['raw_batch']['sha256']}.json"
    assert record.exists(), "a failed batch is quarantined with its validation result"
    assert "unique_ids" in record.read_text()


def test_a_column_the_contract_does_not_declare_is_named_and_kept_in_the_snapshot_only(established):
    """Not bad input: extra columns pass the contract. The append used to fail on them ('Current transaction is
    aborted'); now the warehouse table keeps the contract's columns and the run says which were left out."""
    path = established["root"] / "wider.csv"
    good_batch().assign(loyalty_tier="gold").to_csv(path, index=False)
    config = write_config(established["root"], {"data": {"source": {"kind": "file", "path": str(path)}}},
                          name="wider.yaml")
    result = run_lifecycle(config_file=config, selection=["raw_batch", "validated_batches"])
    assert result.success, result.errors
    assert result.outputs["validated_batches"]["columns_not_in_contract"] == ["loyalty_tier"]
    assert "loyalty_tier" in pd.read_parquet(result.outputs["raw_batch"]["path"]).columns  # the snapshot is whole
    assert "loyalty_tier" not in Warehouse().query("select * from raw.churn_batches limit 1").columns
    # A changed schema the team hears of, from a scheduled run as well: an alert with its runbook.
    [alert] = Warehouse().query("select title, details, runbook from governance.alerts where kind = 'schema_change'"
                                ).to_dict("records")
    assert alert["title"].endswith("has columns the contract does not declare: loyalty_tier")
    assert json.loads(alert["details"])["columns"] == ["loyalty_tier"]
    assert "validation-failure.md" in alert["runbook"]


def test_invalid_config_is_refused_before_anything_runs(established):
    config = write_config(established["root"], {"training": {"estimator": {"class": "sklearn.ensemble.RandomForest"}}},
                          name="invalid.yaml")
    before = state(established["home"])
    shown = subprocess.run([sys.executable, "-m", "ml_platform.cli", "--config", str(config), "run"],
                           capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
                           env={**os.environ, "ML_PLATFORM_HOME": str(established["home"])})
    assert shown.returncode == 2
    assert "invalid.yaml: training.estimator.class: 'sklearn.ensemble.RandomForest' is not importable" in shown.stderr
    assert_nothing_changed(before, state(established["home"]))


def _config_with(established: dict, name: str, edit: Callable[[dict], None]) -> Path:
    import yaml

    path = write_config(established["root"], name=name)
    raw = yaml.safe_load(path.read_text())
    edit(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_a_pipeline_function_that_returns_no_pipeline_says_so_and_registers_nothing(established):
    (established["root"] / "team_model.py").write_text(
        "def build():\n    from sklearn.linear_model import LogisticRegression\n    return LogisticRegression()\n")
    config = _config_with(established, "no_pipeline.yaml",
                          lambda raw: raw["training"].update(estimator={"pipeline": "team_model:build"}))
    before = state(established["home"])
    result = run_lifecycle(config_file=config, batch="2")
    assert not result.success and result.assets["trained_model"] == "failed"
    assert any("training.estimator.pipeline: team_model:build returned LogisticRegression, expected a "
               "sklearn.pipeline.Pipeline" in error for error in result.errors), result.errors
    assert_nothing_changed(before, state(established["home"]))


def test_a_dbt_model_with_a_sql_error_names_the_model_and_the_database_error(established, tmp_path):
    import shutil

    dbt = tmp_path / "dbt_project"
    shutil.copytree(PROJECT_ROOT / "dbt_project", dbt, ignore=shutil.ignore_patterns("target", "logs"))
    model = dbt / "models" / "features" / "churn_features.sql"
    model.write_text(model.read_text().replace("    support_calls,\n", "    support_callz,\n", 1))
    before = state(established["home"])
    shown = subprocess.run([sys.executable, "-m", "ml_platform.cli", "--config", str(write_config(established["root"])),
                            "run", "--batch", "2"], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600,
                           env={**os.environ, "ML_PLATFORM_HOME": str(established["home"]),
                                "ML_PLATFORM_DBT_PROJECT_DIR": str(dbt)})
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "churn_features" in shown.stdout and "support_callz" in shown.stdout, shown.stdout
    assert_nothing_changed(before, state(established["home"]))
