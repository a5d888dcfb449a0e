"""Data drift between a reference frame (the training data) and a current frame (recent traffic).

Two parts, one answer:

- The decision. ``detect_drift`` computes Evidently 0.7's per-column drift tests itself, vectorized
  with NumPy/SciPy, on every row of both frames: the same choice of test per column as Evidently's
  ``method=None`` (``_get_default_stattest`` in evidently/legacy/calculations/stattests/registry.py),
  the same formulas (evidently/legacy/calculations/stattests/*.py), the same defaults and the same
  decision rules. A million rows take seconds instead of Evidently's minutes, and the scores equal
  Evidently's to floating-point rounding (ml_platform_tests/unit/test_drift.py holds the engine to
  Evidently run on all rows; bench/drift.py measures both).
- The report. The HTML users open is Evidently's own ``DataDriftPreset`` report, run on a seeded sample
  of at most ``report_rows`` rows per side with each column's test and threshold passed explicitly, so
  that it shows the tests the decision used.

``score_drift`` is the prediction-drift counterpart: PSI (as Evidently computes it for a numerical
column) of a model's scores on a batch against its scores on the holdout.

Evidently and SciPy are imported inside the functions that use them, so that importing this module (and
loading the Dagster definitions) stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd


class _StatTest(NamedTuple):
    default_threshold: float
    column_types: frozenset[str]  # "num", "cat": the types Evidently registers the test for
    drifted_when: str  # how the score is compared with the threshold


# Evidently 0.7's StatTest definitions, evidently/legacy/calculations/stattests/<file>: the default
# threshold, `allowed_feature_types`, and the comparison each implementation returns as its decision.
_STAT_TESTS: dict[str, _StatTest] = {
    "wasserstein": _StatTest(0.1, frozenset({"num"}), "score >= threshold"),  # wasserstein_distance_norm.py
    "jensenshannon": _StatTest(0.1, frozenset({"num", "cat"}), "score >= threshold"),  # jensenshannon.py
    "psi": _StatTest(0.1, frozenset({"num", "cat"}), "score >= threshold"),  # psi.py
    "ks": _StatTest(0.05, frozenset({"num"}), "score <= threshold"),  # ks_stattest.py
    "chisquare": _StatTest(0.05, frozenset({"cat"}), "score < threshold"),  # chisquare_stattest.py
    "z": _StatTest(0.05, frozenset({"cat"}), "score < threshold"),  # z_stattest.py
}
METHODS = ("auto", *_STAT_TESTS)
# Evidently's `n_bins=30` argument of jensenshannon/psi is unused: numbers with more distinct values than
# this in the reference are binned with NumPy's "sturges" edges, fewer are compared value by value.
_BINNED_ABOVE_VALUES = 20
_SMALL_REFERENCE_ROWS = 1000


@dataclass(frozen=True)
class DriftResult:
    """The drift verdict, per column and for the dataset, computed on every row.

    ``columns`` maps each compared column to ``{"score", "method", "threshold", "drifted"}``: the
    statistic (a p-value for ks, chisquare and z; a distance for wasserstein, jensenshannon and psi),
    the Evidently name of that test, its threshold and the decision. ``reference_rows`` and
    ``current_rows`` are the rows compared: all of them. ``report_rows`` is the most rows either side
    has in the HTML report (each side has min(its rows, report_rows)), 0 without a report; ``html`` is
    Evidently's report, or None when it was not asked for.
    """

    columns: dict[str, dict]
    drifted_share: float
    dataset_drift: bool
    share_threshold: float
    reference_rows: int
    current_rows: int
    report_rows: int
    html: str | None

    def to_json(self) -> dict:
        """Everything but the HTML report, as plain JSON types."""
        return {
            "columns": {name: dict(info) for name, info in self.columns.items()},
            "drifted_share": self.drifted_share,
            "dataset_drift": self.dataset_drift,
            "share_threshold": self.share_threshold,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "report_rows": self.report_rows,
        }


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: list[str],
    categorical: list[str],
    share_threshold: float = 0.3,
    method: str = "auto",
    threshold: float | None = None,
    per_feature: dict[str, dict] | None = None,
    report_rows: int = 20000,
    seed: int = 0,
    html: bool = True,
) -> DriftResult:
    """Compare ``columns`` of ``current`` against ``reference``, column by column, on every row.

    Column types: ``categorical`` columns and any boolean column are categorical; every other listed
    column must be numeric and is numerical.

    Each column's decision is Evidently 0.7's, computed here on all rows:

    1. Missing values and +/-inf are dropped from each side (a side left empty is an error).
    2. The test: ``per_feature[col]["method"]``, else ``method``. ``"auto"`` is Evidently's default
       choice, by the reference's row count after step 1 and the distinct values of both sides together:
       with at most 1000 reference rows, a numerical column gets ``ks`` (more than 5 distinct values),
       ``chisquare`` (3-5) or ``z`` (1-2), a categorical one ``chisquare`` (more than 2) or ``z``; with
       more, a numerical column gets ``wasserstein`` (more than 5 distinct values) or ``jensenshannon``,
       a categorical one ``jensenshannon``. An explicit test must suit the column type as Evidently
       registers it: wasserstein and ks numerical only, chisquare and z categorical only.
    3. The threshold: ``per_feature[col]["threshold"]``, else ``threshold``, else the test's default
       (wasserstein, jensenshannon, psi: 0.1; ks, chisquare, z: 0.05).
    4. The score and the decision: wasserstein = scipy's Wasserstein-1 distance / max(std of the
       reference (ddof=0), 0.001); jensenshannon = scipy's Jensen-Shannon distance (natural log) and psi
       = sum((r - c) * ln(r / c)) of the two sides' shares per bin, where the bins are the values
       themselves, or, for a numerical column with more than 20 distinct reference values, NumPy's
       "sturges" histogram edges over both sides (psi replaces empty shares by a small floor as
       Evidently does); drifted when the distance >= threshold. ks = scipy's two-sample K-S p-value,
       drifted when p <= threshold; chisquare = scipy's chi-square p-value of the current counts against
       the reference counts scaled to the current size, z = two-sided p-value of the two-proportion
       z-test, drifted when p < threshold.

    The dataset has drifted when the share of drifted columns is at least ``share_threshold``
    (Evidently's dataset drift rule).

    The report (``html=True``): Evidently's ``DataDriftPreset`` with each column's test and threshold
    from above passed explicitly. A side with more than ``report_rows`` rows is replaced, for the report
    only, by ``frame.sample(n=report_rows, random_state=seed)`` (pandas, without replacement); when both
    sides fit, the report runs on every row and its decisions are the ones returned. A numerical column
    tested with chisquare or z (auto, at most 1000 reference rows and at most 5 distinct values) is
    declared categorical to the report, because Evidently refuses those tests by name for a numerical
    column; the tests do not depend on the type.

    ``per_feature`` maps a column to ``{"method": ..., "threshold": ...}``; None (or a missing key)
    inherits the global value.

    Raises ValueError for an empty frame, a column missing from either side, a categorical column not
    in ``columns``, a non-categorical column that is not numeric, a column with no values left on a
    side, an unknown method, or a test that does not apply to the column's type.
    """
    columns, categorical = list(columns), list(categorical)
    per_feature = dict(per_feature or {})
    _validate(
        reference, current, columns, categorical, share_threshold, method, threshold, per_feature, report_rows
    )

    kinds = _column_kinds(reference, current, columns, categorical)
    numerical_columns = [c for c in columns if kinds[c] == "num"]
    categorical_columns = [c for c in columns if kinds[c] == "cat"]
    requested = {c: _requested(c, kinds[c], method, threshold, per_feature) for c in columns}

    per_column = {c: _column_drift(reference[c], current[c], c, kinds[c], *requested[c]) for c in columns}
    drifted_share = sum(info["drifted"] for info in per_column.values()) / len(columns)

    page, shown_rows = None, 0
    if html:
        ref_sample = _sample(reference, columns, report_rows, seed)
        cur_sample = _sample(current, columns, report_rows, seed)
        shown_rows = max(len(ref_sample), len(cur_sample))
        # Evidently registers chisquare and z for categorical columns only; they do not use the type.
        as_categorical = [c for c in numerical_columns if per_column[c]["method"] in ("chisquare", "z")]
        snapshot = _evidently_snapshot(
            ref_sample,
            cur_sample,
            numerical=[c for c in numerical_columns if c not in as_categorical],
            categorical=categorical_columns + as_categorical,
            columns=columns,
            share_threshold=share_threshold,
            per_column_method={c: info["method"] for c, info in per_column.items()},
            per_column_threshold={c: info["threshold"] for c, info in per_column.items()},
        )
        page = snapshot.get_html_str(as_iframe=False)

    return DriftResult(
        columns=per_column,
        drifted_share=drifted_share,
        dataset_drift=drifted_share >= share_threshold,
        share_threshold=float(share_threshold),
        reference_rows=len(reference),
        current_rows=len(current),
        report_rows=shown_rows,
        html=page,
    )


def score_drift(reference_scores, current_scores, *, psi_threshold: float = 0.2) -> dict:
    """Prediction drift: a model's scores on a batch (current) against its scores on the holdout.

    ``psi`` is computed as Evidently 0.7's psi test computes it for a numerical column: shares per bin
    of NumPy's "sturges" histogram edges over both sides when the reference has more than 20 distinct
    scores (else per distinct score), empty shares floored as Evidently does, sum((r - c) * ln(r / c)).
    ``drifted`` is psi >= ``psi_threshold``. ``wasserstein`` is the plain Wasserstein-1 distance between
    the two score distributions (in score units, not normalized), beside the two means.

    Raises ValueError for an empty side, a score that is not a finite number, or psi_threshold <= 0.
    """
    if not psi_threshold > 0:
        raise ValueError(f"psi_threshold must be above 0, got {psi_threshold}")
    sides = {}
    for side, scores in (("reference_scores", reference_scores), ("current_scores", current_scores)):
        values = np.asarray(scores, dtype=float).ravel()
        if values.size == 0:
            raise ValueError(f"{side} is empty: there is nothing to compare")
        if not np.isfinite(values).all():
            raise ValueError(
                f"{side} has {int((~np.isfinite(values)).sum())} scores that are NaN or infinite"
            )
        sides[side] = values
    numbers = _Numbers(sides["reference_scores"], sides["current_scores"])
    psi = _psi(*numbers.shares())
    return {
        "psi": psi,
        "psi_threshold": float(psi_threshold),
        "drifted": bool(psi >= psi_threshold),
        "wasserstein": numbers.wasserstein(),
        "reference_mean": float(numbers.reference.mean()),
        "current_mean": float(numbers.current.mean()),
        "reference_rows": int(numbers.reference.size),
        "current_rows": int(numbers.current.size),
    }


def evidently_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: list[str],
    categorical: list[str],
    share_threshold: float = 0.3,
    method: str = "auto",
    threshold: float | None = None,
    per_feature: dict[str, dict] | None = None,
) -> DriftResult:
    """Evidently's own DataDriftPreset verdict on every row, with no sampling: the yardstick.

    The same arguments as ``detect_drift``, handed to Evidently's own options (``method="auto"`` is
    Evidently's ``method=None``, per-feature overrides are its ``per_column_method`` and
    ``per_column_threshold``, ``threshold`` its ``threshold``) so that Evidently resolves each column's
    test and threshold itself. Slow (minutes and gigabytes at 1M rows): for the tests and bench/drift.py
    that hold ``detect_drift`` to it, not for production. ``report_rows`` is 0: it makes no HTML.
    """
    columns, categorical = list(columns), list(categorical)
    per_feature = dict(per_feature or {})
    _validate(reference, current, columns, categorical, share_threshold, method, threshold, per_feature, 1)
    kinds = _column_kinds(reference, current, columns, categorical)
    chosen = {c: (per_feature.get(c) or {}).get("method") or method for c in columns}
    # Evidently's auto is method=None, and a per-column entry cannot be None: with a column on auto, the
    # global test goes to each column that inherits it instead.
    preset_method = None if "auto" in (method, *chosen.values()) else method
    per_column_method = {
        c: m
        for c, m in chosen.items()
        if m != "auto" and ((per_feature.get(c) or {}).get("method") is not None or preset_method is None)
    }
    per_column_threshold = {
        c: rule["threshold"] for c, rule in per_feature.items() if (rule or {}).get("threshold") is not None
    }
    snapshot = _evidently_snapshot(
        reference[columns].reset_index(drop=True),
        current[columns].reset_index(drop=True),
        numerical=[c for c in columns if kinds[c] == "num"],
        categorical=[c for c in columns if kinds[c] == "cat"],
        columns=columns,
        share_threshold=share_threshold,
        method=preset_method,
        threshold=threshold,
        per_column_method=per_column_method or None,
        per_column_threshold=per_column_threshold or None,
    )
    per_column, drifted_share = _read_snapshot(snapshot.dict(), columns)
    return DriftResult(
        columns=per_column,
        drifted_share=drifted_share,
        dataset_drift=drifted_share >= share_threshold,
        share_threshold=float(share_threshold),
        reference_rows=len(reference),
        current_rows=len(current),
        report_rows=0,
        html=None,
    )


# --- the engine -----------------------------------------------------------------------------------------


def _requested(name, kind, method, threshold, per_feature) -> tuple[str, float | None]:
    rule = per_feature.get(name) or {}
    chosen = rule.get("method") or method
    chosen_threshold = rule.get("threshold") if rule.get("threshold") is not None else threshold
    if chosen != "auto" and kind not in _STAT_TESTS[chosen].column_types:
        kind_name = {"num": "numerical", "cat": "categorical"}
        fits = [m for m, t in _STAT_TESTS.items() if kind in t.column_types]
        raise ValueError(
            f"drift column {name!r} is {kind_name[kind]}, and method {chosen!r} applies to "
            f"{' and '.join(kind_name[k] for k in sorted(_STAT_TESTS[chosen].column_types))} columns only "
            f"(Evidently refuses it too): choose one of {['auto', *fits]}"
            + (" or list the column in `categorical`" if kind == "num" else "")
        )
    return chosen, chosen_threshold


def _column_drift(
    reference: pd.Series, current: pd.Series, name: str, kind: str, method: str, threshold: float | None
) -> dict:
    if kind == "num":
        data: _Numbers | _Categories = _Numbers(
            _finite(reference, name, "reference"), _finite(current, name, "current")
        )
    else:
        data = _Categories(
            _category_counts(reference, name, "reference"), _category_counts(current, name, "current")
        )

    if method == "auto":
        method = _default_method(kind, data.reference_rows, data.distinct_values())
    if threshold is None:
        threshold = _STAT_TESTS[method].default_threshold

    if method == "wasserstein":
        # Evidently: wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001), std of the Series.
        score = data.wasserstein() / max(data.reference_std(), 0.001)
    elif method == "jensenshannon":
        from scipy.spatial import distance

        score = float(distance.jensenshannon(*data.shares(), None))
    elif method == "psi":
        score = _psi(*data.shares())
    elif method == "ks":
        from scipy.stats import ks_2samp

        score = float(ks_2samp(data.reference_sorted, data.current_sorted)[1])
    elif method == "chisquare":
        from scipy.stats import chisquare

        _, ref_counts, cur_counts = data.counts()
        f_exp = ref_counts * (data.current_rows / data.reference_rows)
        with np.errstate(divide="ignore"):  # a value new in current: expected 0, statistic inf, p = 0
            score = float(chisquare(cur_counts, f_exp)[1])
    else:
        score = _z_test_p_value(*data.counts(), data.reference_rows, data.current_rows)
    return {
        "score": score,
        "method": method,
        "threshold": float(threshold),
        "drifted": _drifted(method, score, threshold),
    }


def _default_method(kind: str, reference_rows: int, distinct_values: int) -> str:
    """Evidently 0.7's ``_get_default_stattest`` (evidently/legacy/calculations/stattests/registry.py)."""
    if reference_rows <= _SMALL_REFERENCE_ROWS:
        if kind == "num" and distinct_values > 5:
            return "ks"
        return "chisquare" if distinct_values > 2 else "z"
    if kind == "num" and distinct_values > 5:
        return "wasserstein"
    return "jensenshannon"


