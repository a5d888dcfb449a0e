"""Export scikit-learn's bundled diabetes dataset (442 patients; ships with sklearn, no download) as the CSV
the diabetes example ingests, with a patient id column, optionally one of N batches.

    python docs/examples/diabetes/export_data.py                 # every row to docs/examples/diabetes/data/diabetes.csv
    python docs/examples/diabetes/export_data.py --batch 1       # the first of 2 batches (rows in id order)
    python docs/examples/diabetes/export_data.py --batch 2 --out /tmp/diabetes.csv

The measurements are in their original units (`scaled=False`): age in years, sex coded 1 or 2, body mass index,
mean blood pressure and six blood serum measurements (s1-s6). The target, `progression`, is a quantitative
measure of disease progression one year after baseline (25-346).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "diabetes.csv"
COLUMNS = ["patient_id", "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", "progression"]


def diabetes_frame() -> pd.DataFrame:
    """The whole dataset with a stable `patient_id` (P0000-P0441, in the dataset's row order)."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    frame.insert(0, "patient_id", [f"P{i:04d}" for i in range(len(frame))])
    frame["age"] = frame["age"].astype("int64")
    frame["sex"] = frame["sex"].astype("int64")
    return frame[COLUMNS]


def export_diabetes(path: str | Path = DEFAULT_PATH, *, batch: int | None = None, batches: int = 2) -> Path:
    """Write the dataset (or batch `batch` of `batches` equal parts, 1-based) to `path` as CSV; returns the path."""
    frame = diabetes_frame()
    if batch is not None:
        if not 1 <= batch <= batches:
            raise ValueError(f"batch must be between 1 and {batches}, got {batch}")
        size = -(-len(frame) // batches)  # ceiling division: the last batch may be shorter
        frame = frame.iloc[(batch - 1) * size: batch * size]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_PATH), help=f"CSV file to write (default: {DEFAULT_PATH})")
    parser.add_argument("--batch", type=int, default=None, help="write only this batch (1-based)")
    parser.add_argument("--batches", type=int, default=2, help="how many batches the rows are split into")
    args = parser.parse_args()
    path = export_diabetes(args.out, batch=args.batch, batches=args.batches)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
