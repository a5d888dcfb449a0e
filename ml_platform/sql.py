"""Connections to the warehouse - DuckDB (embedded) or PostgreSQL (production) - behind one small API.

Our SQL is written once, in the subset both engines share: `?` placeholders, `create ... if not exists`,
`double precision`, `insert ... on conflict do nothing`. What differs - placeholders, loading a frame,
reading Arrow, transactions - is handled here, so no caller branches on the engine.

No Dagster here, and pandas/pyarrow/duckdb/adbc are imported where used: `ml-platform lineage` reads
the warehouse through this module and must start fast.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


class WarehouseError(RuntimeError):
    """The warehouse cannot be reached or does not hold what was asked for."""


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def connect(url: str, *, read_only: bool = False) -> Connection:
    """A connection to the warehouse at `url`: a DuckDB file path, or a postgresql:// URL."""
    return PostgresConnection(url) if is_postgres(url) else DuckDBConnection(Path(url), read_only=read_only)


class Result:
    """Rows of one statement (DB-API style), also as a frame."""

    def __init__(self, rows: list[tuple], columns: list[str]):
        self._rows, self.columns = rows, columns

    def fetchall(self) -> list[tuple]:
        return self._rows

    def fetchone(self) -> tuple | None:
        return self._rows[0] if self._rows else None

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self._rows]


