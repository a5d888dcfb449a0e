"""How a team's CSV file is written: its separator, decimal mark, encoding, thousands separator, the values that
mean "no value" in it, and how it writes dates.

`ml-platform init` finds them once and writes them as `data.source.csv`; every run then reads the file with
them (lib/sources.py). Without this, a spreadsheet saved in Europe reads as one column, a file saved by Excel on
Windows does not decode, and a number column with a few `?` in it reads as text, so that the model loses the
column without a word.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from ml_platform.config import CsvFormat

SAMPLE_BYTES = 1 << 20  # enough lines to judge by, however large the file
SEPARATORS = (",", ";", "\t", "|")  # in order of preference when several split every line alike
FALLBACK_ENCODINGS = ("cp1252", "latin-1")  # Excel on Windows; latin-1 decodes any byte
MOSTLY = 0.9  # a text column whose values are numbers this often is a number column with a few odd values
QUICK_LOOK = 10_000  # a text column's first values, enough to see that it is no number column at all
MAX_MARKERS = 3  # at most this many distinct odd values are taken for "missing" markers ('?', '-', 'unknown')


def sniff_file(path: Path) -> CsvFormat:
    """`sniff` on the file's first SAMPLE_BYTES."""
    with path.open("rb") as handle:
        sample = handle.read(SAMPLE_BYTES + 1)
    return sniff(sample[:SAMPLE_BYTES], complete=len(sample) <= SAMPLE_BYTES)


def sniff(sample: bytes, *, complete: bool) -> CsvFormat:
    """The separator, decimal mark and encoding of a CSV file from its first bytes (`complete`: the whole file)."""
    from ml_platform.config import CsvFormat

    encoding, text = _decode(sample, complete=complete)
    lines = text.splitlines()
    if not complete and len(lines) > 1:
        lines = lines[:-1]  # the sample may end inside a line
    head = "\n".join(lines[:200])
    separator = _separator(head)
    decimal = "," if separator != "," and _decimal_commas(head, separator) else "."
    return CsvFormat(separator=separator, decimal=decimal, encoding=encoding)


def with_numbers_read(frame: pd.DataFrame, found: CsvFormat) -> CsvFormat:
    """`found`, plus what makes text columns that are numbers read as numbers: the odd values that mark a missing
    value (`?`, `-`, `unknown`) and a thousands separator (1,234.5)."""
    markers = list(found.missing_values)
    thousands = found.thousands
    group_mark = "," if found.decimal == "." else "."
    for column in _text_columns(frame):
        if (read := _as_numbers_if_mostly(frame[column], found.decimal)) is not None:
            present, numbers = read
            odd = present[numbers.isna()].unique()
            if numbers.notna().mean() >= MOSTLY and len(odd) <= MAX_MARKERS and not any(
                    ch.isdigit() for value in odd for ch in value):
                markers += [value for value in odd if value not in markers]
                continue
        if thousands is None and _grouped(frame[column], group_mark, found.decimal):  # in a comma file, quoted
            thousands = group_mark
    return found.model_copy(update={"missing_values": markers, "thousands": thousands})


def notes(frame: pd.DataFrame, raw: pd.DataFrame, found: CsvFormat) -> list[str]:
    """What a person should know about how the file was read: each non-default setting, each column whose odd
    values now count as missing (`raw`: the file read before), and each column still text although it is
    mostly numbers."""
    from ml_platform.config import CsvFormat

    default = CsvFormat()
    lines = []
    settings = [f"{name} {getattr(found, name)!r}" for name in ("separator", "decimal", "thousands", "encoding")
                if getattr(found, name) != getattr(default, name)]
    if settings:
        lines.append("read as CSV with " + ", ".join(settings) + " (data.source.csv)")
    for column in frame.columns:
        was_text = column in raw.columns and raw[column].dtype == object
        if was_text and column not in _text_columns(frame) and found.missing_values:
            markers = raw[column].isin(found.missing_values)
            if markers.any():
                shown = ", ".join(repr(v) for v in sorted(raw[column][markers].unique()))
                lines.append(f"{column}: {int(markers.sum())} values {shown} read as missing, the rest are numbers "
                             "(data.source.csv.missing_values)")
    for column in _text_columns(frame):
        if (read := _as_numbers_if_mostly(frame[column], found.decimal)) is None:
            continue
        present, numbers = read
        share = float(numbers.notna().mean())
        if share >= MOSTLY:
            odd = present[numbers.isna()].value_counts().index[:3]
            lines.append(f"{column}: read as text although {share:.0%} of its values are numbers (others: "
                         + ", ".join(repr(v) for v in odd) + "); if it is a number column, fix those values in the "
                         "file, or list the ones that mean 'no value' under data.source.csv.missing_values")
    return lines


