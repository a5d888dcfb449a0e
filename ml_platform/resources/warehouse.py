"""The warehouse: DuckDB by default. Tables: raw.<model>_batches (validated batches, the dbt source),
features.* (built by dbt), serving.batch_predictions."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from ml_platform import settings
from ml_platform.settings import MODEL_VERSIONS_TABLE, PREDICTIONS_TABLE


class WarehouseError(RuntimeError):
    pass


class Warehouse(dg.ConfigurableResource):
    """Narrow access to the warehouse. Connections are short-lived: dbt opens the same file between our calls."""

    path: str | None = None

    def location(self) -> Path:
        return Path(self.path) if self.path else settings.platform_paths().warehouse

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[Any]:
        import duckdb

        location = self.location()
        if read_only and not location.exists():
            raise WarehouseError(f"warehouse {location} does not exist yet: run the lifecycle first")
        location.parent.mkdir(parents=True, exist_ok=True)
        # DuckDB allows one writing process per file; wait briefly for another process's lock.
        for attempt in range(50):
            try:
                con = duckdb.connect(str(location), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or attempt == 49:
                    raise
                time.sleep(0.2)
        try:
            yield con
        finally:
            con.close()

    def table_exists(self, table: str) -> bool:
        if not self.location().exists():
            return False
        schema, name = table.split(".")
        with self.connect(read_only=True) as con:
            found = con.execute(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                [schema, name],
            ).fetchall()[0][0]
        return bool(found)

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self.connect(read_only=True) as con:
            return con.execute(sql, params or []).df()

    def append_batch(self, table: str, snapshot_path: Path, snapshot_sha: str, batch_id: str) -> dict[str, int]:
        """Append a validated snapshot to `table` once: appending the same snapshot again is a no-op."""
        schema = table.split(".")[0]
        select = (
            "select *, ? as _snapshot_hash, ? as _batch_id, current_timestamp as _ingested_at "
            "from read_parquet(?)"
        )
        params = [snapshot_sha, batch_id, str(snapshot_path)]
        with self.connect() as con:
            con.execute(f"create schema if not exists {schema}")
            exists = con.execute(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                [schema, table.split(".")[1]],
            ).fetchall()[0][0]
            appended = 0
            if not exists:
                con.execute(f"create table {table} as {select}", params)
                appended = con.execute(f"select count(*) from {table}").fetchall()[0][0]
            elif not con.execute(f"select count(*) from {table} where _snapshot_hash = ?", [snapshot_sha]).fetchall()[0][0]:
                con.execute("begin")
                con.execute(f"insert into {table} by name {select}", params).fetchall()
                con.execute("commit")
                appended = con.execute(f"select count(*) from {table} where _snapshot_hash = ?", [snapshot_sha]).fetchall()[0][0]
            total, batches = con.execute(f"select count(*), count(distinct _snapshot_hash) from {table}").fetchall()[0]
        return {"appended_rows": int(appended), "total_rows": int(total), "batches": int(batches)}

    def ingested_batch_ids(self, table: str) -> list[str]:
        if not self.table_exists(table):
            return []
        return self.query(f"select distinct _batch_id from {table} order by 1")["_batch_id"].tolist()

    def write_predictions(self, chunks: Iterable[pd.DataFrame]) -> int:
        """Append predictions, chunk by chunk over one connection; a prediction_id already stored is kept
        as it is (scoring the same batch again with the same version adds nothing)."""
        written = 0
        with self.connect() as con:
            con.execute("create schema if not exists serving")
            con.execute(
                f"""create table if not exists {PREDICTIONS_TABLE} (
                    prediction_id varchar primary key, entity_id varchar, model_name varchar,
                    model_version varchar, snapshot_hash varchar, score double, scored_at timestamp)"""
            )
            for chunk in chunks:
                con.register("incoming", chunk)
                before = con.execute(f"select count(*) from {PREDICTIONS_TABLE}").fetchall()[0][0]
                con.execute(f"insert or ignore into {PREDICTIONS_TABLE} by name select * from incoming").fetchall()
                written += con.execute(f"select count(*) from {PREDICTIONS_TABLE}").fetchall()[0][0] - before
                con.unregister("incoming")
        return int(written)

    def record_model_version(self, record: dict[str, str]) -> None:
        """Append a version's lineage (strings only). A version is recorded once; a second call is refused."""
        with self.connect() as con:
            con.execute("create schema if not exists registry")
            con.execute(
                f"""create table if not exists {MODEL_VERSIONS_TABLE} (
                    model_name varchar, version varchar, run_id varchar, data_snapshot_sha256 varchar,
                    data_snapshot_path varchar, feature_code_version varchar, feature_table varchar,
                    config_sha256 varchar, config_json varchar, git_commit varchar, seed varchar,
                    split_rule varchar, created_at timestamp, primary key (model_name, version))"""
            )
            columns = ", ".join(record)
            marks = ", ".join("?" for _ in record)
            con.execute(f"insert into {MODEL_VERSIONS_TABLE} ({columns}, created_at) values ({marks}, current_timestamp)",
                        list(record.values())).fetchall()