class Connection(ABC):
    """What both engines offer (each engine implements the abstract methods). `execute` returns a Result;
    `frame` a DataFrame with DuckDB's dtypes."""

    engine: str

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        ...

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        ...

    @abstractmethod
    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        ...

    @abstractmethod
    def arrow_batches(self, sql: str, params: Sequence[Any] = ()) -> Iterator[pa.RecordBatch]:
        """The result as Arrow record batches, read as they are consumed."""

    @abstractmethod
    def register(self, name: str, frame: pd.DataFrame) -> None:
        """Make `frame` queryable as table `name` for this connection (a view in DuckDB, a temporary table in
        PostgreSQL)."""

    @abstractmethod
    def unregister(self, name: str) -> None:
        ...

    @abstractmethod
    def insert_arrow(self, table: str, data: pa.Table, *, create: bool = False) -> None:
        """Append `data` to `table` by column name; `create` makes the table from its schema first."""

    @abstractmethod
    def close(self) -> None:
        ...

    # -- the same on both engines ------------------------------------------------------------------
    def table_exists(self, table: str) -> bool:
        schema, name = table.split(".")
        [(found,)] = self.execute("select count(*) from information_schema.tables where table_schema = ? "
                                  "and table_name = ?", [schema, name]).fetchall()
        return bool(found)

    def insert_frame(self, table: str, frame: pd.DataFrame, *, ignore_conflicts: bool = False) -> int:
        """Insert `frame`'s rows into `table` by column name, each value cast to its column's type; with
        `ignore_conflicts`, rows whose key is already stored are skipped. Returns the rows inserted."""
        names = ", ".join(quote_identifier(c) for c in frame.columns)
        values = ", ".join(self._cast_to_column(table, c) for c in frame.columns)
        self.register("_incoming", frame)
        try:
            insert = f"insert into {table} ({names}) select {values} from _incoming"
            added = self._insert_counting(insert + (" on conflict do nothing" if ignore_conflicts else ""))
        except BaseException:
            self._drop_quietly("_incoming")  # the statement's own error is the one to see
            raise
        self.unregister("_incoming")
        return added

    def _cast_to_column(self, table: str, column: str) -> str:
        return quote_identifier(column)

    def _drop_quietly(self, name: str) -> None:
        try:
            self.unregister(name)
        except Exception:
            pass

    @abstractmethod
    def _insert_counting(self, insert: str) -> int:
        """Run an insert and return the rows it added."""

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Everything inside commits together or not at all."""
        self.execute("begin")
        try:
            yield self
        except BaseException:
            self.execute("rollback")
            raise
        self.execute("commit")

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class DuckDBConnection(Connection):
    engine = "duckdb"

    def __init__(self, location: Path, *, read_only: bool = False):
        import duckdb

        if read_only and not location.exists():
            raise WarehouseError(f"warehouse {location} does not exist yet: run the lifecycle first")
        location.parent.mkdir(parents=True, exist_ok=True)
        # DuckDB allows one writing process per file; wait briefly for another process's lock.
        for attempt in range(50):
            try:
                self.raw = duckdb.connect(str(location), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or attempt == 49:
                    raise
                time.sleep(0.2)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        cursor = self.raw.execute(sql, list(params))
        if cursor.description is None:
            return Result([], [])
        return Result(cursor.fetchall(), [d[0] for d in cursor.description])

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.raw.executemany(sql, [list(r) for r in rows])

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        # Through Arrow where that gives DuckDB's own dtypes: twice as fast on text columns (arrow_to_frame).
        table = self.raw.sql(sql, params=list(params)).to_arrow_table()
        if table.num_rows and all(arrow_converts_like_duckdb(f.type) for f in table.schema):
            return arrow_to_frame(table)
        return self.raw.execute(sql, list(params)).df()

    def arrow_batches(self, sql: str, params: Sequence[Any] = ()) -> Iterator[pa.RecordBatch]:
        reader = self.raw.sql(sql, params=list(params)).to_arrow_reader(100_000)
        try:
            yield from reader
        finally:
            reader.close()

    def register(self, name: str, frame: pd.DataFrame) -> None:
        self.raw.register(name, frame)

    def _insert_counting(self, insert: str) -> int:
        [(added,)] = self.raw.execute(insert).fetchall()  # DuckDB answers an insert with the rows it added
        return int(added)

    def unregister(self, name: str) -> None:
        self.raw.unregister(name)

    def insert_arrow(self, table: str, data: pa.Table, *, create: bool = False) -> None:
        self.raw.register("_incoming_arrow", plain_types(data))
        try:
            if create:
                self.raw.execute(f"create table {table} as select * from _incoming_arrow")
            else:
                self.raw.execute(f"insert into {table} by name select * from _incoming_arrow")
        finally:
            self.raw.unregister("_incoming_arrow")

    def close(self) -> None:
        self.raw.close()


class PostgresConnection(Connection):
    """ADBC's PostgreSQL driver: Arrow in and out (a million rows read in ~0.5 s, written in ~1 s), which the
    training snapshot and batch scoring need. Autocommit, except inside `transaction()`."""

    engine = "postgres"

    def __init__(self, url: str):
        import adbc_driver_postgresql.dbapi as adbc

        try:
            self.raw = adbc.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True)
        except Exception as exc:
            from ml_platform.settings import redacted

            raise WarehouseError(f"cannot connect to the PostgreSQL warehouse {redacted(url)}: {_first_line(exc)}") from None
        self._cursor = self.raw.cursor()
        self._column_types: dict[str, dict[str, str]] = {}
        self._cursor.execute("set timezone = 'UTC'")  # timestamps are stored as UTC, as DuckDB does

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        cursor = self._cursor
        cursor.execute(_numbered_placeholders(sql), list(params) or None)
        if cursor.description is None:
            return Result([], [])
        return Result(cursor.fetchall(), [d[0] for d in cursor.description])

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor.executemany(_numbered_placeholders(sql), [list(r) for r in rows])

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        self._cursor.execute(_numbered_placeholders(sql), list(params) or None)
        return arrow_to_frame(self._cursor.fetch_arrow_table())

    def arrow_batches(self, sql: str, params: Sequence[Any] = ()) -> Iterator[pa.RecordBatch]:
        cursor = self.raw.cursor()
        try:
            cursor.execute(_numbered_placeholders(sql), list(params) or None)
            yield from cursor.fetch_record_batch()
        finally:
            cursor.close()

    def register(self, name: str, frame: pd.DataFrame) -> None:
        import pyarrow as pa

        self._cursor.execute(f"drop table if exists pg_temp.{name}")  # never a permanent table of that name
        self._cursor.adbc_ingest(name, pa.Table.from_pandas(frame, preserve_index=False), mode="create",
                                 temporary=True)

    def unregister(self, name: str) -> None:
        self._cursor.execute(f"drop table if exists pg_temp.{name}")

    def _insert_counting(self, insert: str) -> int:
        [(added,)] = self.execute(f"with added as ({insert} returning 1) select count(*) from added").fetchall()
        return int(added)

    def _cast_to_column(self, table: str, column: str) -> str:
        # A frame's column can arrive as text (all nulls, or an empty frame); PostgreSQL, unlike DuckDB,
        # does not cast text to the column's type on insert.
        if table not in self._column_types:
            schema, name = table.split(".")
            self._column_types[table] = dict(self.execute(
                "select column_name, data_type from information_schema.columns where table_schema = ? and "
                "table_name = ?", [schema, name]).fetchall())
        kind = self._column_types[table].get(column)
        return f"cast({quote_identifier(column)} as {kind})" if kind else quote_identifier(column)

    def insert_arrow(self, table: str, data: pa.Table, *, create: bool = False) -> None:
        schema, name = table.split(".")
        data = plain_types(data)
        if create:
            self._cursor.adbc_ingest(name, data, mode="create", db_schema_name=schema)
        else:
            # adbc appends by position; insert by name through a temporary table.
            self._cursor.execute("drop table if exists pg_temp._incoming_arrow")
            self._cursor.adbc_ingest("_incoming_arrow", data, mode="create", temporary=True)
            columns = ", ".join(quote_identifier(c) for c in data.column_names)
            self._cursor.execute(f"insert into {table} ({columns}) select {columns} from _incoming_arrow")
            self._cursor.execute("drop table pg_temp._incoming_arrow")

    def close(self) -> None:
        self._cursor.close()
        self.raw.close()


def _numbered_placeholders(sql: str) -> str:
    """`?` -> `$1, $2, ...` (PostgreSQL's form), leaving quoted text alone."""
    out, n, quote = [], 0, None
    for char in sql:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "?":
            n += 1
            out.append(f"${n}")
            continue
        out.append(char)
    return "".join(out)


def quote_identifier(name: str) -> str:
    """A column name as SQL on both engines reads it exactly: a team's columns may hold spaces or capitals."""
    return '"' + name.replace('"', '""') + '"'


def plain_types(data: pa.Table) -> pa.Table:
    """The same column types on both engines: dictionary (pandas categories) to its values (DuckDB would make an
    ENUM, PostgreSQL has no such column type), unsigned to signed integers, nanoseconds to microseconds."""
    import pyarrow as pa

    fields = []
    for field in data.schema:
        kind = field.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if pa.types.is_large_string(kind):
            kind = pa.string()
        if pa.types.is_unsigned_integer(kind):
            kind = pa.int64()
        if pa.types.is_timestamp(kind) and kind.unit == "ns":
            kind = pa.timestamp("us", tz=kind.tz)
        fields.append(pa.field(field.name, kind))
    target = pa.schema(fields)
    return data if target.equals(data.schema) else data.cast(target)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# -- Arrow -> pandas with DuckDB's dtypes -----------------------------------------------------------------
def arrow_converts_like_duckdb(arrow_type: Any) -> bool:
    """Types whose Arrow -> pandas conversion `arrow_to_frame` makes equal to DuckDB's `.df()`."""
    import pyarrow as pa

    t = pa.types
    return (t.is_string(arrow_type) or t.is_large_string(arrow_type) or t.is_floating(arrow_type)
            or t.is_integer(arrow_type) or t.is_boolean(arrow_type) or t.is_date32(arrow_type)
            or t.is_decimal(arrow_type) or (t.is_timestamp(arrow_type) and arrow_type.tz is None))


def arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow -> pandas with DuckDB's dtypes: integers and booleans with nulls become Int32, boolean, ...
    (not float and object), dates datetime64[us], decimals float64, timestamps naive UTC. Arrow's conversion
    is about twice as fast as DuckDB's on text columns: it shares repeated strings instead of making one
    object per row."""
    import pandas as pd
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
        elif pa.types.is_timestamp(kind) and kind.tz is not None:
            frame[name] = frame[name].dt.tz_convert("UTC").dt.tz_localize(None)
    return frame


_NULLABLE = {"bool": "boolean", "int8": "Int8", "int16": "Int16", "int32": "Int32", "int64": "Int64",
             "uint8": "UInt8", "uint16": "UInt16", "uint32": "UInt32", "uint64": "UInt64"}
