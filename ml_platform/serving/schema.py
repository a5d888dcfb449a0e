"""What a request may contain: the model signature's columns and types, plus the data contract's
categories and null rules. Parsing and checking are plain Python over the decoded JSON, cheap
enough to run per request on the event loop.

Accepted bodies (MLflow's `/invocations` formats, and ours on `/predict`):
    {"dataframe_split": {"columns": [...], "data": [[...], ...]}}
    {"dataframe_records": [{...}, ...]}
    {"instances": [{...}, ...]}  or  {"instances": {"col": [...], ...}}
    {"inputs": [{...}, ...]}     or  {"inputs": {"col": [...], ...}}
    {"records": [{...}, ...]}    (/predict; a record with only the id column is looked up online)
    {"entity_ids": ["C1", ...]}  (/predict; every row looked up online)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


class InputError(ValueError):
    """The request is malformed or does not match the model's inputs (HTTP 400)."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "integer", "number", "string", "boolean"
    nullable: bool
    allowed: frozenset | None  # categories of a string column, from the data contract


_KINDS = {"long": "integer", "integer": "integer", "double": "number", "float": "number",
          "string": "string", "boolean": "boolean"}


@dataclass(frozen=True)
class RequestSchema:
    columns: tuple[Column, ...]
    id_column: str | None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @classmethod
    def build(cls, signature_inputs: list[tuple[str, str]], config: Any) -> RequestSchema:
        """`signature_inputs`: (name, MLflow type) of the model signature, in order. Columns in the data
        contract take its null rule and categories; derived feature columns (not in the contract) may
        be null when numeric, since they inherit nulls from their inputs and the pipeline imputes them."""
        contract = config.data.columns
        columns = []
        for name, mlflow_type in signature_inputs:
            kind = _KINDS.get(mlflow_type)
            if kind is None:
                raise ValueError(f"model input '{name}' has type '{mlflow_type}', which the service cannot check")
            spec = contract.get(name)
            nullable = spec.max_null_fraction > 0 if spec else kind == "number"
            allowed = frozenset(spec.allowed) if spec and spec.allowed and kind == "string" else None
            columns.append(Column(name, kind, nullable, allowed))
        return cls(tuple(columns), config.data.id_column)

    def check_row(self, record: Any, where: str) -> dict[str, Any]:
        """One record → the model's columns only, each value checked and normalized. Raises InputError.
        Other keys (the id column, extra fields) are ignored, as `mlflow models serve` does."""
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected an object of column values, got {type(record).__name__}")
        row = {}
        for col in self.columns:
            if col.name not in record:
                raise InputError(f"{where}: missing column '{col.name}'")
            row[col.name] = _check_value(col, record[col.name], where)
        return row

    def entity_of(self, record: Any) -> str | None:
        if self.id_column and isinstance(record, dict):
            value = record.get(self.id_column)
            return None if value is None else str(value)
        return None

    def wants_lookup(self, record: Any) -> bool:
        """A /predict record that names only the entity: its features come from the online table."""
        return (isinstance(record, dict) and self.id_column is not None and self.id_column in record
                and not any(c.name in record for c in self.columns))


def _check_value(col: Column, value: Any, where: str) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if not col.nullable:
            raise InputError(f"{where}: column '{col.name}' may not be null")
        return None
    kind = col.kind
    if kind == "number":
        if isinstance(value, bool):  # a contract boolean feeds the model as 0/1
            return float(value)
        if isinstance(value, int | float):
            if math.isinf(value):
                raise InputError(f"{where}: column '{col.name}' must be finite, got {value}")
            return float(value)
    elif kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind == "string":
        if isinstance(value, str):
            if col.allowed is not None and value not in col.allowed:
                raise InputError(f"{where}: column '{col.name}': unknown category {value!r} "
                                 f"(expected one of {sorted(col.allowed)})")
            return value
    elif kind == "boolean" and isinstance(value, bool):
        return value
    expected = {"number": "a number", "integer": "an integer", "string": "a string", "boolean": "true or false"}[kind]
    raise InputError(f"{where}: column '{col.name}': expected {expected}, got {value!r}")


def records_of(body: Any, formats: tuple[str, ...]) -> tuple[str, list[Any]]:
    """The body's rows as a list of records, and the format they came in. Raises InputError."""
    if not isinstance(body, dict):
        raise InputError(f"expected a JSON object with one of the keys {list(formats)}")
    found = [key for key in formats if key in body]
    if len(found) != 1:
        raise InputError(f"expected exactly one of the keys {list(formats)}, got {sorted(body) or 'none'}")
    key = found[0]
    payload = body[key]
    if key == "dataframe_split":
        if not isinstance(payload, dict) or not isinstance(payload.get("columns"), list) \
                or not isinstance(payload.get("data"), list):
            raise InputError("dataframe_split: expected {\"columns\": [...], \"data\": [[...], ...]}")
        columns = payload["columns"]
        records = []
        for i, row in enumerate(payload["data"]):
            if not isinstance(row, list) or len(row) != len(columns):
                raise InputError(f"dataframe_split: data[{i}] must be a list of {len(columns)} values")
            records.append(dict(zip(columns, row, strict=True)))
    elif key == "entity_ids":
        if not isinstance(payload, list) or not all(isinstance(e, str | int) for e in payload):
            raise InputError("entity_ids: expected a list of ids")
        records = payload  # resolved by the caller
    elif isinstance(payload, dict) and key in ("instances", "inputs"):  # columnar: {"col": [values]}
        lengths = {len(v) if isinstance(v, list) else -1 for v in payload.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise InputError(f"{key}: columnar input needs a list of equal length per column")
        n = lengths.pop()
        records = [{c: v[i] for c, v in payload.items()} for i in range(n)]
    elif isinstance(payload, list):
        records = payload
    else:
        raise InputError(f"{key}: expected a list of records")
    if not records:
        raise InputError(f"{key}: no rows to score")
    return key, records