def _drifted(method: str, score: float, threshold: float) -> bool:
    rule = _STAT_TESTS[method].drifted_when
    if rule == "score >= threshold":
        return bool(score >= threshold)
    if rule == "score <= threshold":
        return bool(score <= threshold)
    return bool(score < threshold)


class _Numbers:
    """A numerical column on both sides, cleaned, sorted once for every statistic that needs the order."""

    def __init__(self, reference: np.ndarray, current: np.ndarray):
        self.reference, self.current = reference, current
        self.reference_rows, self.current_rows = reference.size, current.size
        self.reference_sorted, self.current_sorted = np.sort(reference), np.sort(current)
        # A stable sort of the two sorted runs merges them and says which side each value came from.
        both = np.concatenate((self.reference_sorted, self.current_sorted))
        order = np.argsort(both, kind="stable")
        self.all_sorted = both[order]
        self._from_reference = order < self.reference_rows

    def distinct_values(self) -> int:
        """``pd.concat([ref, cur]).nunique()``: distinct values are where the sorted values change."""
        return 1 + int(np.count_nonzero(np.diff(self.all_sorted)))

    def reference_std(self) -> float:
        """``np.std(reference)`` of the pandas Series, as Evidently calls it (pandas' ddof=0 std)."""
        return float(np.std(pd.Series(self.reference)))

    def wasserstein(self) -> float:
        """``scipy.stats.wasserstein_distance(ref, cur)``: scipy's ``_cdf_distance(1, ...)`` on sorted values.

        scipy: deltas between the merged sorted values, each side's empirical CDF at them (searchsorted
        'right' in the side's sorted values), ``vecdot(|U - V|, deltas)``. Here the CDFs are running
        counts along the merge: they equal scipy's wherever a delta is not 0, and a 0 delta makes the
        term 0 either way, so the sum is the same.
        """
        merged = self.all_sorted.astype(float, copy=False)
        deltas = np.diff(merged)
        reference_seen = np.cumsum(self._from_reference[:-1])
        current_seen = np.arange(1, merged.size) - reference_seen
        gaps = np.abs(reference_seen / self.reference_rows - current_seen / self.current_rows)
        # scipy uses np.vecdot on NumPy 2 and sum(x * y) before it (scipy._lib._util.np_vecdot).
        if hasattr(np, "vecdot"):
            return float(np.vecdot(gaps, deltas))
        return float(np.sum(gaps * deltas))

    def counts(self) -> tuple[pd.Index, np.ndarray, np.ndarray]:
        return _align(
            pd.Series(self.reference).value_counts(sort=False),
            pd.Series(self.current).value_counts(sort=False),
        )

    def shares(self) -> tuple[np.ndarray, np.ndarray]:
        """Evidently's ``get_binned_data`` for a numerical column."""
        if 1 + np.count_nonzero(np.diff(self.reference_sorted)) > _BINNED_ABOVE_VALUES:
            # the edges depend on the min, max and size of ref + cur; the counts not on the order
            bins = np.histogram_bin_edges(self.all_sorted, bins="sturges")
            return (
                np.histogram(self.reference_sorted, bins)[0] / self.reference_rows,
                np.histogram(self.current_sorted, bins)[0] / self.current_rows,
            )
        _, ref_counts, cur_counts = self.counts()
        return ref_counts / self.reference_rows, cur_counts / self.current_rows


