"""Late labels: reading a label batch (one CSV or Parquet file) and checking it against the project config
and the logged predictions. Pure: no Dagster and no warehouse connection; the `late_labels` asset hands in
the predictions a file may name and the labels already stored.

A label file has
- `prediction_id`, labelling one logged prediction, and/or the config's id column (`data.id_column`, e.g.
  `customer_id`), labelling every served prediction of that entity logged so far. Each row fills at least
  one; a row with both labels its prediction, which must belong to that entity;
- the target column (`data.target`), holding one of `data.labels` for a classification, a number (the true
  value) for a regression;
- optionally `labeled_at`, when the outcome became known (default: when the file is ingested).
Other columns are ignored. Rows are numbered from 1 after the header in error messages.

Stored, a label is one row per labelled prediction (LABEL_COLUMNS), carrying the prediction's score and its
day. `label` is the label's text (a regression's true value as text, so that "12.50" and 12.5 are the same
label); `is_positive` says whether it is the positive label (null for a regression). The day is the prediction's event day:
- a batch prediction: the batch row's `data.timestamp_column` (the feature table's row of that entity in
  that snapshot), when the config has a timestamp and an id column and the row is still in the feature
  table; otherwise the date it was scored (`scored_at`);
- an online prediction: the date it was logged (`logged_at`, UTC): a request is its own event.
The day is decided once, when the label is ingested, so rebuilding the feature table later moves nothing.

Shadow predictions (a challenger's answers that only went to the log) and the rows of `ml-platform check` are
not labelled: live performance is the performance of what was served to the model's users.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.config import DataSection, ProjectConfig
from ml_platform.settings import PlatformPaths
from ml_platform.sql import quote_identifier

LABEL_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
LABELED_AT = "labeled_at"
PREDICTION_ID = "prediction_id"

# One row per labelled prediction, as stored in settings.LABELS_TABLE.
LABEL_COLUMNS = ("prediction_id", "entity_id", "model_name", "model_version", "source", "score", "label",
                 "is_positive", "prediction_day", "labeled_at", "file_name", "file_sha256", "ingested_at")
# What `known_predictions_query` returns: the predictions a file may name.
PREDICTION_COLUMNS = ("prediction_id", "entity_id", "model_name", "model_version", "source", "score",
                      "prediction_day")

EXAMPLES = 3  # how many offending values an error message shows


class LabelError(ValueError):
    """A label file that cannot be ingested: names the file and every problem found, with counts and examples."""

    def __init__(self, file: str, problems: list[str]):
        self.file, self.problems = file, problems
        super().__init__(f"label file {file}: " + "; ".join(problems))


@dataclass(frozen=True)
class ResolvedLabels:
    """A checked label file: the labels to store (LABEL_COLUMNS) and what was already stored."""

    new: pd.DataFrame
    file_rows: int
    already_stored: int  # labelled predictions whose identical label is stored already (a re-delivery)


def label_landing(config: ProjectConfig, paths: PlatformPaths) -> Path:
    """The folder late label files land in: performance.labels_path (relative to the config file), else
    <home>/landing/labels."""
    configured = config.performance.labels_path
    if not configured:
        return paths.label_landing
    path = Path(configured).expanduser()
    return path if path.is_absolute() else (config.source_file.parent / path).resolve()


def is_label_file(path: Path) -> bool:
    """A label file waiting in the landing folder (files being copied in start with a dot)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in LABEL_SUFFIXES


def read_label_file(path: Path, data: DataSection) -> pd.DataFrame:
    """The file's labels as a frame of `row`, `prediction_id`, `entity_id` (strings or None), `label` (the
    configured label value; for a regression the number as text) and `labeled_at` (a timestamp or NaT).
    LabelError for an unreadable or empty file, missing columns, rows with no id, labels outside data.labels
    (a regression: values that are not finite numbers) and unparseable labeled_at values."""
    labels, problems = parse_label_file(path, data)
    if problems:
        raise LabelError(path.name, problems)
    return labels


