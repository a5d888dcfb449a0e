"""Data drift between a reference frame (the training data) and a current frame (recent traffic).

A thin, typed wrapper around Evidently 0.7's ``DataDriftPreset``: Evidently picks the statistical test
per column and decides whether each column drifted; this module only prepares the data, runs the
report and reads Evidently's results back into plain Python. Evidently is imported inside
``detect_drift`` so that importing this module (and loading the Dagster definitions) stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class DriftResult:
    """Evidently's drift verdict, per column and for the dataset.

    ``columns`` maps each compared column to ``{"score", "method", "threshold", "drifted"}``: the
    statistic Evidently computed (a p-value for tests such as K-S, a distance for Wasserstein or
    Jensen-Shannon), the name of that test, its threshold and Evidently's decision.
    """

    columns: dict[str, dict]
    drifted_share: float
    dataset_drift: bool
    share_threshold: float
    reference_rows: int
    current_rows: int
    sampled: bool
    html: str

    def to_json(self) -> dict:
        """Everything but the HTML report, as plain JSON types."""
        return {
            "columns": {name: dict(info) for name, info in self.columns.items()},
            "drifted_share": self.drifted_share,
            "dataset_drift": self.dataset_drift,
            "share_threshold": self.share_threshold,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "sampled": self.sampled,
        }


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: list[str],
    categorical: list[str],
    share_threshold: float = 0.3,
    sample_rows: int = 20000,
    seed: int = 0,
) -> DriftResult:
    """Compare ``columns`` of ``current`` against ``reference`` with Evidently's data drift preset.

    Column types are given to Evidently explicitly so it does not guess: ``categorical`` columns (and
    any boolean column) are categorical, every other listed column must be numeric.

    The dataset has drifted when the share of drifted columns is at least ``share_threshold``.

    Sampling: a side with more than ``sample_rows`` rows is replaced by a seeded random sample of
    ``sample_rows`` rows, and ``sampled`` is set. Evidently's cost grows with the number of rows; a
    20k-row sample keeps the drift tests' power for the effect sizes that matter and bounds run time.
    The rows counts in the result are those compared, after sampling.

    Raises ValueError for an empty frame, a column missing from either side, a categorical column not
    in ``columns``, or a non-categorical column that is not numeric.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns, categorical = list(columns), list(categorical)
    _validate(reference, current, columns, categorical, share_threshold, sample_rows)

    reference, ref_sampled = _sample(reference[columns], sample_rows, seed)
    current, cur_sampled = _sample(current[columns], sample_rows, seed)

    is_bool = {c for c in columns if _is_bool(reference[c]) or _is_bool(current[c])}
    categorical_columns = [c for c in columns if c in set(categorical) or c in is_bool]
    numerical_columns = [c for c in columns if c not in set(categorical_columns)]
    for name in numerical_columns:
        for side, frame in (("reference", reference), ("current", current)):
            if not pd.api.types.is_numeric_dtype(frame[name]):
                raise ValueError(
                    f"drift column {name!r} has dtype {frame[name].dtype} in the {side} frame, which is not "
                    "numeric: list it in `categorical` or cast it to a number"
                )

    definition = DataDefinition(numerical_columns=numerical_columns, categorical_columns=categorical_columns)
    # include_tests=True makes Evidently attach its per-column drift decision to each ValueDrift metric.
    report = Report([DataDriftPreset(columns=columns, drift_share=share_threshold)], include_tests=True)
    snapshot = report.run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )

    per_column, drifted_share = _read_snapshot(snapshot.dict(), columns)
    return DriftResult(
        columns=per_column,
        drifted_share=drifted_share,
        dataset_drift=drifted_share >= share_threshold,
        share_threshold=float(share_threshold),
        reference_rows=len(reference),
        current_rows=len(current),
        sampled=ref_sampled or cur_sampled,
        html=snapshot.get_html_str(as_iframe=False),
    )


def _validate(reference, current, columns, categorical, share_threshold, sample_rows) -> None:
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
    if sample_rows < 1:
        raise ValueError(f"sample_rows must be at least 1, got {sample_rows}")


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> tuple[pd.DataFrame, bool]:
    if len(frame) <= rows:
        return frame.reset_index(drop=True), False
    return frame.sample(n=rows, random_state=seed).reset_index(drop=True), True


def _is_bool(series: pd.Series) -> bool:
    return pd.api.types.is_bool_dtype(series.dtype)


def _read_snapshot(result: dict, columns: list[str]) -> tuple[dict[str, dict], float]:
    """Per-column results and the drifted share from ``Snapshot.dict()``.

    Evidently 0.7's preset yields one ``DriftedColumnsCount`` metric (value ``{"count", "share"}``)
    and one ``ValueDrift`` metric per column (config ``column``/``method``/``threshold``, value the
    drift score). The drift decision is the status of the test bound to each ValueDrift metric
    (FAIL = drifted), linked by ``metric_config.metric_id``.
    """
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
                "method": str(config["method"]),
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
