"""Export scikit-learn's bundled diabetes dataset (442 patients; ships with sklearn, no download) as the CSV
the diabetes example ingests, with a patient id column, optionally one of N batches.

    python docs/examples/diabetes/export_data.py                 # every row to docs/examples/diabetes/data/diabetes.csv
    python docs/examples/diabetes/export_data.py --batch 1       # the first of 2 batches (rows in id order)
    python docs/examples/diabetes/export_data.py --batch 2 --out /tmp/diabetes.csv
    python docs/examples/diabetes/export_data.py --batch 1 --outcomes   # batch 1's late labels (data/outcomes-1.csv)

The measurements are in their original units (`scaled=False`): age in years, sex coded 1 or 2, body mass index,
mean blood pressure and six blood serum measurements (s1-s6). The target, `progression`, is a quantitative
measure of disease progression one year after baseline (25-346). With --outcomes the file holds only
`patient_id` and `progression`: the late labels of that batch's predictions, as they would arrive a year later
(`ml-platform labels FILE` queues them; the next run's `live_performance` judges the live RMSE on them).
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


def export_diabetes(path: str | Path = DEFAULT_PATH, *, batch: int | None = None, batches: int = 2,
                    outcomes: bool = False) -> Path:
    """Write the dataset (or batch `batch` of `batches` equal parts, 1-based) to `path` as CSV; returns the path.
    `outcomes`: only the id and the target, i.e. the batch's late label file."""
    frame = diabetes_frame()
    if batch is not None:
        if not 1 <= batch <= batches:
            raise ValueError(f"batch must be between 1 and {batches}, got {batch}")
        size = -(-len(frame) // batches)  # ceiling division: the last batch may be shorter
        frame = frame.iloc[(batch - 1) * size: batch * size]
    if outcomes:
        frame = frame[["patient_id", "progression"]]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help=f"CSV file to write (default: {DEFAULT_PATH}, with "
                        "--outcomes data/outcomes-<batch>.csv beside it)")
    parser.add_argument("--batch", type=int, default=None, help="write only this batch (1-based)")
    parser.add_argument("--batches", type=int, default=2, help="how many batches the rows are split into")
    parser.add_argument("--outcomes", action="store_true", help="write the late labels (patient_id, progression)")
    args = parser.parse_args()
    out = args.out or (DEFAULT_PATH.with_name(f"outcomes-{args.batch or 'all'}.csv") if args.outcomes else DEFAULT_PATH)
    path = export_diabetes(out, batch=args.batch, batches=args.batches, outcomes=args.outcomes)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
