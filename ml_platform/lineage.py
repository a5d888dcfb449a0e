"""`ml-platform lineage`: how a model version, or the version behind one prediction, was made.

Answers from one read-only query of the warehouse (registry.model_versions, written at training, and
serving.batch_predictions), so it returns in a fraction of a second. Only the standard library and the
warehouse driver (ml_platform/sql.py) are imported: mlflow alone takes about a second to import, and
dagster and pandas (which the Warehouse resource brings in) most of another.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from ml_platform import settings
from ml_platform.settings import MODEL_VERSIONS_TABLE, PREDICTIONS_TABLE

_VERSION_COLUMNS = (
    "model_name", "version", "run_id", "data_snapshot_sha256", "data_snapshot_path", "feature_code_version",
    "feature_table", "config_sha256", "config_json", "git_commit", "seed", "split_rule", "created_at",
)


class LineageError(LookupError):
    """The version or prediction asked about is not recorded (or nothing is recorded yet)."""


def lineage_for_version(model_name: str, version: str, *, verify: bool = False) -> dict:
    """The recorded lineage of `model_name` version `version`.

    `data_snapshot.exists` is a cheap existence check; with `verify` the snapshot is also re-hashed and
    `data_snapshot.sha256_ok` says whether its bytes still match (None when not verified).
    """
    version = str(version)
    row = _fetch_one(
        f"select {', '.join(_VERSION_COLUMNS)} from {MODEL_VERSIONS_TABLE} where model_name = ? and version = ?",
        [model_name, version], table=MODEL_VERSIONS_TABLE,
    )
    if row is None:
        recorded = _recorded_versions(model_name)
        raise LineageError(
            f"model '{model_name}' has no version {version} in {MODEL_VERSIONS_TABLE}"
            + (f" (recorded versions: {', '.join(recorded)})" if recorded
               else " (no version of it is recorded: was it trained on this platform home?)")
        )
    return _version_record(row, verify=verify)


def lineage_for_prediction(prediction_id: str, *, verify: bool = False) -> dict:
    """The lineage of the model version that made prediction `prediction_id`, with the prediction itself
    under `prediction` (entity, score, when, and the batch snapshot the scored row came from)."""
    row = _fetch_one(
        f"select prediction_id, entity_id, model_name, model_version, snapshot_hash, score, scored_at "
        f"from {PREDICTIONS_TABLE} where prediction_id = ?",
        [prediction_id], table=PREDICTIONS_TABLE,
    )
    if row is None:
        raise LineageError(
            f"no prediction '{prediction_id}' in {PREDICTIONS_TABLE} "
            "(ids look like '<model>-v<version>-<16 hex digits>')"
        )
    try:
        record = lineage_for_version(row["model_name"], row["model_version"], verify=verify)
    except LineageError as exc:
        raise LineageError(f"prediction '{prediction_id}' was made by a version with no recorded lineage: {exc}") from None
    record["prediction"] = {
        "prediction_id": row["prediction_id"],
        "entity_id": row["entity_id"],
        "score": row["score"],
        "scored_at": _iso(row["scored_at"]),
        "batch_snapshot_sha256": row["snapshot_hash"],
    }
    return record


def _version_record(row: dict[str, Any], *, verify: bool) -> dict:
    path = Path(row["data_snapshot_path"])
    exists = path.is_file()
    sha256_ok = None
    if verify:
        from ml_platform.lib.snapshots import file_sha256

        sha256_ok = exists and file_sha256(path) == row["data_snapshot_sha256"]
    seed = row["seed"]
    return {
        "model": row["model_name"],
        "version": row["version"],
        "run_id": row["run_id"],
        "data_snapshot": {"sha256": row["data_snapshot_sha256"], "path": str(path), "exists": exists,
                          "sha256_ok": sha256_ok},
        "feature_code_version": row["feature_code_version"],
        "feature_table": row["feature_table"],
        "config_sha256": row["config_sha256"],
        "config": json.loads(row["config_json"]) if row["config_json"] else None,
        "git_commit": row["git_commit"],
        "seed": int(seed) if seed is not None and seed.lstrip("-").isdigit() else seed,
        "split_rule": row["split_rule"],
        "created_at": _iso(row["created_at"]),
    }


def _recorded_versions(model_name: str) -> list[str]:
    rows = _query(f"select version from {MODEL_VERSIONS_TABLE} where model_name = ?", [model_name],
                  table=MODEL_VERSIONS_TABLE)
    return sorted((r["version"] for r in rows), key=lambda v: (len(v), v))


def _fetch_one(sql: str, params: list, *, table: str) -> dict[str, Any] | None:
    rows = _query(sql, params, table=table)
    return rows[0] if rows else None


def _query(sql: str, params: list, *, table: str) -> list[dict[str, Any]]:
    from ml_platform.sql import connect, is_postgres

    location = settings.platform_paths().warehouse_url
    if not is_postgres(location) and not Path(location).exists():
        raise LineageError(f"warehouse {location} does not exist yet: run the lifecycle first "
                           "(or point --home / ML_PLATFORM_HOME at the platform's home)")
    with connect(location, read_only=True) as con:
        if not con.table_exists(table):
            raise LineageError(f"{table} does not exist in {settings.redacted(location)}: nothing has been "
                               "recorded there yet")
        return con.execute(sql, params).records()


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (None if value is None else str(value))