def parse_label_file(path: Path, data: DataSection) -> tuple[pd.DataFrame, list[str]]:
    """`read_label_file`, but the problems of single rows (no id, no or a wrong label, a bad labeled_at) are
    returned with the frame rather than raised, so that `resolve_labels` can report its own in the same error.
    A row with such a problem has a null `label`. A file that cannot be read at all is still a LabelError."""
    name = path.name
    frame = _read(path, data)
    id_col = data.id_column
    columns = [str(c) for c in frame.columns]
    id_columns = [c for c in (PREDICTION_ID, id_col) if c and c in columns]
    missing = []
    if not id_columns:
        expected = f"'{PREDICTION_ID}'" + (f" or '{id_col}' (data.id_column)" if id_col else "")
        missing.append(f"no id column: expected {expected}{_hint(id_col or PREDICTION_ID, columns)}")
    if data.target not in columns:
        missing.append(f"no '{data.target}' column (data.target){_hint(data.target, columns)}")
    if missing:
        raise LabelError(name, [f"{m}; its columns are {columns}" for m in missing])
    if frame.empty:
        raise LabelError(name, ["has a header but no rows"])

    problems = []
    out = pd.DataFrame({"row": range(1, len(frame) + 1)})
    out[PREDICTION_ID] = _ids(frame[PREDICTION_ID]) if PREDICTION_ID in columns else None
    out["entity_id"] = _ids(frame[id_col]) if id_col and id_col in columns else None
    no_id = out[PREDICTION_ID].isna() & out["entity_id"].isna()
    if no_id.any():
        problems.append(f"no {' or '.join(id_columns)} on {_n(no_id.sum(), 'row')} "
                        f"(rows {_rows(out.loc[no_id, 'row'])})")

    target = frame[data.target]
    empty = target.isna()
    if empty.any():
        problems.append(f"no {data.target} label on {_n(empty.sum(), 'row')} (rows {_rows(out.loc[empty, 'row'])})")
    if data.labels is None:  # a regression: the label is the true value
        values = pd.to_numeric(target, errors="coerce").astype(float)
        wrong = ~empty & ~np.isfinite(values)
        if wrong.any():
            problems.append(f"{data.target} is not a finite number on {_n(wrong.sum(), 'row')} (rows "
                            f"{_rows(out.loc[wrong, 'row'])}, e.g. {_examples(target[wrong])}): a regression's "
                            "label is the true value")
        out["label"] = values.map(lambda v: _canonical(float(v)) if np.isfinite(v) else None).astype(object)
    else:
        by_text = {_canonical(label): label for label in data.labels}
        canonical = target.map(lambda v: None if _is_null(v) else _canonical(v))
        wrong = ~empty & ~canonical.isin(list(by_text))
        if wrong.any():
            counts = canonical[wrong].value_counts()
            shown = ", ".join(f"{value!r} ({_n(count, 'row')})" for value, count in counts.head(EXAMPLES).items())
            problems.append(f"{data.target} labels outside data.labels {list(data.labels)} on "
                            f"{_n(wrong.sum(), 'row')}: {shown}{' ...' if len(counts) > EXAMPLES else ''}")
        out["label"] = canonical.map(by_text)

    if LABELED_AT in columns:
        from ml_platform.lib.csv_format import date_formats

        # Read as the file writes it (31.12.2026, 12/31/2026), never by a guess that could swap day and month.
        formats = date_formats(frame[LABELED_AT].dropna())
        if len(formats) > 1:
            problems.append(f"{LABELED_AT} cannot tell day from month (e.g. {frame[LABELED_AT].dropna().iloc[0]!r} "
                            f"fits both {' and '.join(formats)}): write it as 2026-12-31")
        parsed = pd.to_datetime(frame[LABELED_AT], format=formats[0] if len(formats) == 1 else None,
                                errors="coerce", utc=True)
        bad = parsed.isna() & frame[LABELED_AT].notna()
        if bad.any():
            examples = ", ".join(repr(v) for v in frame.loc[bad, LABELED_AT].head(EXAMPLES))
            problems.append(f"{LABELED_AT} is not a date or time on {_n(bad.sum(), 'row')} (e.g. {examples})")
        out[LABELED_AT] = parsed.dt.tz_convert(None)
    else:
        out[LABELED_AT] = pd.NaT
    out.loc[no_id, "label"] = None
    return out, problems


def label_keys(labels: pd.DataFrame) -> pd.DataFrame:
    """The distinct ids a label frame names, as (prediction_id, entity_id): what to look predictions up by."""
    return labels[[PREDICTION_ID, "entity_id"]].drop_duplicates().reset_index(drop=True)


