"""The tutorial's data: scikit-learn's breast cancer dataset (it ships inside scikit-learn, no download) as
the CSV files a team would export from its own system, one per day of new patients.

    python docs/tutorial/make_data.py DAY OUT.csv      # DAY 1, 2 or 3

Day 1 holds 100 patients, day 2 the next 350, day 3 the last 119 (in a fixed shuffled order), measured by a recalibrated
instrument (every size measurement reads 30% high): data drift the platform should notice.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

DAYS = {1: (0, 100), 2: (100, 450), 3: (450, 569)}
RECALIBRATED = ("radius", "perimeter", "area")  # day 3's instrument reads these 30% high


def patients(day: int):
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: re.sub(r"\W+", "_", c.strip()))
    frame["diagnosis"] = frame.pop("target").map(dict(enumerate(data.target_names)))  # malignant / benign
    frame = frame.sample(frac=1.0, random_state=7).reset_index(drop=True)  # the days are alike, until day 3
    frame.insert(0, "patient_id", [f"p-{i:04d}" for i in range(len(frame))])
    start, end = DAYS[day]
    day_frame = frame.iloc[start:end].copy()
    if day == 3:
        for column in [c for c in day_frame.columns if any(part in c for part in RECALIBRATED)]:
            day_frame[column] = day_frame[column] * 1.3
    return day_frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("day", type=int, choices=sorted(DAYS))
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    patients(args.day).to_csv(args.out, index=False)
    print(f"wrote {args.out}: day {args.day}, patients {DAYS[args.day][0]} to {DAYS[args.day][1] - 1}")


if __name__ == "__main__":
    main()
