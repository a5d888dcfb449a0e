"""`ml-platform init`: a starter project config and dbt feature model from a team's data file.

It reads the file, infers each column's contract (type, nulls, categories), suggests the target, id and
timestamp columns, tells the task from the target (two values: a binary classification; a number with more: a
regression), and writes text a person reads and edits: the YAML is written by hand (not dumped) so
that every field carries a comment saying what it does. Nothing existing is overwritten unless asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ml_platform.lib import csv_format

if TYPE_CHECKING:
    from ml_platform.config import CsvFormat

TARGET_NAMES = ("target", "label", "y", "class", "outcome", "churned", "churn", "diagnosis", "default")
MAX_CATEGORIES = 30  # a text column with at most this many values (and repeats) is a category
SQL_TYPES = {"integer": "integer", "number": "double precision", "boolean": "boolean", "date": "date",
             "datetime": "timestamp", "category": "varchar", "string": "varchar"}


class InitError(ValueError):
    """The data file cannot become a project: the message says what to fix."""


@dataclass
class ColumnGuess:
    name: str
    type: str
    null_fraction: float
    allowed: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    format: str | None = None  # a date written otherwise than ISO, e.g. %d.%m.%Y
    note: str | None = None  # what a person should know about the guess


@dataclass
class Starter:
    """What init found in the file, and the files it will write."""

    name: str
    data_path: Path
    rows: int
    columns: list[ColumnGuess]
    target: str
    labels: list[Any]
    positive_label: Any
    id_column: str | None
    timestamp_column: str | None
    task: str = "classification"  # or "regression": a numeric target with more than two values
    pipeline: str | None = None  # the team's own 'module:function' returning a Pipeline
    approvers: list[str] = field(default_factory=list)
    csv: CsvFormat | None = None  # how the CSV file is written, when it is one
    notes: list[str] = field(default_factory=list)  # how the file was read, for the person running init
    excluded: list[str] = field(default_factory=list)  # columns that are no feature as they are (data.exclude_columns)


@dataclass
class DataFile:
    """The team's file as init read it: the frame, how a CSV is written (data.source.csv), and what a person
    should know about that (a setting found, odd values read as missing, a number column left as text)."""

    path: Path
    frame: pd.DataFrame
    csv: CsvFormat
    notes: list[str] = field(default_factory=list)


def read_data(path: Path) -> DataFile:
    from ml_platform.config import CsvFormat

    if not path.exists():
        raise InitError(f"{path}: no such file (give the CSV or Parquet file your notebook reads)")
    if path.is_dir():
        raise InitError(f"{path}: is a directory, expected a CSV or Parquet file")
    from ml_platform.lib.sources import TABULAR_SUFFIXES, read_tabular

    suffix = path.suffix.lower()
    if suffix not in TABULAR_SUFFIXES:
        raise InitError(f"{path}: unsupported file type '{suffix}' (use .csv or .parquet)")
    found = CsvFormat()
    try:
        if suffix in {".parquet", ".pq"}:
            return _checked(DataFile(path, read_tabular(path), found))
        found = csv_format.sniff_file(path)
        try:
            raw = read_tabular(path, found)
        except UnicodeDecodeError:  # not UTF-8 after all, past the sample: as if the sample had shown it
            found = found.model_copy(update={"encoding": csv_format.FALLBACK_ENCODINGS[0]})
            raw = read_tabular(path, found)
        numbers_read = csv_format.with_numbers_read(raw, found)
        frame = raw if numbers_read == found else read_tabular(path, numbers_read)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InitError(f"{path}: cannot be read as {suffix.lstrip('.').upper()}: {first}") from None
    return _checked(DataFile(path, frame, numbers_read, csv_format.notes(frame, raw, numbers_read)))


def _checked(data: DataFile) -> DataFile:
    if data.frame.empty:
        raise InitError(f"{data.path}: has no rows")
    return data


def inspect(data: DataFile, *, target: str | None = None, name: str | None = None,
            id_column: str | None = None) -> Starter:
    frame, data_path = data.frame, data.path
    columns = [str(c) for c in frame.columns]
    if len(columns) < 2:
        raise InitError(f"{data_path}: has {len(columns)} column ({columns[0]!r}); a model needs a target "
                        "and at least one feature column (is the file's separator a comma?)")
    chosen = target or _suggest_target(columns)
    if chosen not in columns:
        raise InitError(f"--target {chosen!r} is not a column of {data_path.name}; its columns: {', '.join(columns)}")
    values = frame[chosen].dropna().unique()
    if len(values) < 2:
        shown = repr(values[0].item() if hasattr(values[0], "item") else values[0]) if len(values) else "only nulls"
        raise InitError(f"target {chosen!r} has a single value ({shown}) in {len(frame)} rows: there is "
                        "nothing to learn; pick another --target or a file that has both outcomes")
    regression = len(values) > 2 and pd.api.types.is_numeric_dtype(frame[chosen])
    if len(values) > 2 and not regression:
        shown = ", ".join(repr(_plain(v)) for v in sorted(values, key=str)[:6]) + (", ..." if len(values) > 6 else "")
        raise InitError(f"target {chosen!r} has {len(values)} distinct values that are not numbers ({shown}), which "
                        "looks like several classes; the platform models a binary classification (two labels) or a "
                        "regression (a numeric target): give such a --target, or fix the values in the file")
    labels = [] if regression else sorted((_plain(v) for v in values), key=str)
    # A column empty in every row tells nothing of its type, and the contract refuses a column with no value at all.
    empty = [c for c in columns if c not in {chosen, id_column} and frame[c].isna().all()]
    guesses = [_guess_column(frame[c], c) for c in columns if c not in empty]
    by_name = {g.name: g for g in guesses}
    if id_column and id_column not in columns:
        raise InitError(f"--id {id_column!r} is not a column of {data_path.name}; its columns: {', '.join(columns)}")
    ident = id_column or _suggest_id(frame, columns, exclude=chosen)
    if ident:
        # An id is text, or a whole number when the file holds it as one (the contract checks the file's dtype).
        if by_name[ident].type != "integer":
            by_name[ident].type = "string"
        by_name[ident].allowed = None
    timestamp = next((g.name for g in guesses if g.type in {"date", "datetime"} and g.name != chosen), None)
    excluded, notes = _not_features(frame, guesses, keep={chosen, ident, timestamp})
    notes = [g.note for g in guesses if g.note] + notes + [
        f"{c}: empty in every row: left out of the contract (runs keep it in the batch's snapshot and name it); "
        "declare it under data.columns once it has values" for c in empty]
    return Starter(name=_model_name(name or data_path.stem), data_path=data_path, rows=len(frame), columns=guesses,
                   target=chosen, labels=labels, positive_label=None if regression else _positive(labels, frame[chosen]),
                   id_column=ident, timestamp_column=timestamp, task="regression" if regression else "classification",
                   csv=data.csv, notes=data.notes + notes, excluded=excluded)


def render(starter: Starter, *, config_path: Path, dbt_dir: Path) -> dict[Path, str]:
    """The files init writes: the project config, the model's Dagster code location, and the dbt source,
    feature model and its tests."""
    feature_model = f"{starter.name}_features"
    return {
        config_path: _aligned(_config_text(starter, config_path, feature_model)),
        config_path.parent / "definitions.py": _location_text(starter, config_path),
        dbt_dir / "models" / "sources" / f"{starter.name}.yml": _sources_text(starter),
        dbt_dir / "models" / "features" / f"{feature_model}.sql": _feature_sql(starter),
        dbt_dir / "models" / "features" / f"{feature_model}.yml": _feature_tests(starter, feature_model),
    }


def workspace_entry(starter: Starter, config_path: Path, workspace: Path) -> str | None:
    """The workspace.yaml lines that make the model a code location of its own (None if already listed)."""
    location = (config_path.parent / "definitions.py").resolve()
    try:
        relative = location.relative_to(workspace.resolve().parent)
    except ValueError:
        relative = location
    if workspace.exists() and str(relative) in workspace.read_text():
        return None
    return (f"  - python_file:  # the {starter.name} model (added by ml-platform init)\n"
            f"      relative_path: {relative}\n      location_name: {starter.name}\n      working_directory: .\n")


def write(files: dict[Path, str], *, force: bool) -> None:
    existing = [p for p in files if p.exists()]
    if existing and not force:
        raise InitError("refusing to overwrite " + ", ".join(str(p) for p in existing)
                        + " (pass --force to replace them, or --output/--name for a new model)")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# -- inference ------------------------------------------------------------------------------------
def _guess_column(series: pd.Series, name: str) -> ColumnGuess:
    nulls = float(series.isna().mean())
    present = series.dropna()
    guess = ColumnGuess(name=name, type="string", null_fraction=nulls)
    if pd.api.types.is_bool_dtype(series) or (len(present) and set(present.unique()) <= {True, False}
                                              and present.dtype == object):
        guess.type = "boolean"
    elif pd.api.types.is_numeric_dtype(series):
        # By the dtype the file reads as, which the contract checks: "151.0" in a CSV is a float column (number),
        # even when every value is whole.
        guess.type = "integer" if pd.api.types.is_integer_dtype(series) else "number"
        if len(present):
            guess.low, guess.high = float(present.min()), float(present.max())
    elif pd.api.types.is_datetime64_any_dtype(series) or _parses_as_dates(present):
        parsed = pd.to_datetime(present, errors="coerce")
        guess.type = "date" if bool((parsed == parsed.dt.normalize()).all()) else "datetime"
    elif formats := csv_format.date_formats(present):
        if len(formats) == 1:
            guess.format = formats[0]
            parsed = pd.to_datetime(present, format=guess.format)
            guess.type = "date" if bool((parsed == parsed.dt.normalize()).all()) else "datetime"
        else:  # 03/04/2026: March or April? Every day in the file is 12 or less, so the file cannot tell
            guess.note = (f"{name}: dates, but the file cannot tell day from month (e.g. {present.iloc[0]!r} fits "
                          f"both {' and '.join(formats)}): read as text; to use it as a date, set its type to date "
                          "and its format to the right one")
    else:
        distinct = present.astype(str).unique()
        if len(distinct) <= MAX_CATEGORIES and len(distinct) < max(len(present) // 2, 2):
            guess.type, guess.allowed = "category", sorted(distinct.tolist())
    return guess


def _not_features(frame: pd.DataFrame, guesses: list[ColumnGuess], keep: set) -> tuple[list[str], list[str]]:
    """Free text and dates, which the platform's preprocessing would one-hot encode, one column per value: an email
    column makes a model that learns nothing from it, and on a million rows a matrix that does not fit in memory.
    They stay in the contract and the feature table (for the team's own SQL features), out of the model."""
    excluded, notes = [], []
    for g in guesses:
        if g.name in keep or g.type not in {"string", "date", "datetime"}:
            continue
        excluded.append(g.name)
        if g.type == "string":
            distinct = frame[g.name].nunique()
            what, derive = f"text with {distinct:,} distinct values in {len(frame):,} rows", ""
        else:
            what, derive = f"a {g.type}", ", e.g. the days since it"
        notes.append(f"{g.name}: {what}, not a feature as it is (one column per value): excluded from the model "
                     f"(data.exclude_columns); derive features from it in the dbt model{derive}")
    return excluded, notes


def _parses_as_dates(present: pd.Series) -> bool:
    if present.empty or present.dtype != object:
        return False
    sample = present.astype(str).head(200)
    if not sample.str.match(r"^\d{4}-\d{2}-\d{2}").all():  # ISO dates only: "3/4" is too ambiguous to guess
        return False
    return bool(pd.to_datetime(sample, errors="coerce").notna().all())


def _suggest_target(columns: list[str]) -> str:
    lowered = {c.lower(): c for c in columns}
    for candidate in TARGET_NAMES:
        if candidate in lowered:
            return lowered[candidate]
    return columns[-1]  # the notebook convention: features first, the label last


def _suggest_id(frame: pd.DataFrame, columns: list[str], *, exclude: str) -> str | None:
    for column in columns:
        if column == exclude or not re.search(r"(^id$|_id$|^id_|Id$|ID$)", column):
            continue
        series = frame[column]
        if series.notna().all() and series.is_unique:
            return column
    return None


def _positive(labels: list[Any], target: pd.Series) -> Any:
    for preferred in (1, True, "1", "yes", "true", "positive", "malignant"):
        for label in labels:
            if label == preferred or str(label).lower() == str(preferred):
                return label
    counts = target.value_counts()
    return _plain(counts.index[-1])  # the rarer outcome is usually the one to find


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _model_name(raw: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", raw.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = f"model_{name}".rstrip("_")
    return name


# -- rendering ------------------------------------------------------------------------------------
def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    return text if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\- ]*", text) and text.lower() not in {
        "yes", "no", "true", "false", "null", "on", "off"} else '"' + text.replace('"', '\\"') + '"'


