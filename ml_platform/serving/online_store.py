"""The online feature table: each entity's latest feature row, in a SQLite file the prediction service reads.

The `online_features` asset (defs/serving/online.py) publishes it from the dbt feature table; the service
looks rows up by entity id, a request at a time. Standard library, pandas and numpy only: the serving
process imports this without Dagster, and the code location without anything heavy.

No skew by construction: the rows are the feature table's own rows (nothing is recomputed here), and each
column's pandas dtype is recorded when it is published and restored on lookup, so
`model_inputs(lookup(ids, table), columns)` is the frame the offline path gives the model for those rows.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.sql import quote_identifier

PUBLISHED_TABLE = "_published"  # one metadata row per online table
SNAPSHOT_COLUMN = "snapshot_hash"  # the feature table's lineage column: which validated batch a row came from
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_MAX_PARAMS = 900  # below SQLite's smallest default limit of bound parameters (999)
_SQL_TYPES = {"bool": "INTEGER", "int": "INTEGER", "float": "REAL", "datetime": "TEXT", "text": "TEXT"}


class OnlineStoreError(RuntimeError):
    """The online store or table is missing, or a frame cannot be published as it is."""


class UnknownEntityError(LookupError):
    """Some requested ids have no row in the online table; `missing` lists them, in request order."""

    def __init__(self, table: str, missing: list[str]):
        self.table = table
        self.missing = missing
        shown = ", ".join(repr(m) for m in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        super().__init__(f"{len(missing)} id(s) not in the online table '{table}': {shown}")


class OnlineFeatureStore:
    """One SQLite file of online tables, each one row per entity, plus `_published` (what was published, when).

    Readers get one connection per thread, opened on first use; `close()` closes them all.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    # -- publishing -----------------------------------------------------------------------------------

    def publish(self, frame: pd.DataFrame, *, id_column: str, table: str) -> dict:
        """Replace `table` with `frame` (already one row per entity) atomically: readers see the old table
        or the new one, never a part. Returns what `published(table)` will answer."""
        _check_name(table)
        columns = [(str(name), frame[name].dtype) for name in frame.columns]
        if len({name for name, _ in columns}) != len(columns):
            raise OnlineStoreError(f"online table '{table}': the frame has duplicate column names")
        if id_column not in frame.columns:
            raise OnlineStoreError(f"online table '{table}': id column '{id_column}' is not in the frame")
        ids = frame[id_column]
        if ids.isna().any():
            raise OnlineStoreError(f"online table '{table}': {int(ids.isna().sum())} row(s) have no {id_column}")
        repeated = ids[ids.duplicated()].astype(str).unique().tolist()
        if repeated:
            raise OnlineStoreError(f"online table '{table}': {len(repeated)} {id_column}(s) have more than one row "
                                   f"(e.g. {repeated[:3]}); publish the latest row per entity")
        kinds = [_kind(name, dtype) for name, dtype in columns]
        schema = [[name, str(dtype)] for name, dtype in columns]
        staging = f"{table}__incoming"
        definition = ", ".join(
            f"{quote_identifier(name)} {_SQL_TYPES[kind]}" + (" NOT NULL PRIMARY KEY" if name == id_column else "")
            for (name, _), kind in zip(columns, kinds, strict=True)
        )
        insert = (f"insert into {staging} ({', '.join(quote_identifier(n) for n, _ in columns)}) "
                  f"values ({', '.join('?' for _ in columns)})")
        values = [_encode(frame[name], kind) for (name, _), kind in zip(columns, kinds, strict=True)]
        record = {
            "table": table,
            "id_column": id_column,
            "rows": len(frame),
            "snapshot_hashes": (sorted(frame[SNAPSHOT_COLUMN].dropna().astype(str).unique().tolist())
                                if SNAPSHOT_COLUMN in frame.columns else []),
            "content_sha256": _content_sha256(frame, schema),
            "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "columns": dict(schema),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as con:
            con.execute("pragma journal_mode = wal")  # readers keep reading while a new table is written
            con.execute("pragma synchronous = normal")
            with _transaction(con):
                con.execute(f"drop table if exists {staging}")
                con.execute(f"create table {staging} ({definition}) without rowid")
                con.executemany(insert, zip(*values, strict=True))
            with _transaction(con):  # the swap: small, and all or nothing
                con.execute(f"create table if not exists {PUBLISHED_TABLE} (table_name text primary key, "
                            "id_column text, rows integer, snapshot_hashes text, content_sha256 text, "
                            "published_at text, schema text)")
                con.execute(f"drop table if exists {table}")
                con.execute(f"alter table {staging} rename to {table}")
                con.execute(f"insert or replace into {PUBLISHED_TABLE} values (?, ?, ?, ?, ?, ?, ?)",
                            [table, id_column, len(frame), json.dumps(record["snapshot_hashes"]),
                             record["content_sha256"], record["published_at"], json.dumps(schema)])
        return record

    # -- reading --------------------------------------------------------------------------------------

    def published(self, table: str) -> dict | None:
        """What `table` holds (rows, snapshot hashes, content digest, dtypes, when), or None if never published."""
        _check_name(table)
        if not self.path.exists():
            return None
        with self._read() as con:
            row = self._metadata(con, table)
        if row is None:
            return None
        id_column, rows, snapshots, digest, published_at, schema = row
        return {"table": table, "id_column": id_column, "rows": rows, "snapshot_hashes": json.loads(snapshots),
                "content_sha256": digest, "published_at": published_at, "columns": dict(json.loads(schema))}

    def lookup(self, entity_ids: list[str], table: str) -> pd.DataFrame:
        """The rows of `entity_ids`, in the order asked (repeats included), with the dtypes they were
        published with. Raises UnknownEntityError naming the ids that have no row."""
        _check_name(table)
        wanted = [str(e) for e in entity_ids]
        unique = list(dict.fromkeys(wanted))
        with self._read() as con:  # one read transaction: the schema and the rows are of the same publish
            row = self._metadata(con, table)
            if row is None:
                raise OnlineStoreError(f"online table '{table}' is not published in {self.path}: "
                                       "materialize the online_features asset (`ml-platform run`)")
            id_column, schema = row[0], _parse_schema(row[5])
            found: list[tuple] = []
            for start in range(0, len(unique), _MAX_PARAMS):
                chunk = unique[start:start + _MAX_PARAMS]
                found += con.execute(f"select * from {table} where {quote_identifier(id_column)} in "
                                     f"({', '.join('?' for _ in chunk)})", chunk).fetchall()
        id_position = [name for name, _ in schema].index(id_column)
        by_id = {str(r[id_position]): r for r in found}
        missing = [e for e in unique if e not in by_id]
        if missing:
            raise UnknownEntityError(table, missing)
        ordered = [by_id[e] for e in wanted]
        cells = list(zip(*ordered, strict=True)) if ordered else [()] * len(schema)
        decoded = {name: _decode(list(values), dtype) for (name, dtype), values in zip(schema, cells, strict=True)}
        return pd.DataFrame(decoded, copy=False)  # the arrays are new: copying them again costs half the lookup

    def close(self) -> None:
        """Close every thread's reader connection (a thread that reads again opens a new one)."""
        with self._lock:
            readers, self._readers = self._readers, []
            self._local = threading.local()
        for con in readers:
            con.close()

    def _metadata(self, con: sqlite3.Connection, table: str) -> tuple | None:
        try:
            return con.execute(f"select id_column, rows, snapshot_hashes, content_sha256, published_at, schema "
                               f"from {PUBLISHED_TABLE} where table_name = ?", [table]).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        con = getattr(self._local, "connection", None)
        if con is None:
            if not self.path.exists():
                raise OnlineStoreError(f"online store {self.path} does not exist yet: materialize the "
                                       "online_features asset (`ml-platform run`)")
            # One connection per thread; check_same_thread=False only so close() may run on another thread.
            con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True, timeout=5,
                                  isolation_level=None, check_same_thread=False)
            con.execute("pragma query_only = on")
            with self._lock:
                self._readers.append(con)
                self._local.connection = con
        con.execute("begin")
        try:
            yield con
        finally:
            con.execute("commit")