class _Categories:
    """A categorical column on both sides as counts per value: all its tests need."""

    def __init__(self, reference_counts: pd.Series, current_counts: pd.Series):
        self.keys, self.reference_counts, self.current_counts = _align(reference_counts, current_counts)
        self.reference_rows = int(self.reference_counts.sum())
        self.current_rows = int(self.current_counts.sum())

    def distinct_values(self) -> int:
        return len(self.keys)

    def counts(self) -> tuple[pd.Index, np.ndarray, np.ndarray]:
        return self.keys, self.reference_counts, self.current_counts

    def shares(self) -> tuple[np.ndarray, np.ndarray]:
        return self.reference_counts / self.reference_rows, self.current_counts / self.current_rows


def _finite(series: pd.Series, name: str, side: str) -> np.ndarray:
    """The values Evidently compares: missing values and +/-inf dropped (get_one_column_drift in
    evidently/legacy/calculations/data_drift.py does ``replace([-inf, inf], nan).dropna()``)."""
    values = series.to_numpy() if isinstance(series.dtype, np.dtype) else None
    if values is not None and values.dtype.kind in "iu":
        pass  # nothing to drop
    elif values is not None and values.dtype.kind == "f":
        keep = np.isfinite(values)
        values = values if keep.all() else values[keep]
    else:  # pandas' nullable and extension types: Evidently's own cleaning
        values = series.replace([-np.inf, np.inf], np.nan).dropna().to_numpy()
        if values.dtype == object:
            values = values.astype(float)
    if values.size == 0:
        raise ValueError(f"drift column {name!r} has no values in the {side} frame (all missing or infinite)")
    return values