def _contract_line(g: ColumnGuess, starter: Starter) -> str:
    parts = [f"type: {g.type}"]
    if g.null_fraction > 0:
        # Room above what this file has, so that a normal next batch passes.
        parts.append(f"max_null_fraction: {min(1.0, round(g.null_fraction * 1.5 + 0.01, 2))}")
    if g.allowed is not None:
        parts.append("allowed: [" + ", ".join(_yaml_scalar(v) for v in g.allowed) + "]")
    if g.format is not None:
        parts.append(f"format: {_yaml_scalar(g.format)}")
    seen = f" # seen {g.low:g} to {g.high:g}" if g.low is not None and g.name != starter.target else ""
    return f"    {_yaml_key(g.name)}: {{{', '.join(parts)}}}{seen}"


def _aligned(text: str, width: int = 40) -> str:
    """Comments after values start in one column, as a person would write them."""
    lines = []
    for line in text.splitlines():
        content, sep, comment = line.rpartition(" # ")
        if sep and content.strip() and not content.lstrip().startswith("#"):
            line = f"{content.rstrip():<{width}} # {comment}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _yaml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else '"' + name + '"'


def _window_text(s: Starter) -> str:
    if not s.timestamp_column:
        return ""  # a window counts days of the timestamp column
    return (f"  window_days: null                     # e.g. 90: train on the last 90 days of {s.timestamp_column} only "
            "(null: all history)\n")


