"""Validate a raw batch against the data contract (`data.columns` in the project config).

The contract becomes a Great Expectations 1.x suite, grouped into named checks (schema, row count,
nulls, ranges, categories, target labels, unique ids). The suite runs on an in-memory (ephemeral)
GX context: nothing is written to disk, no progress bars, no analytics. Each failed expectation
becomes one line a user can act on, e.g.
`tenure_months: 12 values (0.24%) outside [0, 72], e.g. [-3, 99]`.

great_expectations is imported inside the functions: loading the Dagster definitions must stay
cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ml_platform.config import DataSection

CHECK_NAMES = ("schema", "row_count", "nulls", "ranges", "categories", "target_labels", "unique_ids")

# Pandas dtype names GX's ExpectColumnValuesToBeInTypeList accepts for each contract type. On an
# object column GX checks each value instead, against the Python types among these names ("str",
# "int", "float"). Categorical, timezone-aware and Arrow/"string" columns are shown to GX as their
# plain equivalents (see _plain_frame), because GX cannot name those dtypes.
_INTEGER = (
    *(f"int{b}" for b in (8, 16, 32, 64)),
    *(f"uint{b}" for b in (8, 16, 32, 64)),
    *(f"Int{b}Dtype" for b in (8, 16, 32, 64)),
    *(f"UInt{b}Dtype" for b in (8, 16, 32, 64)),
    "int",
)
_DTYPE_NAMES: dict[str, tuple[str, ...]] = {
    "integer": _INTEGER,
    "number": (*_INTEGER, "float16", "float32", "float64", "Float32Dtype", "Float64Dtype", "float"),
    "category": ("object", "str"),
    "string": ("object", "str"),
    "boolean": ("bool", "BooleanDtype"),
    "date": tuple(f"datetime64[{unit}]" for unit in ("s", "ms", "us", "ns")),
    "datetime": tuple(f"datetime64[{unit}]" for unit in ("s", "ms", "us", "ns")),
}

# BASIC computes counts and a short list of unexpected values; SUMMARY and COMPLETE add value
# counts and row indexes, which cost more than the checks themselves on a large batch.
_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 20}
_EXAMPLES = 5
_WHAT_IS_CHECKED = {
    "expect_column_values_to_be_between": "range",
    "expect_column_values_to_be_in_set": "allowed values",
    "expect_column_values_to_be_unique": "uniqueness",
    "expect_column_values_to_be_in_type_list": "type",
    "expect_column_values_to_not_be_null": "nulls",
    "expect_column_distinct_values_to_contain_set": "labels",
}


@dataclass(frozen=True)
class CheckOutcome:
    """The outcome of one named check (one or more GX expectations)."""

    name: str
    passed: bool
    description: str
    failures: list[str]
    expectations: int


@dataclass(frozen=True)
class ValidationReport:
    """Every check run on one batch, and the raw GX validation result."""

    passed: bool
    checks: list[CheckOutcome]
    rows: int
    gx_result: dict

    def failures(self) -> list[str]:
        """One line per failed expectation, in check order."""
        return [line for check in self.checks for line in check.failures]

    def check(self, name: str) -> CheckOutcome:
        """The outcome of the check called `name` (one of CHECK_NAMES)."""
        for outcome in self.checks:
            if outcome.name == name:
                return outcome
        raise KeyError(f"no check named {name!r} (checks: {', '.join(CHECK_NAMES)})")

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "rows": self.rows,
            "checks": [asdict(check) for check in self.checks],
            "gx_result": self.gx_result,
        }


def build_expectations(data: DataSection) -> dict[str, list]:
    """The GX expectations that make up each check, keyed by check name (all of CHECK_NAMES)."""
    E = _great_expectations().expectations
    checks: dict[str, list] = {name: [] for name in CHECK_NAMES}

    def add(check: str, expectation_class: Any, **kwargs: Any) -> None:
        checks[check].append(expectation_class(**kwargs, meta={"check": check}))

    for col, spec in data.columns.items():
        add("schema", E.ExpectColumnToExist, column=col)
        add("schema", E.ExpectColumnValuesToBeInTypeList, column=col, type_list=list(_DTYPE_NAMES[spec.type]))

        if spec.max_null_fraction < 1:
            add("nulls", E.ExpectColumnValuesToNotBeNull, column=col, mostly=1 - spec.max_null_fraction)
        else:
            # Nulls are allowed, but a column with no value at all is a broken feed.
            add(
                "nulls",
                E.ExpectColumnProportionOfNonNullValuesToBeBetween,
                column=col,
                min_value=0,
                strict_min=True,
            )

        if spec.min is not None or spec.max is not None:
            add("ranges", E.ExpectColumnValuesToBeBetween, column=col, min_value=spec.min, max_value=spec.max)
        if spec.allowed is not None:
            add("categories", E.ExpectColumnValuesToBeInSet, column=col, value_set=list(spec.allowed))

    add("row_count", E.ExpectTableRowCountToBeBetween, min_value=data.min_rows)

    add("target_labels", E.ExpectColumnToExist, column=data.target)
    add("target_labels", E.ExpectColumnValuesToNotBeNull, column=data.target)
    if data.labels is not None:  # a regression target has no labels: its type and range are the contract's
        labels = list(data.labels)
        add("target_labels", E.ExpectColumnValuesToBeInSet, column=data.target, value_set=labels)
        add("target_labels", E.ExpectColumnDistinctValuesToContainSet, column=data.target, value_set=labels)

    if data.id_column:
        add("unique_ids", E.ExpectColumnValuesToBeUnique, column=data.id_column)
    return checks


def validate_batch(df: pd.DataFrame, data: DataSection) -> ValidationReport:
    """Validate `df` against the data contract and report each check in a user's words.

    A contract column missing from `df` fails the schema check; the other checks skip it. Extra
    columns are allowed (the schema check's description names them).
    """
    import pandas as pd

    gx = _great_expectations()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    frame = _plain_frame(df, data)
    by_check, not_checked = _runnable(build_expectations(data), frame)

    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            # No data docs site: the default ephemeral context reserves a temporary folder for one.
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
        ),
    )
    batch_definition = (
        context.data_sources.add_pandas("raw_batch")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole_frame")
    )
    suite = context.suites.add(
        gx.ExpectationSuite(name="data_contract", expectations=[e for es in by_check.values() for e in es])
    )
    # A ValidationDefinition loads the batch once; `batch.validate` would load (and hash) it twice.
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name="data_contract", data=batch_definition, suite=suite)
    )
    # GX filters the whole frame before each column check (`df[df[col].notnull()]`); without
    # copy-on-write pandas copies every column each time, which is a third of the run time.
    with pd.option_context("mode.copy_on_write", True):
        suite_result = validation.run(batch_parameters={"dataframe": frame}, result_format=_RESULT_FORMAT)

    # GX groups results by column; report them in the contract's order. The failure lines read
    # the result objects, whose example values keep their Python types (dates stay dates).
    order = {e.id: i for i, e in enumerate(suite.expectations)}
    results: dict[str, list] = {name: [] for name in CHECK_NAMES}
    for result in sorted(suite_result.results, key=lambda r: order.get(r.expectation_config.id, 0)):
        results[result.expectation_config.meta["check"]].append(result)

    rows = len(df)
    checks = []
    for name in CHECK_NAMES:
        failures = not_checked[name] + [
            _failure_line(name, r, df, data, rows) for r in results[name] if not r.success
        ]
        checks.append(
            CheckOutcome(
                name=name,
                passed=not failures,
                description=_describe(name, df, data),
                failures=failures,
                expectations=len(results[name]),
            )
        )
    return ValidationReport(
        passed=all(c.passed for c in checks), checks=checks, rows=rows, gx_result=suite_result.to_json_dict()
    )


def _great_expectations() -> Any:
    # Analytics off before GX is first imported; a user's own setting wins.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints each in-memory batch smaller than HASH_THRESHOLD bytes for the batch's markers: an MD5 of
    # pandas' hash of every row, 1.3 s per million rows (larger batches already go without). A batch here is
    # named by its snapshot's SHA-256, so the fingerprint is left out for every size.
    if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        pandas_execution_engine.HASH_THRESHOLD = 0
    return great_expectations


def _runnable(by_check: dict[str, list], frame: pd.DataFrame) -> tuple[dict[str, list], dict[str, list[str]]]:
    """The expectations that can run on `frame`, and a line for each range that cannot be checked.

    A missing column is reported once, by the schema check. A range on a column that is not
    numeric is not run: GX would raise, and then compute every other metric again (it retries a
    failed batch of metrics), which triples the time.
    """
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    runnable: dict[str, list] = {}
    not_checked: dict[str, list[str]] = {name: [] for name in by_check}
    for check, expectations in by_check.items():
        runnable[check] = []
        for e in expectations:
            col = getattr(e, "column", None)
            if (
                col is not None
                and col not in frame.columns
                and e.expectation_type != "expect_column_to_exist"
            ):
                continue
            if e.expectation_type == "expect_column_values_to_be_between":
                dtype = frame[col].dtype
                if not is_numeric_dtype(dtype) or is_bool_dtype(dtype):
                    if frame[col].notna().any():
                        not_checked[check].append(
                            f"{col}: range {_range(e.min_value, e.max_value)} not checked,"
                            f" the column holds {dtype}, not numbers"
                        )
                    continue
            if (
                e.expectation_type == "expect_column_values_to_be_in_type_list"
                and "index" not in frame.columns
            ):
                e = _text_type_check_on_one_row(e, frame[col])
            runnable[check].append(e)
    return runnable, not_checked


def _text_type_check_on_one_row(e: Any, column: pd.Series) -> Any:
    """The type expectation `e`, on one row when pandas shows that `column` holds only text it accepts.

    On an object column GX tests the Python type of every value, one by one (about 0.25 s per
    column at 1M rows). `infer_dtype` finds the same in one vectorized pass: "string" means every value is a `str`
    (nulls aside, which GX skips too), and GX accepts any `str` when "str" is in the type list, so GX
    checking the first value gives the same outcome. Any other column is checked value by value,
    which also counts and shows the values of the wrong type.
    """
    from great_expectations.expectations.row_conditions import Column
    from pandas.api.types import infer_dtype

    if column.dtype != object or "str" not in e.type_list or infer_dtype(column, skipna=True) != "string":
        return e
    first = next(i for i, value in enumerate(column.to_numpy()) if isinstance(value, str))
    return type(e)(
        column=e.column,
        type_list=e.type_list,
        # GX filters with DataFrame.query, where `index` is the frame's index (0..n-1, see
        # _plain_frame) unless a column is called "index" (_runnable then keeps the full check).
        row_condition=Column("index") == first,
        meta={**e.meta, "rows_checked": "the first value: pandas infer_dtype found only text (str) values"},
    )


def _plain_frame(df: pd.DataFrame, data: DataSection) -> pd.DataFrame:
    """`df` with contract columns GX cannot type-check by name shown as their plain equivalents.

    Categorical columns become plain arrays of their values, Arrow/"string" text becomes object,
    timezone-aware timestamps become naive UTC. Other columns are shared with `df`, not copied. The
    index is 0..n-1, so that a row condition can name a row by its position.
    """
    import numpy as np
    import pandas as pd
    from pandas.api.types import is_string_dtype

    replaced = {}
    for col in data.columns:
        if col not in df.columns:
            continue
        column, dtype = df[col], df[col].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            # The categories' own dtype (object for text), float when integer categories have nulls.
            replaced[col] = pd.Series(np.asarray(column), index=df.index)
        elif isinstance(dtype, pd.StringDtype | pd.ArrowDtype) and is_string_dtype(dtype):
            replaced[col] = column.astype(object)
        elif isinstance(dtype, pd.DatetimeTZDtype):
            replaced[col] = column.dt.tz_convert(None)
    plain = df.assign(**replaced) if replaced else df
    if not plain.index.equals(pd.RangeIndex(len(plain))):
        plain = plain.copy(deep=False)
        plain.index = pd.RangeIndex(len(plain))
    return plain


def _describe(check: str, df: pd.DataFrame, data: DataSection) -> str:
    columns = data.columns
    if check == "schema":
        extra = [str(c) for c in df.columns if c not in columns]
        return f"All {len(columns)} contract columns are present with their declared types" + (
            f"; extra columns not in the contract (allowed): {', '.join(extra)}" if extra else ""
        )
    if check == "row_count":
        return f"The batch has at least {data.min_rows:,} rows (data.min_rows)"
    if check == "nulls":
        return "Each column's share of nulls is within its max_null_fraction, and no column is entirely null"
    if check == "ranges":
        ranged = [c for c, s in columns.items() if s.min is not None or s.max is not None]
        return (
            f"Values lie within the contract's min/max ({', '.join(ranged)})"
            if ranged
            else "No column has a min or max in the contract; nothing to check"
        )
    if check == "categories":
        listed = [c for c, s in columns.items() if s.allowed is not None]
        return (
            f"Category columns hold only their allowed values ({', '.join(listed)})"
            if listed
            else "No column lists allowed values in the contract; nothing to check"
        )
    if check == "target_labels":
        if data.labels is None:
            return f"Target '{data.target}' is present and never null (a numeric regression target)"
        return (
            f"Target '{data.target}' is present, never null, and its labels are exactly {list(data.labels)}"
        )
    if check == "unique_ids":
        return (
            f"Each '{data.id_column}' occurs once"
            if data.id_column
            else "No id_column in the contract; nothing to check"
        )
    raise ValueError(f"unknown check {check!r}")


def _failure_line(check: str, result: Any, df: pd.DataFrame, data: DataSection, rows: int) -> str:
    """One line for a failed GX ExpectationValidationResult, naming the column and the numbers."""
    kind, kwargs = result.expectation_config.type, result.expectation_config.kwargs
    col = kwargs.get("column")
    r = result.result or {}
    error = _exception_message(result.exception_info or {})
    if error:
        what = _WHAT_IS_CHECKED.get(kind, kind)
        dtype = f" (the column is {df[col].dtype})" if col in df.columns else ""
        return f"{col or 'table'}: {what} could not be checked{dtype}: {error}"

    count, pct, examples = r.get("unexpected_count") or 0, _pct(r.get("unexpected_percent")), _examples(r)
    values = _count(count, "value")

    if kind == "expect_column_to_exist":
        if check == "target_labels":
            return f"{col}: target column is missing"
        return f"{col}: column is missing (the contract declares it as {data.columns[col].type})"
    if kind == "expect_column_values_to_be_in_type_list":
        expected, dtype = data.columns[col].type, df[col].dtype
        line = f"{col}: expected {expected}, got {dtype}"
        if count:  # an object column, checked value by value
            kinds = sorted({type(v).__name__ for v in r.get("partial_unexpected_list") or []})
            line += f" ({values} ({pct}) of type {', '.join(kinds)}, e.g. {examples})"
        if expected == "integer" and dtype.kind == "f" and df[col].hasnans:
            line += " (whole numbers with nulls need the nullable Int64 dtype)"
        elif expected in ("date", "datetime") and dtype.kind == "O":
            line += " (convert with pandas.to_datetime)"
        return line
    if kind == "expect_table_row_count_to_be_between":
        return f"table has {r.get('observed_value', rows):,} rows, fewer than the {data.min_rows:,} required (data.min_rows)"
    if kind == "expect_column_proportion_of_non_null_values_to_be_between":
        return f"column {col} is entirely null"
    if kind == "expect_column_values_to_not_be_null":
        if check == "nulls" and rows and count == r.get("element_count", rows):
            return f"column {col} is entirely null"
        if check == "target_labels":
            return f"{col}: the target is null in {_count(count, 'row')} ({pct})"
        allowed = data.columns[col].max_null_fraction
        return f"{col}: {_count(count, 'null')} ({pct}), more than the allowed {_pct(allowed * 100)} (max_null_fraction)"
    if kind == "expect_column_values_to_be_between":
        return f"{col}: {values} ({pct}) outside {_range(kwargs.get('min_value'), kwargs.get('max_value'))}, e.g. {examples}"
    if kind == "expect_column_values_to_be_in_set":
        if check == "target_labels":
            return f"{col}: {values} ({pct}) not among the labels {list(data.labels)}, e.g. {examples}"
        return f"{col}: {values} ({pct}) not in the allowed set {_fmt_list(kwargs['value_set'])}, e.g. {examples}"
    if kind == "expect_column_distinct_values_to_contain_set":
        missing = r.get("partial_missing_list") or []
        return f"{col}: label(s) {_fmt_list(missing)} never occur (expected labels {list(data.labels)})"
    if kind == "expect_column_values_to_be_unique":
        return f"{col}: {_count(count, 'row')} ({pct}) share their id with another row, e.g. {examples}"
    return f"{col or 'table'}: {kind} failed: {r}"


def _exception_message(info: dict) -> str | None:
    """GX reports an error either directly or keyed by the metric that raised it."""
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    for value in info.values():
        if isinstance(value, dict) and value.get("exception_message"):
            return str(value["exception_message"]).strip().splitlines()[-1]
    return None


def _examples(result: dict) -> str:
    seen: dict[str, Any] = {}
    for value in result.get("partial_unexpected_list") or []:
        seen.setdefault(repr(value), value)
        if len(seen) == _EXAMPLES:
            break
    return _fmt_list(list(seen.values()))


def _fmt_list(values: Sequence[Any]) -> str:
    return "[" + ", ".join(_fmt(v) for v in values) + "]"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    return str(value)


def _range(lo: Any, hi: Any) -> str:
    return f"[{'-inf' if lo is None else _fmt(lo)}, {'inf' if hi is None else _fmt(hi)}]"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _pct(percent: float | None) -> str:
    if not percent:
        return "0%"
    if percent < 0.01:
        return "<0.01%"
    return f"{percent:.2f}".rstrip("0").rstrip(".") + "%"