def _category_counts(series: pd.Series, name: str, side: str) -> pd.Series:
    # Counting first and then dropping +/-inf keys is Evidently's replace(+/-inf -> NaN) + dropna, cheaper.
    counts = series.value_counts(dropna=True, sort=False)
    counts = counts[(counts > 0) & ~counts.index.isin([np.inf, -np.inf])]
    if isinstance(counts.index, pd.CategoricalIndex):
        counts.index = counts.index.astype(object)
    if counts.empty:
        raise ValueError(f"drift column {name!r} has no values in the {side} frame (all missing or infinite)")
    return counts


def _align(reference_counts: pd.Series, current_counts: pd.Series) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """Counts of both sides over the values seen on either side (0 where a side lacks one)."""
    keys = reference_counts.index.union(current_counts.index, sort=False)
    return (
        keys,
        reference_counts.reindex(keys, fill_value=0).to_numpy(np.int64),
        current_counts.reindex(keys, fill_value=0).to_numpy(np.int64),
    )


def _psi(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Evidently's psi.py, after get_binned_data's ``feel_zeroes`` floor for empty shares."""
    reference_shares, current_shares = reference_shares.astype(float), current_shares.astype(float)
    for shares in (reference_shares, current_shares):
        smallest = shares[shares != 0].min()
        np.place(shares, shares == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)
    return float(np.sum((reference_shares - current_shares) * np.log(reference_shares / current_shares)))


def _z_test_p_value(
    keys: pd.Index, ref_counts: np.ndarray, cur_counts: np.ndarray, n1: int, n2: int
) -> float:
    """Evidently's z_stattest.py: two-sided two-proportion z-test, 'not the smallest value' as the event."""
    from scipy.stats import norm

    if (
        np.count_nonzero(ref_counts) == 1
        and np.count_nonzero(cur_counts) == 1
        and np.array_equal(ref_counts > 0, cur_counts > 0)
    ):
        return 1.0  # one and the same value on both sides
    first = sorted(keys)[0]
    at_first = keys.get_loc(first)
    p1 = float(n1 - ref_counts[at_first]) / n1
    p2 = float(n2 - cur_counts[at_first]) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - norm.cdf(np.abs(z))))