def _config_text(s: Starter, config_path: Path, feature_model: str) -> str:
    try:
        data_path = s.data_path.resolve().relative_to(config_path.resolve().parent)
    except ValueError:
        data_path = s.data_path.resolve()
    optional = lambda value: value if value else "null"  # noqa: E731
    contract = "\n".join(_contract_line(g, s) for g in s.columns)
    regression = s.task == "regression"
    labels = ", ".join(_yaml_scalar(v) for v in s.labels)
    task = "  task: regression                      # a numeric target: scores are predicted values\n" if regression else ""
    outcomes = ("  # a regression has no labels: each batch's target is a number\n" if regression else
                f"  labels: [{labels}]                    # the exact set of target values a batch may have\n"
                f"  positive_label: {_yaml_scalar(s.positive_label)} # the outcome the score is the probability of\n")
    return f"""# ml_platform project config, written by `ml-platform init` from {s.data_path.name} ({s.rows} rows).
# Read it top to bottom and change what does not fit; docs/configuration.md describes every field.
# Relative paths resolve against this file's folder. Check it with `ml-platform check --only data`.
model:
  name: {s.name}                        # the registered model's name in MLflow (snake_case)
  owner: team:ml-platform               # Dagster asset owner: an email or team:<name>
  description: ""                       # one sentence: what the model predicts (shown in the model card)
  risk_tier: {"medium" if s.approvers else "low"} # low | medium | high; from medium up, promotion needs a sign-off
  intended_use: ""
  limitations: []
  key_prefix: true                       # asset keys under the model's name (NAME/raw_batch): models share one Dagster
{task}
data:
  source:
    kind: file                          # file | table | demo
    path: {data_path}                   # each `ml-platform run` ingests this file as a new batch
{_csv_text(s)}  target: {_yaml_key(s.target)}         # the column the model predicts
{outcomes}  id_column: {optional(s.id_column)}    # unique per row; keeps an entity on one side of the holdout
  timestamp_column: {optional(s.timestamp_column)} # when the row happened (drift and freshness reports)
  sensitive_column: null                # a column to measure the fairness gap across, e.g. a protected group
{_excluded_text(s)}  min_rows: {max(1, min(100, s.rows // 10))} # a smaller batch is refused
  columns: # the data contract, checked on every batch; add min/max to refuse numbers out of a range
{contract}

features:
  dbt_model: {feature_model}            # dbt_project/models/features/{feature_model}.sql: put your feature SQL there

training:
  seed: 42
  holdout_fraction: 0.2                 # frozen holdout for evaluation and the gate
{_window_text(s)}  estimator:
{_estimator_text(s)}

{_gate_text(s)}

{_performance_text(s)}

governance:
  approvers: [{", ".join(_yaml_scalar(a) for a in s.approvers)}] # who may sign off a challenger (MLflow UI tags approval/approver, or `ml-platform approve`)

drift:
  drifted_share_threshold: 0.3          # dataset drift (and a retraining) when this share of features drift
  method: auto                          # Evidently's test per column; or wasserstein | jensenshannon | psi | ks | chisquare
"""