@contextmanager
def _transaction(con: sqlite3.Connection) -> Iterator[None]:
    con.execute("begin immediate")
    try:
        yield
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


def _check_name(table: str) -> None:
    if not _NAME.match(table):
        raise OnlineStoreError(f"online table name {table!r} must be letters, digits and _ (starting with a letter)")



def _kind(name: str, dtype: Any) -> str:
    """How a column is stored. Booleans as 0/1 (restored as booleans: `model_inputs` makes them floats,
    online as offline); floats as doubles, bit for bit except -0.0, which SQLite keeps as 0; datetimes as
    ISO text in their own unit, exactly."""
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        return "datetime"
    if pd.api.types.is_string_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
        return "text"
    raise OnlineStoreError(f"column '{name}' has dtype {dtype}, which the online store does not keep faithfully "
                           "(it keeps booleans, integers, floats, datetimes and strings); cast it in the feature model")


def _encode(column: pd.Series, kind: str) -> np.ndarray:
    """Python values SQLite binds (int, float, str, None)."""
    missing = column.isna().to_numpy()
    if kind == "datetime":
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            column = column.dt.tz_convert("UTC").dt.tz_localize(None)
        unit = np.datetime_data(column.dtype)[0]
        values = np.datetime_as_string(column.to_numpy(), unit=unit).astype(object)
    elif kind == "text":
        inferred = pd.api.types.infer_dtype(column, skipna=True)
        if inferred not in {"string", "empty"}:
            raise OnlineStoreError(f"column '{column.name}' holds {inferred} values, not only strings; "
                                   "cast it in the feature model")
        values = column.to_numpy(dtype=object)
    else:
        values = column.to_numpy(dtype=object, na_value=None)
    values[missing] = None
    return values


def _decode(values: list, dtype: Any) -> Any:
    """The column as it was published: same dtype and values. A missing string comes back as None, as
    DuckDB and Parquet give it (not NaN, which scikit-learn's imputers treat differently in object columns)."""
    if isinstance(dtype, pd.DatetimeTZDtype):
        naive = np.array(["NaT" if v is None else v for v in values], dtype=f"datetime64[{dtype.unit}]")
        return pd.Series(naive).dt.tz_localize("UTC").dt.tz_convert(dtype.tz)
    if pd.api.types.is_datetime64_dtype(dtype):
        return np.array(["NaT" if v is None else v for v in values], dtype=dtype)
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        return np.array(values, dtype=dtype)  # a float column's NULLs become NaN
    return pd.array(values, dtype=dtype)  # nullable extension dtypes (Int32, boolean, string), object


@lru_cache(maxsize=64)
def _parse_schema(text: str) -> tuple[tuple[str, Any], ...]:
    return tuple((name, pd.api.types.pandas_dtype(dtype)) for name, dtype in json.loads(text))


def _content_sha256(frame: pd.DataFrame, schema: list) -> str:
    """A digest of the table's content, independent of row order: republishing the same rows gives the same one."""
    rows = np.sort(pd.util.hash_pandas_object(frame, index=False).to_numpy())
    return hashlib.sha256(json.dumps(schema).encode() + rows.tobytes()).hexdigest()