# --- Evidently ------------------------------------------------------------------------------------------


def _evidently_snapshot(
    reference,
    current,
    *,
    numerical,
    categorical,
    columns,
    share_threshold,
    method=None,
    threshold=None,
    per_column_method=None,
    per_column_threshold=None,
):
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    preset = DataDriftPreset(
        columns=columns,
        drift_share=share_threshold,
        method=method,
        threshold=threshold,
        per_column_method=per_column_method,
        per_column_threshold=per_column_threshold,
    )
    # include_tests=True makes Evidently attach its per-column drift decision to each ValueDrift metric.
    return Report([preset], include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )


def _read_snapshot(result: dict, columns: list[str]) -> tuple[dict[str, dict], float]:
    """Per-column results and the drifted share from ``Snapshot.dict()``.

    Evidently 0.7's preset yields one ``DriftedColumnsCount`` metric (value ``{"count", "share"}``)
    and one ``ValueDrift`` metric per column (config ``column``/``method``/``threshold``, value the
    drift score; ``method`` is the test's display name when Evidently chose it, mapped back to its name).
    The drift decision is the status of the test bound to each ValueDrift metric (FAIL = drifted),
    linked by ``metric_config.metric_id``.
    """
    from evidently.legacy.calculations import stattests

    names = {
        test.display_name: test.name
        for test in (
            stattests.wasserstein_stat_test,
            stattests.jensenshannon_stat_test,
            stattests.psi_stat_test,
            stattests.ks_stat_test,
            stattests.chi_stat_test,
            stattests.z_stat_test,
        )
    }
    status_by_metric = {
        test["metric_config"]["metric_id"]: str(getattr(test["status"], "value", test["status"]))
        for test in result["tests"]
    }
    per_column: dict[str, dict] = {}
    drifted_share: float | None = None
    for metric in result["metrics"]:
        kind = metric.get("config", {}).get("type", "")
        if kind.endswith(":ValueDrift"):
            config = metric["config"]
            status = status_by_metric.get(metric["id"])
            if status not in ("FAIL", "SUCCESS"):
                raise RuntimeError(
                    f"Evidently gave no drift decision for column {config['column']!r} (test status {status!r})"
                )
            per_column[config["column"]] = {
                "score": float(metric["value"]),
                "method": names.get(str(config["method"]), str(config["method"])),
                "threshold": float(config["threshold"]),
                "drifted": status == "FAIL",
            }
        elif kind.endswith(":DriftedColumnsCount"):
            drifted_share = float(metric["value"]["share"])

    missing = [c for c in columns if c not in per_column]
    if missing or drifted_share is None:
        raise RuntimeError(
            f"unexpected Evidently output: no ValueDrift for {missing} or no DriftedColumnsCount "
            "(evidently>=0.7,<0.8 is required)"
        )
    return {c: per_column[c] for c in columns}, drifted_share