def _excluded_text(s: Starter) -> str:
    if not s.excluded:
        return ""
    names = ", ".join(_yaml_scalar(name) for name in s.excluded)
    return f"  exclude_columns: [{names}] # text and dates: no feature as they are (init's note says why)\n"


def _csv_text(s: Starter) -> str:
    """data.source.csv with what differs from pandas' defaults, or nothing when the file is a plain CSV."""
    from ml_platform.config import CsvFormat

    if s.csv is None:
        return ""
    written = {name: value for name, value in s.csv.model_dump().items() if value != getattr(CsvFormat(), name)}
    if not written:
        return ""
    scalar = lambda v: '"\\t"' if v == "\t" else _yaml_scalar(v)  # noqa: E731
    fields = ", ".join(f"{name}: " + ("[" + ", ".join(scalar(v) for v in value) + "]" if isinstance(value, list)
                                      else scalar(value)) for name, value in written.items())
    return f"    csv: {{{fields}}} # how the file is written (init found it); docs/configuration.md\n"


def _gate_text(s: Starter) -> str:
    if s.task == "regression":
        return """gate:                                # a new model becomes champion only if it passes all of these
  metric: r2                            # r2 | neg_rmse | neg_mae (higher is better: RMSE and MAE are negated)
  min_improvement: 0.002                # a challenger must beat the champion by more than this
  floor: 0.1                            # the first model must reach this ...
  baseline_margin: 0.05                 # ... and beat predicting the training mean (R² 0) by this much
  max_latency_p99_ms: 100               # guardrails: per-row prediction latency, fairness gap (relative RMSE spread)
  max_fairness_gap: 0.5"""
    return """gate:                                # a new model becomes champion only if it passes all of these
  metric: roc_auc                       # roc_auc | f1 | neg_log_loss | neg_brier
  min_improvement: 0.002                # a challenger must beat the champion by more than this
  floor: 0.6                            # the first model must reach this ...
  baseline_margin: 0.05                 # ... and beat a prior-only baseline by this much
  max_latency_p99_ms: 100               # guardrails: per-row prediction latency, calibration error, fairness gap
  max_calibration_error: 0.1
  max_fairness_gap: 0.15"""


