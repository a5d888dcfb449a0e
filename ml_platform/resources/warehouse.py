"""The warehouse: DuckDB by default, PostgreSQL in the production profile. Tables: raw.<model>_batches
(validated batches, the dbt source), features.* (built by dbt), serving.*, registry.*, governance.*,
monitoring.*. The engine-specific parts are in ml_platform/sql.py."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from ml_platform import settings
from ml_platform.settings import MODEL_VERSIONS_TABLE, PREDICTIONS_TABLE
from ml_platform.sql import (
    Connection,
    WarehouseError,
    arrow_converts_like_duckdb,
    arrow_to_frame,
    connect,
    is_postgres,
)

__all__ = ["Warehouse", "WarehouseError"]


class Warehouse(dg.ConfigurableResource):
    """Narrow access to the warehouse. Connections are short-lived: dbt writes to the same store between our calls."""

    url: str | None = None  # a DuckDB file or a postgresql:// URL; default: the profile's (settings)

    def location(self) -> str:
        return self.url or settings.platform_paths().warehouse_url

    @property
    def engine(self) -> str:
        return "postgres" if is_postgres(self.location()) else "duckdb"

    def exists(self) -> bool:
        return self.engine == "postgres" or Path(self.location()).exists()

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[Connection]:
        con = connect(self.location(), read_only=read_only)
        try:
            yield con
        finally:
            con.close()

    def table_exists(self, table: str) -> bool:
        if not self.exists():
            return False
        with self.connect(read_only=True) as con:
            return con.table_exists(table)

    def tables_in(self, schema: str) -> list[str]:
        if not self.exists():
            return []
        with self.connect(read_only=True) as con:
            rows = con.execute("select table_name from information_schema.tables where table_schema = ? "
                               "order by 1", [schema]).fetchall()
        return [name for (name,) in rows]

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self.connect(read_only=True) as con:
            return con.frame(sql, params or [])

    def iter_query(self, sql: str, params: list | None = None, chunk_rows: int = 100_000) -> Iterator[pd.DataFrame]:
        """The rows of `sql` as frames of at most `chunk_rows` rows, read as they are consumed: memory holds a
        chunk, not the result. Each chunk has the dtypes `query` would give its rows. The connection stays
        open until the generator is exhausted or closed."""
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be 1 or more, got {chunk_rows}")
        if not self.exists():
            raise WarehouseError(f"warehouse {self.location()} does not exist yet: run the lifecycle first")
        # Read-write, as write_predictions connects: DuckDB refuses a read-only and a read-write connection
        # to one file in one process, and batch scoring writes predictions while it reads features.
        with self.connect() as con:
            batches = con.arrow_batches(sql, params or [])
            first = next(batches, None)
            if first is None:
                return
            if con.engine == "postgres" or all(arrow_converts_like_duckdb(f.type) for f in first.schema):
                yield from _rechunked(first, batches, chunk_rows)
                return
            # A type whose Arrow -> pandas conversion differs from DuckDB's own: DuckDB converts (slower).
            batches.close()
            result = con.raw.execute(sql, params or [])
            while len(chunk := result.fetch_df_chunk(max(1, chunk_rows // _DUCKDB_VECTOR_ROWS))):
                yield chunk

    def append_batch(self, table: str, snapshot_path: Path, snapshot_sha: str, batch_id: str,
                     columns: list[str]) -> dict[str, Any]:
        """Append a validated snapshot's contract `columns` to `table` once: appending the same snapshot again is a
        no-op. Columns the contract does not declare stay in the snapshot only (`columns_not_stored`): the table's
        columns are the contract's, whatever a batch adds."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        not_stored = [c for c in pq.read_schema(snapshot_path).names if c not in columns]
        schema = table.split(".")[0]
        with self.connect() as con:
            con.execute(f"create schema if not exists {schema}")
            exists = con.table_exists(table)
            appended = 0
            if not exists or not con.execute(f"select count(*) from {table} where _snapshot_hash = ?",
                                             [snapshot_sha]).fetchall()[0][0]:
                data = pq.read_table(snapshot_path, columns=columns)
                rows = data.num_rows
                data = (data.append_column("_snapshot_hash", pa.repeat(pa.scalar(snapshot_sha, pa.string()), rows))
                        .append_column("_batch_id", pa.repeat(pa.scalar(batch_id, pa.string()), rows))
                        .append_column("_ingested_at", pa.repeat(pa.scalar(_now(), pa.timestamp("us")), rows)))
                with con.transaction():
                    con.insert_arrow(table, data, create=not exists)
                appended = rows
            total, batches = con.execute(f"select count(*), count(distinct _snapshot_hash) from {table}").fetchall()[0]
        return {"appended_rows": int(appended), "total_rows": int(total), "batches": int(batches),
                "columns_not_stored": not_stored}

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
                    model_version varchar, snapshot_hash varchar, score double precision, scored_at timestamp)"""
            )
            # One transaction: a batch is stored whole or not at all, and the store commits once, not per chunk.
            with con.transaction():
                for chunk in chunks:
                    written += con.insert_frame(PREDICTIONS_TABLE, chunk, ignore_conflicts=True)
        return int(written)

    def model_version_recorded(self, model_name: str, version: str) -> bool:
        if not self.table_exists(MODEL_VERSIONS_TABLE):
            return False
        with self.connect(read_only=True) as con:
            [(found,)] = con.execute(f"select count(*) from {MODEL_VERSIONS_TABLE} where model_name = ? and version = ?",
                                     [model_name, str(version)]).fetchall()
        return bool(found)

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
            con.execute(f"insert into {MODEL_VERSIONS_TABLE} ({columns}, created_at) values ({marks}, ?)",
                        [*record.values(), _now()])


_DUCKDB_VECTOR_ROWS = 2048  # fetch_df_chunk counts in DuckDB vectors of this many rows


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC).replace(tzinfo=None)


def _rechunked(first, batches, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Record batches cut where the engine cut them; re-cut them to `chunk_rows` rows each."""
    import pyarrow as pa

    pending = pa.Table.from_batches([first])
    for batch in batches:
        pending = pa.concat_tables([pending, pa.Table.from_batches([batch])])
        while pending.num_rows >= chunk_rows:
            yield arrow_to_frame(pending.slice(0, chunk_rows))
            pending = pending.slice(chunk_rows)
    while pending.num_rows:
        yield arrow_to_frame(pending.slice(0, chunk_rows))
        pending = pending.slice(chunk_rows)
