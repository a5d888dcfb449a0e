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

    def iter_query(self, sql: str, params: list | None = None, chunk_rows: int = 100_000) -> Iterator[pd.DataFrame]:
        """The rows of `sql` as frames of at most `chunk_rows` rows, read as they are consumed: memory holds a
        chunk, not the result. Each chunk has the dtypes `query` would give its rows. The connection stays
        open until the generator is exhausted or closed."""
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be 1 or more, got {chunk_rows}")
        if not self.location().exists():
            raise WarehouseError(f"warehouse {self.location()} does not exist yet: run the lifecycle first")
        # Read-write, as write_predictions connects: DuckDB refuses a read-only and a read-write connection
        # to one file in one process, and batch scoring writes predictions while it reads features.
        with self.connect() as con:
            reader = con.sql(sql, params=params or []).to_arrow_reader(chunk_rows)
            if all(_arrow_converts_like_duckdb(field.type) for field in reader.schema):
                yield from _arrow_chunks(reader, chunk_rows)
                return
            # A type whose Arrow -> pandas conversion differs from DuckDB's own: DuckDB converts (slower).
            reader.close()
            result = con.execute(sql, params or [])
            while len(chunk := result.fetch_df_chunk(max(1, chunk_rows // _DUCKDB_VECTOR_ROWS))):
                yield chunk

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
            # One transaction: a batch is stored whole or not at all, and DuckDB commits once, not per chunk.
            con.execute("begin")
            try:
                for chunk in chunks:
                    con.register("incoming", chunk)
                    # The insert reports the rows it added; ids already stored are ignored.
                    written += con.execute(
                        f"insert or ignore into {PREDICTIONS_TABLE} by name select * from incoming").fetchall()[0][0]
                    con.unregister("incoming")
            except BaseException:
                con.execute("rollback")
                raise
            con.execute("commit")
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


_DUCKDB_VECTOR_ROWS = 2048  # fetch_df_chunk counts in DuckDB vectors of this many rows


def _arrow_converts_like_duckdb(arrow_type: Any) -> bool:
    """Types whose Arrow -> pandas conversion `_arrow_frame` makes equal to DuckDB's `.df()`."""
    import pyarrow as pa

    t = pa.types
    return (t.is_string(arrow_type) or t.is_large_string(arrow_type) or t.is_floating(arrow_type)
            or t.is_integer(arrow_type) or t.is_boolean(arrow_type) or t.is_date32(arrow_type)
            or t.is_decimal(arrow_type) or (t.is_timestamp(arrow_type) and arrow_type.tz is None))


def _arrow_chunks(reader: Any, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """DuckDB's record batches cut at row-group boundaries; re-cut them to `chunk_rows` each."""
    import pyarrow as pa

    pending = pa.Table.from_batches([], schema=reader.schema)
    for batch in reader:
        pending = pa.concat_tables([pending, pa.Table.from_batches([batch])])
        while pending.num_rows >= chunk_rows:
            yield _arrow_frame(pending.slice(0, chunk_rows))
            pending = pending.slice(chunk_rows)
    if pending.num_rows:
        yield _arrow_frame(pending)


def _arrow_frame(table: Any) -> pd.DataFrame:
    """Arrow -> pandas with DuckDB's dtypes: integers and booleans with nulls become Int32, boolean, ...
    (not float and object), dates datetime64[us], decimals float64. Arrow's conversion is about twice as
    fast as DuckDB's on text columns: it shares repeated strings instead of making one object per row."""
    import pyarrow as pa

    frame = table.to_pandas(date_as_object=False)
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if (pa.types.is_integer(kind) or pa.types.is_boolean(kind)) and column.null_count:
            frame[name] = column.to_pandas(types_mapper=lambda t: pd.api.types.pandas_dtype(_NULLABLE[str(t)])).array
        elif pa.types.is_date32(kind):
            frame[name] = frame[name].astype("datetime64[us]")
        elif pa.types.is_decimal(kind):
            frame[name] = column.cast(pa.float64()).to_numpy()
    return frame


_NULLABLE = {"bool": "boolean", "int8": "Int8", "int16": "Int16", "int32": "Int32", "int64": "Int64",
             "uint8": "UInt8", "uint16": "UInt16", "uint32": "UInt32", "uint64": "UInt64"}