def _performance_text(s: Starter) -> str:
    # The live floor starts at the gate's floor: a model the gate accepts must not breach its SLO on day one
    # (the config's default, 0.7, can sit above a first model's own holdout metric and retrain it every day).
    metric, floor, choices = ("r2", 0.1, "r2 | neg_rmse | neg_mae") if s.task == "regression" else (
        "roc_auc", 0.6, "roc_auc | f1 | accuracy")
    return f"""performance:                            # the live metric from late labels (`ml-platform labels FILE`)
  metric: {metric}                       # {choices}
  floor: {floor}                            # the SLO; a sustained breach starts a gated retraining. Once you know the
                                         # champion's holdout {metric} (`ml-platform status`), set it a little under that"""


def _estimator_text(s: Starter) -> str:
    if s.pipeline:
        return f"""    # Your notebook's model: a function returning a scikit-learn Pipeline (preprocessing included). Its module
    # is imported from the Python path or from this file's folder. Types outside skops's safe list (your own
    # transformers) go under training.trusted_types.
    pipeline: {s.pipeline}
    params: {{}}                       # keyword arguments passed to the function"""
    return """    # An estimator class: the platform adds imputation, scaling and one-hot encoding in front of it. Or your
    # notebook's own model: `pipeline: your_module:build_pipeline` (a function returning a Pipeline) instead.
    class: sklearn.ensemble.HistGradientBoosting""" + ("Regressor" if s.task == "regression" else "Classifier") + """
    # early_stopping: 10% of the training rows decide when to stop adding trees. scikit-learn turns it on by itself
    # above 10,000 rows only; below, 200 trees overfit a small file (on 1,600 loans: holdout AUC 0.61 and
    # calibration error 0.14 without it, 0.65 and 0.04 with it).
    params: {max_iter: 200, learning_rate: 0.1, early_stopping: true}"""