# --- input checks ---------------------------------------------------------------------------------------


def _validate(
    reference, current, columns, categorical, share_threshold, method, threshold, per_feature, report_rows
) -> None:
    if not columns:
        raise ValueError("no drift columns given: pass the feature columns to compare")
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise ValueError(f"drift columns listed more than once: {duplicates}")
    for side, frame in (("reference", reference), ("current", current)):
        if len(frame) == 0:
            raise ValueError(f"the {side} frame is empty (0 rows): there is nothing to compare")
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"drift columns missing from the {side} frame: {missing}")
    stray = [c for c in categorical if c not in columns]
    if stray:
        raise ValueError(f"categorical columns not among the drift columns: {stray}")
    if not 0.0 < share_threshold <= 1.0:
        raise ValueError(f"share_threshold must be in (0, 1], got {share_threshold}")
    if report_rows < 1:
        raise ValueError(f"report_rows must be at least 1, got {report_rows}")
    _check_rule("drift", method, threshold, allow_none=False)
    unknown = [c for c in per_feature if c not in columns]
    if unknown:
        raise ValueError(f"per_feature names columns that are not drift columns: {unknown}")
    for name, rule in per_feature.items():
        extra = sorted(set(rule or {}) - {"method", "threshold"})
        if extra:
            raise ValueError(f"per_feature[{name!r}] has unknown keys {extra}: only 'method' and 'threshold'")
        _check_rule(
            f"per_feature[{name!r}]",
            (rule or {}).get("method"),
            (rule or {}).get("threshold"),
            allow_none=True,
        )


