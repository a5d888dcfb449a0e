"""Reading one batch from the configured data source (demo generator, CSV/Parquet file, warehouse table)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from ml_platform.config import CsvFormat, ProjectConfig


class SourceError(ValueError):
    """The source batch cannot be read: missing, unreadable, empty, or of an unknown format."""


@dataclass(frozen=True)
class SourceBatch:
    frame: pd.DataFrame
    batch_id: str
    location: str  # where it came from, for the record


def demo_batch_id(number: int) -> str:
    return f"demo-{number:04d}"


def next_demo_batch(ingested: list[str]) -> int:
    numbers = [int(b.removeprefix("demo-")) for b in ingested if b.startswith("demo-")]
    return max(numbers, default=0) + 1


def load_batch(
    config: ProjectConfig,
    *,
    batch: str | None,
    ingested: list[str],
    read_table: Callable[[str], pd.DataFrame],
) -> SourceBatch:
    """The batch to ingest now. Demo: batch number `batch`, or the one after the last ingested.
    File: the configured file. Table: the configured warehouse table (via `read_table`)."""
    source = config.data.source
    if source.kind == "demo":
        from ml_platform.lib.demo_data import generate_batch

        try:
            number = int(batch) if batch else next_demo_batch(ingested)
        except ValueError:
            raise SourceError(f"demo batch must be a number, got {batch!r}") from None
        if number < 1:
            raise SourceError(f"demo batch numbers start at 1, got {number}")
        demo = source.demo
        frame = generate_batch(
            number, rows=demo.rows_per_batch, seed=demo.seed,
            data_drift_from_batch=demo.data_drift_from_batch,
            concept_drift_from_batch=demo.concept_drift_from_batch,
        )
        return SourceBatch(frame, demo_batch_id(number), f"demo generator (seed {demo.seed}, batch {number})")
    if source.kind == "file":
        path = config.source_path()
        return SourceBatch(_read_file(path, config), batch or path.name, str(path))
    frame = read_table(source.table or "")
    if frame.empty:
        raise SourceError(f"source table {source.table} has no rows")
    return SourceBatch(frame, batch or source.table or "", f"warehouse table {source.table}")


TABULAR_SUFFIXES = (".parquet", ".pq", ".csv", ".txt")


def read_tabular(path: Path, csv: CsvFormat | None = None) -> pd.DataFrame:
    """A CSV or Parquet file, by its suffix (one of TABULAR_SUFFIXES); a CSV as `csv` says it is written (default:
    pandas' defaults). The reader's own errors pass through."""
    if path.suffix.lower() in {".parquet", ".pq"}:
        return pd.read_parquet(path)
    from ml_platform.config import CsvFormat

    frame = pd.read_csv(path, low_memory=False, **(csv or CsvFormat()).read_options())
    # A separator at the end of every line (spreadsheet exports) makes a column with neither a name nor a value.
    unnamed = [c for c in frame.columns if re.fullmatch(r"Unnamed: \d+", str(c)) and frame[c].isna().all()]
    return frame.drop(columns=unnamed) if unnamed else frame


def _read_file(path, config: ProjectConfig) -> pd.DataFrame:
    if not path.exists():
        raise SourceError(f"source file {path} does not exist (data.source.path in {config.source_file.name})")
    if path.is_dir():
        raise SourceError(f"source path {path} is a directory, expected a CSV or Parquet file")
    if path.stat().st_size == 0:
        raise SourceError(f"source file {path} is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix not in TABULAR_SUFFIXES:
        raise SourceError(f"source file {path}: unsupported file type '{suffix}' (use .csv or .parquet)")
    csv = config.data.source.csv
    try:
        frame = read_tabular(path, csv)
    except pd.errors.EmptyDataError:
        raise SourceError(f"source file {path} has no columns (is it empty?)") from None
    except PermissionError:
        raise SourceError(f"source file {path} is not readable (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise SourceError(f"source file {path} is not {csv.encoding} text ({exc.reason}, byte "
                          f"{exc.object[exc.start]:#04x}): set data.source.csv.encoding, e.g. cp1252 for a file saved "
                          "by Excel on Windows") from None
    except Exception as exc:  # pyarrow / parser errors come in many types; name the file and the cause
        raise SourceError(f"source file {path} could not be read as {suffix[1:]}: {exc}") from None
    if frame.empty:
        raise SourceError(f"source file {path} has a header but no rows")
    if len(frame.columns) == 1 and len(config.data.columns) > 1 and suffix not in {".parquet", ".pq"}:
        _refuse_another_separator(path, csv, str(frame.columns[0]))
    return _parse_dates(frame, config)


def _refuse_another_separator(path: Path, csv: CsvFormat, header: str) -> None:
    """A file re-saved with another separator reads as one column: say so, rather than 'every column missing'."""
    from ml_platform.lib.csv_format import sniff_file

    written = sniff_file(path)
    if written.separator != csv.separator:
        raise SourceError(f"source file {path} reads as one column ({header[:60]!r}) with separator "
                          f"{csv.separator!r}, but its fields are separated by {written.separator!r}: set "
                          f"data.source.csv.separator to {written.separator!r} (and decimal to {written.decimal!r}), "
                          "or save the file as before")


def _parse_dates(frame: pd.DataFrame, config: ProjectConfig) -> pd.DataFrame:
    """CSV has no date type: parse contract date columns (as their `format` says, else ISO); unparseable ones stay as
    text for validation to reject."""
    for name, column in config.data.columns.items():
        if column.type in {"date", "datetime"} and name in frame.columns and frame[name].dtype == object:
            try:
                frame[name] = pd.to_datetime(frame[name], format=column.format, errors="raise")
            except (ValueError, TypeError):
                pass
    return frame