def known_predictions_query(*, batch_table: str | None, log_table: str | None, feature_table: str | None,
                            id_column: str | None, timestamp_column: str | None, keys: str = "label_keys") -> str:
    """SQL for the served predictions of one model (parameter: the model name, once per table given) that the
    relation `keys` (from `label_keys`) names by prediction id or entity id, with each prediction's day.
    `feature_table` is only read for the event day of batch predictions (the module docstring says how)."""
    named = (f"(p.prediction_id in (select prediction_id from {keys} where prediction_id is not null) "
             f"or p.entity_id in (select entity_id from {keys} where entity_id is not null))")
    parts = []
    if batch_table:
        day = "cast(p.scored_at as date)"
        join = ""
        if feature_table and id_column and timestamp_column:
            # One event day per (snapshot, entity), whatever the feature table holds.
            join = (f"left join (select snapshot_hash, cast({quote_identifier(id_column)} as varchar) as entity_id, "
                    f"min(cast({quote_identifier(timestamp_column)} as date)) as event_day from {feature_table} "
                    f"group by 1, 2) f on f.snapshot_hash = p.snapshot_hash and f.entity_id = p.entity_id ")
            day = f"coalesce(f.event_day, {day})"
        parts.append(f"select p.prediction_id, p.entity_id, p.model_name, p.model_version, 'batch' as source, "
                     f"p.score, {day} as prediction_day from {batch_table} p {join}"
                     f"where p.model_name = ? and {named}")
    if log_table:
        parts.append(f"select p.prediction_id, p.entity_id, p.model_name, p.model_version, 'online' as source, "
                     f"p.score, cast(p.logged_at as date) as prediction_day from {log_table} p "
                     f"where p.model_name = ? and p.variant in ('champion', 'challenger') and {named}")
    if not parts:
        raise ValueError("known_predictions_query needs a batch predictions table or a prediction log")
    return " union all ".join(parts)


def resolve_labels(labels: pd.DataFrame, predictions: pd.DataFrame, stored: pd.DataFrame, *, file: str,
                   file_sha256: str, model_name: str, data: DataSection, ingested_at: pd.Timestamp,
                   problems: list[str] | None = None) -> ResolvedLabels:
    """Match a file's labels (from `read_label_file`) to the predictions they name, one row per labelled
    prediction. `predictions` holds PREDICTION_COLUMNS (at least every prediction the file names, as
    `known_predictions_query` gives them); `stored` the labels already stored for them (prediction_id,
    label, file_name). LabelError for ids that match no logged prediction, ids labelled more than once in the
    file, labels that conflict with a stored one, and prediction ids given with another entity's id. A label
    identical to a stored one is a re-delivery: counted, not stored again. `problems` (from `parse_label_file`)
    are reported first in the same LabelError; the rows they concern (a null label) are not matched."""
    problems = list(problems or [])
    labels = labels[labels["label"].notna()]
    predictions = predictions.drop_duplicates(PREDICTION_ID)
    by_pid = labels[labels[PREDICTION_ID].notna()]
    by_entity = labels[labels[PREDICTION_ID].isna()]

    repeated_keys = False
    for frame, key, what in ((by_pid, PREDICTION_ID, "prediction id"), (by_entity, "entity_id", f"{data.id_column} value")):
        repeated = frame[frame.duplicated(key, keep=False)]
        if len(repeated):
            repeated_keys = True
            groups = repeated.groupby(key, sort=False)["row"].apply(list)
            shown = ", ".join(f"{k!r} (rows {_rows(v)})" for k, v in groups.head(EXAMPLES).items())
            problems.append(f"duplicate labels: {_n(len(groups), what)} labelled more than once in the file: {shown}"
                            f"{' ...' if len(groups) > EXAMPLES else ''}")

    unknown_pid = by_pid.loc[~by_pid[PREDICTION_ID].isin(predictions[PREDICTION_ID]), PREDICTION_ID].drop_duplicates()
    unknown_entity = by_entity.loc[~by_entity["entity_id"].isin(predictions["entity_id"].dropna()),
                                   "entity_id"].drop_duplicates()
    for unknown, what in ((unknown_pid, "prediction id"), (unknown_entity, f"{data.id_column} value")):
        if len(unknown):
            problems.append(f"unknown ids: no logged prediction of model '{model_name}' matches {_n(len(unknown), what)} "
                            f"(e.g. {_examples(unknown)}): label only predictions that were scored or served")

    pid_rows = by_pid.merge(predictions, on=PREDICTION_ID, how="inner", suffixes=("_given", ""))
    mismatch = pid_rows[pid_rows["entity_id_given"].notna() & (pid_rows["entity_id_given"] != pid_rows["entity_id"])]
    if len(mismatch):
        shown = ", ".join(f"{r.prediction_id!r} is {r.entity_id!r}'s, not {r.entity_id_given!r}"
                          for r in mismatch.head(EXAMPLES).itertuples())
        problems.append(f"a prediction id with another entity's {data.id_column} on {_n(len(mismatch), 'row')} ({shown})")
    pid_rows = pid_rows.drop(columns="entity_id_given")
    entity_rows = by_entity.drop(columns=PREDICTION_ID).merge(predictions, on="entity_id", how="inner")
    resolved = pd.concat([pid_rows, entity_rows], ignore_index=True)

    twice = resolved[resolved.duplicated(PREDICTION_ID, keep=False)]
    if len(twice) and not repeated_keys:  # only new information: a prediction named by its id and by its entity
        groups = twice.groupby(PREDICTION_ID, sort=False)["row"].apply(list)
        shown = ", ".join(f"{k!r} (rows {_rows(v)})" for k, v in groups.head(EXAMPLES).items())
        problems.append(f"duplicate labels: {_n(len(groups), 'prediction')} labelled twice in the file, by prediction "
                        f"id and by {data.id_column}: {shown}")

    resolved["label"] = resolved["label"].map(_canonical)
    previous = resolved.merge(stored.assign(label=stored["label"].map(_canonical)), on=PREDICTION_ID,
                              suffixes=("", "_stored"))
    conflicts = previous[previous["label"] != previous["label_stored"]]
    if len(conflicts):
        shown = ", ".join(f"{r.prediction_id!r}: {r.label_stored} from {r.file_name}, here {r.label} (row {r.row})"
                          for r in conflicts.head(EXAMPLES).itertuples())
        problems.append(f"duplicate labels: a different label is already stored for {_n(len(conflicts), 'prediction')} "
                        f"({shown}{' ...' if len(conflicts) > EXAMPLES else ''})")
    if problems:
        raise LabelError(file, problems)

    new = resolved[~resolved[PREDICTION_ID].isin(previous[PREDICTION_ID])].copy()
    if data.labels is None:  # a regression: no positive label
        new["is_positive"] = pd.Series(pd.NA, index=new.index, dtype="boolean")
    else:
        new["is_positive"] = new["label"] == _canonical(data.positive_label)
    new[LABELED_AT] = new[LABELED_AT].fillna(ingested_at)
    new["file_name"], new["file_sha256"], new["ingested_at"] = file, file_sha256, ingested_at
    new["score"] = new["score"].astype(float)
    new["prediction_day"] = pd.to_datetime(new["prediction_day"]).dt.date
    return ResolvedLabels(new=new[list(LABEL_COLUMNS)].reset_index(drop=True), file_rows=len(labels),
                          already_stored=len(previous))


