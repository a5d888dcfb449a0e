"""Live performance from late labels, and the SLO rule: a sustained breach, not one noisy day.

Input: one row per labelled prediction (`day`, `score`, `actual`): `actual` is 1 or 0 (the label is the
positive one or not) for a classification, whose score is a probability, and the true value for a
regression, whose score is the predicted value. For every calendar day from the first labelled day to the last:
- the daily metric, on that day's own labelled predictions (informational);
- the rolling metric, on the labelled predictions of the last `window_days` days pooled (the rows, not
  an average of daily metrics: a thin day weighs what its rows weigh);
- `below_floor`: the rolling metric is under `floor`, or None when the window is **not judged**: it has
  fewer than `min_labels` labelled predictions, or the metric is undefined on it (ROC AUC of one class,
  R² of a constant target).

The streak is the run of judged days below the floor up to the latest judged day. A not-judged day
neither extends nor breaks it: labels arrive in uneven batches, and a thin day in the middle of a decay
is missing evidence, not a recovery. Only a judged day at or above the floor ends a streak. So
`consecutive_days` counts judged days: the breach is sustained when that many judged days in a row, with
no judged good day between them, are below the floor. Its start day (the first day of the streak) names
the breach episode: the performance sensor starts one retraining per episode.

F1 and accuracy threshold the score at 0.5, as the evaluation does (`lib/evaluation.py`). Lower-is-better
regression metrics are negated (neg_rmse, neg_mae), as in the gate: a floor is always a lower bound.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_platform.config import PerformanceSection

THRESHOLD = 0.5


@dataclass(frozen=True)
class DayPerformance:
    day: datetime.date
    labelled_rows: int  # the day's own labelled predictions
    daily_metric: float | None
    window_rows: int  # labelled predictions in the rolling window ending this day
    rolling_metric: float | None
    below_floor: bool | None  # None: not judged

    @property
    def judged(self) -> bool:
        return self.below_floor is not None


@dataclass(frozen=True)
class LivePerformance:
    metric: str
    floor: float
    window_days: int
    consecutive_days: int
    min_labels: int
    days: list[DayPerformance]
    streak_days: list[DayPerformance]  # the current streak: judged days below the floor, oldest first

    @property
    def streak(self) -> int:
        return len(self.streak_days)

    @property
    def sustained_breach(self) -> bool:
        return self.streak >= self.consecutive_days

    @property
    def breach_started(self) -> datetime.date | None:
        """The first day of a sustained breach (None without one): the breach episode's name."""
        return self.streak_days[0].day if self.sustained_breach else None

    @property
    def latest_judged(self) -> DayPerformance | None:
        return next((d for d in reversed(self.days) if d.judged), None)

    def to_frame(self) -> pd.DataFrame:
        columns = ["day", "labelled_rows", "daily_metric", "window_rows", "rolling_metric", "below_floor"]
        return pd.DataFrame([{c: getattr(d, c) for c in columns} for d in self.days], columns=columns)


def live_metric(metric: str, actual: np.ndarray, scores: np.ndarray) -> float | None:
    """The live metric of scores against what happened; None when undefined (no rows; ROC AUC of one class; R² of
    fewer than two rows or a constant target). Classification (roc_auc, f1, accuracy): `actual` is 1 for the
    positive label, else 0. Regression (r2, neg_rmse, neg_mae): `actual` is the true value."""
    from sklearn.metrics import accuracy_score, f1_score, r2_score, roc_auc_score

    p = np.asarray(scores, dtype=float)
    if len(p) == 0:
        return None
    if metric in ("r2", "neg_rmse", "neg_mae"):
        truth = np.asarray(actual, dtype=float)
        if metric == "neg_rmse":
            return -float(np.sqrt(np.mean((truth - p) ** 2)))
        if metric == "neg_mae":
            return -float(np.mean(np.abs(truth - p)))
        return float(r2_score(truth, p)) if len(truth) > 1 and truth.min() != truth.max() else None
    y = np.asarray(actual, dtype=int)
    if metric == "roc_auc":
        return float(roc_auc_score(y, p)) if y.min() != y.max() else None
    predicted = (p >= THRESHOLD).astype(int)
    if metric == "f1":
        return float(f1_score(y, predicted, zero_division=0))
    if metric == "accuracy":
        return float(accuracy_score(y, predicted))
    raise ValueError(f"unknown live metric {metric!r}: expected roc_auc, f1, accuracy, r2, neg_rmse or neg_mae")


def assess_live_performance(labelled: pd.DataFrame, slo: PerformanceSection) -> LivePerformance:
    """Per-day and rolling metrics, which days are below the floor, and the current streak (module docstring)."""
    missing = {"day", "score", "actual"} - set(labelled.columns)
    if missing:
        raise ValueError(f"labelled predictions lack the columns {sorted(missing)}")
    days: list[DayPerformance] = []
    if len(labelled):
        labelled = labelled.reset_index(drop=True)  # the groups below select rows by index label: make them unique
        day = pd.to_datetime(labelled["day"]).dt.date
        by_day = {d: (labelled.loc[rows, "actual"].to_numpy(dtype=float), labelled.loc[rows, "score"].to_numpy())
                  for d, rows in labelled.groupby(day).groups.items()}
        first, last = min(by_day), max(by_day)
        empty = (np.array([], dtype=float), np.array([], dtype=float))
        for offset in range((last - first).days + 1):
            today = first + datetime.timedelta(days=offset)
            window = [by_day.get(today - datetime.timedelta(days=back), empty) for back in range(slo.window_days)]
            y = np.concatenate([w[0] for w in window])
            p = np.concatenate([w[1] for w in window]).astype(float)
            own_y, own_p = by_day.get(today, empty)
            rolling = live_metric(slo.metric, y, p)
            judged = len(y) >= slo.min_labels and rolling is not None
            days.append(DayPerformance(
                day=today, labelled_rows=len(own_y), daily_metric=live_metric(slo.metric, own_y, own_p),
                window_rows=len(y), rolling_metric=rolling,
                below_floor=(rolling < slo.floor) if judged else None))
    streak: list[DayPerformance] = []
    for d in days:
        if d.below_floor is True:
            streak.append(d)
        elif d.below_floor is False:
            streak = []
    return LivePerformance(metric=slo.metric, floor=slo.floor, window_days=slo.window_days,
                           consecutive_days=slo.consecutive_days, min_labels=slo.min_labels, days=days,
                           streak_days=streak)