def model_location_file(config_path: Path) -> Path | None:
    """The code location `init` wrote beside a config (`<folder>/definitions.py`, pinning that config), if any."""
    location = Path(config_path).with_name("definitions.py")
    if location.is_file() and _pinning(Path(config_path).name) in location.read_text():
        return location
    return None


def _pinning(config_name: str) -> str:
    return f'defs = model_definitions(Path(__file__).with_name("{config_name}"))'


def _location_text(s: Starter, config_path: Path) -> str:
    return f'''"""Dagster code location of the {s.name} model (written by `ml-platform init`): workspace.yaml lists this
file, so `make ui` shows the model's assets under {s.name}/, with its own jobs, sensors and schedule."""

from pathlib import Path

from ml_platform.definitions import model_definitions

{_pinning(config_path.name)}
'''


def _sources_text(s: Starter) -> str:
    columns = "\n".join(f"          - name: {_yaml_key(g.name)}" for g in s.columns)
    return f"""# Written by `ml-platform init`. The platform's validation stage appends every batch that passes the
# data contract to raw.{s.name}_batches; in Dagster this source is the model's validated_batches asset.
version: 2

sources:
  - name: raw
    schema: raw
    tables:
      - name: {s.name}_batches
        columns:
{columns}
          - name: _snapshot_hash
          - name: _batch_id
          - name: _ingested_at
"""


def _sql_name(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


def _feature_sql(s: Starter) -> str:
    casts = ",\n".join(f"    cast({_sql_name(g.name)} as {SQL_TYPES[g.type]}) as {_sql_name(g.name)}" for g in s.columns)
    latest = ""
    if s.id_column:
        ident = _sql_name(s.id_column)
        latest = (f"\n-- A row re-sent in a later batch replaces its earlier copy.\nqualify_latest as (\n"
                  f"    select typed.*, row_number() over (partition by {ident} order by ingested_at desc, "
                  f"batch_id desc) as copy_rank\n    from typed\n),\n")
    source = "qualify_latest where copy_rank = 1" if s.id_column else "typed"
    names = ",\n".join(f"    {_sql_name(g.name)}" for g in s.columns)
    return f"""-- Written by `ml-platform init`: the feature table {s.name} trains on, one row per entity.
-- Add your notebook's feature engineering here as SQL columns (plain SQL runs on DuckDB and PostgreSQL);
-- keep snapshot_hash and batch_id: they link each row to the data snapshot it came from.
with typed as (
    select
{casts},
    cast(_snapshot_hash as varchar) as snapshot_hash,
    cast(_batch_id as varchar) as batch_id,
    cast(_ingested_at as timestamp) as ingested_at
    from {{{{ source('raw', '{s.name}_batches') }}}}
),
{latest}
final as (
    select
{names},
    snapshot_hash,
    batch_id
    from {source}
)

select * from final
"""


def _tested_column(name: str, *tests: str) -> str:
    # dbt's generic tests put the name into SQL as written: a name that needs quotes there (a space, capitals
    # that PostgreSQL would fold) says so, or the test fails with a syntax error or an unknown column.
    quote = "\n        quote: true" if _sql_name(name) != name else ""
    return f"      - name: {_yaml_key(name)}{quote}\n        data_tests:" + "".join(f"\n          - {t}" for t in tests)


def _feature_tests(s: Starter, feature_model: str) -> str:
    tests = [_tested_column(s.target, "not_null")]
    if s.id_column:
        tests.insert(0, _tested_column(s.id_column, "unique", "not_null"))
    tests.append(_tested_column("snapshot_hash", "not_null"))
    body = "\n".join(tests)
    return f"""# Written by `ml-platform init`: dbt tests on the feature table; in Dagster they are asset checks.
version: 2

models:
  - name: {feature_model}
    description: Features for {s.name}, one row per entity (written by ml-platform init; edit freely).
    columns:
{body}
"""