def _read(path: Path, data: DataSection) -> pd.DataFrame:
    name = path.name
    if not path.is_file():
        raise LabelError(name, [f"not found at {path}" if not path.exists() else f"{path} is not a file"])
    if path.stat().st_size == 0:
        raise LabelError(name, ["is empty (0 bytes)"])
    kind = LABEL_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise LabelError(name, [f"unknown format '{path.suffix}': expected .csv or .parquet"])
    # Ids stay text: '00123' is not 123.
    text_columns = {c: "string" for c in (PREDICTION_ID, data.id_column) if c}
    try:
        if kind == "csv":
            # Read as it is written (a spreadsheet saved in Europe, on Windows): each file may come from another tool.
            from ml_platform.lib.csv_format import sniff_file

            written = sniff_file(path)
            frame = pd.read_csv(path, dtype=text_columns, low_memory=False, sep=written.separator,
                                decimal=written.decimal, encoding=written.encoding)
        else:
            frame = pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise LabelError(name, ["has no columns (is it empty?)"]) from None
    except PermissionError:
        raise LabelError(name, ["is not readable (permission denied)"]) from None
    except Exception as exc:  # pyarrow and parser errors come in many types: name the file and the cause
        raise LabelError(name, [f"could not be read as {kind}: {exc}"]) from None
    return frame.reset_index(drop=True)


def _ids(column: pd.Series) -> pd.Series:
    def text(value: Any) -> str | None:
        if _is_null(value):
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value).strip() or None

    return column.astype(object).map(text).astype(object)


def _canonical(value: Any) -> str:
    """A label's text, so that 1, 1.0 and '1' from CSV or Parquet are the same label."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "item"):  # numpy scalars
        return _canonical(value.item())
    return str(value).strip()


def _is_null(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _n(count: Any, noun: str) -> str:
    count = int(count)
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _rows(rows: Any) -> str:
    rows = list(rows)
    return ", ".join(str(r) for r in rows[:EXAMPLES]) + (" ..." if len(rows) > EXAMPLES else "")


def _examples(values: pd.Series) -> str:
    shown = ", ".join(repr(v) for v in values.head(EXAMPLES))
    return shown + (" ..." if len(values) > EXAMPLES else "")


def _hint(name: str, columns: list[str]) -> str:
    close = difflib.get_close_matches(name, columns, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
