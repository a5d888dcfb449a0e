"""The warehouse resource on a real DuckDB file: appends are idempotent, nothing stored is overwritten."""

import pandas as pd
import pytest

from ml_platform.lib.snapshots import write_snapshot
from ml_platform.resources import Warehouse


def predictions(ids, score):
    return pd.DataFrame({"prediction_id": ids, "entity_id": ids, "model_name": "m", "model_version": "1",
                         "snapshot_hash": "s", "score": score, "scored_at": pd.Timestamp("2026-01-01")})


def test_predictions_already_stored_are_kept_as_they_are(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    assert warehouse.write_predictions([predictions(["a", "b"], 0.1), predictions(["c"], 0.2)]) == 3
    assert warehouse.write_predictions([predictions(["b", "c", "d"], 0.9)]) == 1  # only d is new
    stored = warehouse.query("select prediction_id, score from serving.batch_predictions order by 1")
    assert stored.to_dict(orient="list") == {"prediction_id": ["a", "b", "c", "d"], "score": [0.1, 0.1, 0.2, 0.9]}


def test_a_batch_is_appended_once(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    snap = write_snapshot(pd.DataFrame({"id": ["x", "y"], "v": [1, 2]}), tmp_path / "snaps")
    first = warehouse.append_batch("raw.t_batches", snap.path, snap.sha256, "b1")
    again = warehouse.append_batch("raw.t_batches", snap.path, snap.sha256, "b1")
    assert (first["appended_rows"], again["appended_rows"], again["total_rows"]) == (2, 0, 2)
    assert warehouse.ingested_batch_ids("raw.t_batches") == ["b1"]


def test_a_model_version_lineage_is_recorded_once(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    record = {"model_name": "m", "version": "1", "run_id": "r", "data_snapshot_sha256": "s",
              "data_snapshot_path": "p", "feature_code_version": "f", "feature_table": "t", "config_sha256": "c",
              "config_json": "{}", "git_commit": "g", "seed": "1", "split_rule": "hash(id)"}
    warehouse.record_model_version(record)
    with pytest.raises(Exception, match="(?i)constraint"):
        warehouse.record_model_version({**record, "run_id": "other"})
    assert warehouse.query("select run_id from registry.model_versions")["run_id"].tolist() == ["r"]
