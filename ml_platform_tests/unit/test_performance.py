"""The live-performance SLO rule: per-day and pooled rolling metrics, not-judged windows, and a breach only
when the rolling metric stays below the floor for performance.consecutive_days judged days."""

import datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ml_platform.config import PerformanceSection
from ml_platform.lib.performance import assess_live_performance, live_metric

DAY1 = datetime.date(2026, 1, 1)


def day(n: int) -> datetime.date:
    return DAY1 + datetime.timedelta(days=n - 1)


def labelled(n: int, rows: int, good: bool, seed: int = 0) -> pd.DataFrame:
    """One day's labelled predictions: a good day ranks every positive above every negative (AUC 1), a bad
    day the other way round (AUC 0)."""
    rng = np.random.default_rng([seed, n])
    positive = np.arange(rows) % 2 == 0
    high, low = rng.uniform(0.6, 1.0, rows), rng.uniform(0.0, 0.4, rows)
    score = np.where(positive == good, high, low)
    return pd.DataFrame({"day": day(n), "score": score, "actual": positive})


def days(*spec: tuple[int, int, bool]) -> pd.DataFrame:
    return pd.concat([labelled(n, rows, good) for n, rows, good in spec], ignore_index=True)


SLO = PerformanceSection(metric="roc_auc", floor=0.7, window_days=1, consecutive_days=2, min_labels=50)


def test_daily_metric_and_a_rolling_metric_pooled_over_rows_not_averaged():
    frame = days((1, 300, True), (2, 60, False))
    perf = assess_live_performance(frame, SLO.model_copy(update={"window_days": 2}))
    first, second = perf.days
    assert (first.day, first.labelled_rows, first.daily_metric) == (day(1), 300, 1.0)
    assert (second.day, second.labelled_rows, second.daily_metric) == (day(2), 60, 0.0)
    assert second.window_rows == 360
    pooled = roc_auc_score(frame["actual"], frame["score"])
    assert second.rolling_metric == pytest.approx(pooled)
    # Pooled, the thin bad day weighs its 60 rows: well above the 0.5 an average of daily metrics gives.
    assert second.rolling_metric > 0.7
    assert second.below_floor is False


def test_one_bad_day_is_no_breach():
    perf = assess_live_performance(days((1, 100, True), (2, 100, False), (3, 100, True)), SLO)
    assert [d.below_floor for d in perf.days] == [False, True, False]
    assert (perf.streak, perf.sustained_breach, perf.breach_started) == (0, False, None)

    latest_bad = assess_live_performance(days((1, 100, True), (2, 100, True), (3, 100, False)), SLO)
    assert latest_bad.streak == 1
    assert not latest_bad.sustained_breach and latest_bad.breach_started is None


def test_a_breach_is_sustained_after_n_consecutive_days_and_keeps_its_start_day():
    perf = assess_live_performance(days((1, 100, True), (2, 100, False), (3, 100, False)), SLO)
    assert (perf.streak, perf.sustained_breach, perf.breach_started) == (2, True, day(2))
    assert [d.day for d in perf.streak_days] == [day(2), day(3)]

    longer = assess_live_performance(days((1, 100, True), (2, 100, False), (3, 100, False), (4, 100, False)), SLO)
    assert (longer.streak, longer.breach_started) == (3, day(2))  # the same episode: the same start day


def test_a_judged_good_day_ends_the_episode_and_the_next_breach_has_a_new_start_day():
    perf = assess_live_performance(days((1, 100, False), (2, 100, False), (3, 100, True), (4, 100, False),
                                        (5, 100, False)), SLO)
    assert perf.sustained_breach and perf.breach_started == day(4)