def _check_rule(where: str, method, threshold, *, allow_none: bool) -> None:
    if not (method is None and allow_none) and method not in METHODS:
        raise ValueError(f"{where}: method {method!r} is not one of {list(METHODS)}")
    if threshold is not None and not threshold > 0:
        raise ValueError(f"{where}: threshold must be above 0, got {threshold}")


def _column_kinds(reference, current, columns, categorical) -> dict[str, str]:
    """ "cat" for the listed categorical columns and any boolean one, "num" for the rest, which must be numeric."""
    kinds = {}
    for name in columns:
        if name in categorical or _is_bool(reference[name]) or _is_bool(current[name]):
            kinds[name] = "cat"
            continue
        for side, frame in (("reference", reference), ("current", current)):
            if not pd.api.types.is_numeric_dtype(frame[name]):
                raise ValueError(
                    f"drift column {name!r} has dtype {frame[name].dtype} in the {side} frame, which is not "
                    "numeric: list it in `categorical` or cast it to a number"
                )
        kinds[name] = "num"
    return kinds


def _sample(frame: pd.DataFrame, columns: list[str], rows: int, seed: int) -> pd.DataFrame:
    # The rows drawn depend only on the frame's length, the seed and `rows`, not on the columns.
    if len(frame) > rows:
        frame = frame.sample(n=rows, random_state=seed)
    return frame[columns].reset_index(drop=True)


def _is_bool(series: pd.Series) -> bool:
    return pd.api.types.is_bool_dtype(series.dtype)