# Dates as spreadsheets write them, besides ISO (which pandas reads by itself); each also with a time of day.
DATE_FORMATS = ("%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y", "%d-%m-%Y", "%Y/%m/%d", "%d.%m.%y")


def date_formats(present: pd.Series) -> list[str]:
    """The formats of DATE_FORMATS that read every value of a text column as a date (none, one, or several when
    the file cannot tell day from month)."""
    import pandas as pd

    if present.empty or present.dtype != object:
        return []
    text = present.astype(str).str.strip()
    if not text.head(200).str.fullmatch(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}( \d{1,2}:\d{2}(:\d{2})?)?").all():
        return []
    found = []
    for day in DATE_FORMATS:
        for fmt in (day, f"{day} %H:%M", f"{day} %H:%M:%S"):
            if pd.to_datetime(text, format=fmt, errors="coerce").notna().all():
                found.append(fmt)
                break
    return found


def _decode(sample: bytes, *, complete: bool) -> tuple[str, str]:
    try:
        # Incremental: a sample that stops inside a character is not an encoding error.
        return "utf-8", codecs.getincrementaldecoder("utf-8")().decode(sample, final=complete)
    except UnicodeDecodeError:
        pass
    for encoding in FALLBACK_ENCODINGS:
        try:
            return encoding, sample.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")


def _separator(head: str) -> str:
    """The separator that splits every line into the same number (more than one) of fields: the most fields wins."""
    best, best_width = ",", 1
    for separator in SEPARATORS:
        rows = [row for row in csv.reader(io.StringIO(head), delimiter=separator) if row]
        # Not the last row: the 200 lines may end inside a quoted field that spans lines.
        widths = {len(row) for row in (rows[:-1] if len(rows) > 2 else rows)}
        if len(widths) == 1 and (width := widths.pop()) > best_width:
            best, best_width = separator, width
    return best


def _decimal_commas(head: str, separator: str) -> bool:
    cells = [cell.strip() for row in csv.reader(io.StringIO(head), delimiter=separator) for cell in row]
    commas = sum(bool(re.fullmatch(r"-?\d{1,3}(\.\d{3})*,\d+|-?\d+,\d+", cell)) for cell in cells)
    points = sum(bool(re.fullmatch(r"-?\d+\.\d+", cell)) for cell in cells)
    return commas > 0 and points == 0


def _text_columns(frame: pd.DataFrame) -> list:
    return [column for column in frame.columns if frame[column].dtype == object]


def _as_numbers_if_mostly(column: pd.Series, decimal: str) -> tuple[pd.Series, pd.Series] | None:
    """A text column's values and those values as numbers (NaN where one is not), or None when its first rows
    show it is no number column: on a million rows, converting every text column would take seconds."""
    present = column.dropna()
    if present.empty or _as_numbers(present.head(QUICK_LOOK).astype(str), decimal).notna().mean() < MOSTLY / 2:
        return None
    present = present.astype(str)
    return present, _as_numbers(present, decimal)


def _as_numbers(values: pd.Series, decimal: str) -> pd.Series:
    import pandas as pd

    return pd.to_numeric(values.str.strip().str.replace(decimal, ".", regex=False) if decimal != "." else values,
                         errors="coerce")


def _grouped(column: pd.Series, group_mark: str, decimal: str) -> bool:
    """Most values are numbers written with `group_mark` between groups of three digits (1,234,567.8), some are."""
    g, d = re.escape(group_mark), re.escape(decimal)

    def written(values: pd.Series) -> pd.Series:
        return values.astype(str).str.strip().str.fullmatch(rf"-?\d{{1,3}}({g}\d{{3}})*({d}\d+)?")

    present = column.dropna()
    if present.empty or written(present.head(QUICK_LOOK)).mean() < MOSTLY / 2:  # plainly not: no full pass
        return False
    return bool(written(present).mean() >= MOSTLY and present.astype(str).str.contains(group_mark, regex=False).any())