def test_not_judged_windows_neither_extend_nor_break_a_streak():
    thin_good_day = (3, 10, True)  # fewer than min_labels labelled predictions: not judged
    perf = assess_live_performance(days((1, 100, True), (2, 100, False), thin_good_day, (4, 100, False)), SLO)
    assert [d.below_floor for d in perf.days] == [False, True, None, True]
    assert perf.days[2].daily_metric == 1.0  # the day's metric is still shown
    assert (perf.streak, perf.sustained_breach, perf.breach_started) == (2, True, day(2))

    # A day with no labels at all is listed (the days are calendar days) and not judged either.
    gap = assess_live_performance(days((1, 100, False), (3, 100, False)), SLO)
    assert [(d.day, d.labelled_rows, d.below_floor) for d in gap.days] == [
        (day(1), 100, True), (day(2), 0, None), (day(3), 100, True)]
    assert gap.sustained_breach and gap.breach_started == day(1)

    # ROC AUC of a single class is undefined: not judged, however many rows.
    one_class = pd.DataFrame({"day": day(1), "score": np.linspace(0, 1, 100), "actual": True})
    [only] = assess_live_performance(one_class, SLO).days
    assert (only.rolling_metric, only.below_floor) == (None, None)


def test_a_window_reaching_min_labels_only_when_pooled_is_judged():
    # 30 labels a day: no single day reaches min_labels 50, a 2-day window does.
    perf = assess_live_performance(days((1, 30, False), (2, 30, False), (3, 30, False)),
                                   SLO.model_copy(update={"window_days": 2}))
    assert [d.window_rows for d in perf.days] == [30, 60, 60]
    assert [d.below_floor for d in perf.days] == [None, True, True]
    assert perf.breach_started == day(2)


def test_f1_and_accuracy_threshold_the_score_at_one_half():
    y = np.array([1, 1, 0, 0])
    scores = np.array([0.9, 0.4, 0.6, 0.1])  # one true positive, one false negative, one false positive
    assert live_metric("accuracy", y, scores) == 0.5
    assert live_metric("f1", y, scores) == 0.5
    assert live_metric("roc_auc", y, scores) == 0.75
    assert live_metric("roc_auc", np.array([], dtype=int), np.array([])) is None


def test_no_labels_no_days_no_breach():
    perf = assess_live_performance(pd.DataFrame({"day": [], "score": [], "actual": []}), SLO)
    assert perf.days == [] and perf.streak == 0 and not perf.sustained_breach and perf.latest_judged is None


def test_regression_live_metrics_compare_the_predicted_with_the_true_value():
    truth = np.array([100.0, 150.0, 200.0, 250.0])
    predicted = np.array([110.0, 140.0, 230.0, 250.0])  # errors 10, -10, 30, 0
    assert live_metric("neg_mae", truth, predicted) == -12.5
    assert live_metric("neg_rmse", truth, predicted) == pytest.approx(-np.sqrt(275.0))
    assert live_metric("r2", truth, predicted) == pytest.approx(1 - 1100.0 / 12500.0)
    # R² of a constant target (or of one row) is undefined: not judged.
    assert live_metric("r2", np.array([5.0, 5.0]), np.array([4.0, 6.0])) is None
    assert live_metric("neg_rmse", np.array([]), np.array([])) is None


def test_a_regression_breach_is_a_rolling_rmse_above_its_bound_for_n_days():
    rng = np.random.default_rng(3)

    def outcomes(n: int, error: float) -> pd.DataFrame:
        truth = rng.uniform(50, 300, 100)
        return pd.DataFrame({"day": day(n), "score": truth + rng.choice([-error, error], 100), "actual": truth})

    slo = PerformanceSection(metric="neg_rmse", floor=-70, window_days=1, consecutive_days=2, min_labels=50)
    perf = assess_live_performance(pd.concat([outcomes(1, 40), outcomes(2, 90), outcomes(3, 95)]), slo)
    assert [round(d.rolling_metric) for d in perf.days] == [-40, -90, -95]
    assert [d.below_floor for d in perf.days] == [False, True, True]
    assert perf.sustained_breach and perf.breach_started == day(2)
