"""The rules behind `ml-platform check`, as pure functions over data frames and a fitted model.

Each returns an `Outcome` (pass, fail or skip, a one-line summary, and detail lines a person can act on).
Bad input from the project (a slice column that does not exist, a floor for a slice that does not exist, a
perturbed column that is not a numeric input) raises `CheckInputError`: the check cannot judge anything
with it, and the CLI exits 2. sklearn is imported inside the functions that need it.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

Status = Literal["pass", "fail", "skip"]


class CheckInputError(ValueError):
    """The check was given something it cannot use (a missing column, a malformed file): exit code 2."""


@dataclass(frozen=True)
class Outcome:
    status: Status
    summary: str
    details: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)  # for --json and the readiness table

    @classmethod
    def judged(cls, failures: list[str], passed: str, failed: str, details: list[str] = (), **numbers: Any) -> Outcome:
        """Pass with `passed` when there are no failures; else fail with `failed` and the failures first."""
        if failures:
            return cls("fail", failed, [*failures, *details], numbers)
        return cls("pass", passed, list(details), numbers)


def did_you_mean(name: str, known: list[str]) -> str:
    hint = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


# -- data: the training snapshot against the newest batch ---------------------------------------------
def column_kind(series: pd.Series) -> str:
    """What a column holds, coarsely: number, boolean, datetime or text (integer and float are both numbers:
    an integer column with nulls reads as float)."""
    from pandas.api.types import infer_dtype, is_bool_dtype, is_datetime64_any_dtype, is_numeric_dtype

    if is_bool_dtype(series.dtype):
        return "boolean"
    if is_numeric_dtype(series.dtype):
        return "number"
    if is_datetime64_any_dtype(series.dtype):
        return "datetime"
    inferred = infer_dtype(series, skipna=True)
    if inferred in ("date", "datetime", "datetime64"):
        return "datetime"
    if inferred == "boolean":
        return "boolean"
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return "number"
    return "text"


def compare_schemas(training: pd.DataFrame, batch: pd.DataFrame, contract: dict[str, Any]) -> Outcome:
    """The newest batch against the training snapshot, column by column of the data contract: both have it,
    it holds the same kind of values, and a category column brings no value the model never saw."""
    failures, notes = [], []
    for name, spec in contract.items():
        where = [side for side, frame in (("training snapshot", training), ("newest batch", batch))
                 if name not in frame.columns]
        if where:
            failures.append(f"{name}: missing from the {' and the '.join(where)}")
            continue
        trained, arriving = column_kind(training[name]), column_kind(batch[name])
        if trained != arriving:
            failures.append(f"{name}: {arriving} in the newest batch, {trained} in the training snapshot "
                            f"({batch[name].dtype} vs {training[name].dtype})")
            continue
        if spec.type == "category":
            unseen = sorted(set(batch[name].dropna().astype(str)) - set(training[name].dropna().astype(str)))
            if unseen:
                failures.append(f"{name}: value(s) {unseen[:10]} never seen in training: the model has learnt "
                                "nothing about them (one-hot encoding ignores them)")
    extra = sorted(set(map(str, batch.columns)) - set(contract))
    if extra:
        notes.append(f"columns outside the contract, not compared: {', '.join(extra[:10])}")
    return Outcome.judged(failures, f"{len(contract)} contract columns: same columns and kinds, no unseen category",
                          f"{len(failures)} schema difference(s) between the training snapshot and the newest batch",
                          notes, columns=len(contract))


# -- model: training ----------------------------------------------------------------------------------
def training_convergence(model: Any, X_train: pd.DataFrame, y_train: pd.Series, positive_label: Any) -> Outcome:
    """Training converged: the fitted model's log loss on its training rows is below a prior-only baseline's
    (the fit reduced the loss), and an iterative estimator stopped before its iteration cap."""
    from sklearn.metrics import log_loss, mean_squared_error

    if positive_label is None:  # a regressor: its training MSE against predicting the training mean
        y_num = np.asarray(y_train, dtype=float)
        loss, base_name = "training MSE", "the mean's"
        trained = float(mean_squared_error(y_num, np.asarray(model.predict(X_train), dtype=float)))
        baseline = float(mean_squared_error(y_num, np.full(len(y_num), y_num.mean())))
    else:
        y = (np.asarray(y_train) == positive_label).astype(int)
        classes = list(model.classes_)
        proba = np.asarray(model.predict_proba(X_train))[:, classes.index(positive_label)]
        loss, base_name = "training log loss", "the prior-only baseline's"
        trained = float(log_loss(y, np.clip(proba, 1e-15, 1 - 1e-15), labels=[0, 1]))
        prior = float(np.full(len(y), y.mean()).mean()) if len(y) else 0.5
        baseline = float(log_loss(y, np.full(len(y), prior), labels=[0, 1]))
    failures = []
    if not math.isfinite(trained) or trained >= baseline:
        failures.append(f"{loss} {trained:.4f} is not below {base_name} {baseline:.4f}: "
                        "the fit did not learn from the data")
    details = [f"{loss} {trained:.4f} vs {base_name} {baseline:.4f}"]
    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    iterations = getattr(estimator, "n_iter_", None)
    cap = estimator.get_params().get("max_iter") if hasattr(estimator, "get_params") else None
    # Boosting without early stopping always runs max_iter rounds by design: reaching the cap says nothing there.
    fixed_rounds = getattr(estimator, "do_early_stopping_", None) is False
    if iterations is not None and isinstance(cap, int | np.integer) and not fixed_rounds:
        used = int(np.max(np.ravel(iterations)))
        details.append(f"{type(estimator).__name__} stopped after {used} of at most {cap} iterations")
        if used >= cap:
            failures.append(f"{type(estimator).__name__} stopped at its cap of {cap} iterations before converging: "
                            "raise training.estimator.params.max_iter (or scale the inputs)")
    return Outcome.judged(failures, f"converged: {loss} {trained:.4f} < {base_name} {baseline:.4f}",
                          "training did not converge", details, train_log_loss=trained, baseline_log_loss=baseline)


# -- model: slices -------------------------------------------------------------------------------------
def slice_metric(metric: str, y: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    """A classification metric of 0/1 `y` and positive-class `scores`; or, for neg_rmse, neg_mae and r2, a
    regression metric of a numeric `y` and predicted values (negated errors: higher is better, as in the gate)."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    if metric in ("neg_rmse", "neg_mae", "r2"):
        from ml_platform.lib.evaluation import regression_metrics

        got = regression_metrics(y, scores)
        return got["r2"] if metric == "r2" else -got[metric[4:]]
    if metric == "roc_auc":
        return float(roc_auc_score(y, scores))
    predicted = (scores >= threshold).astype(int)
    if metric == "f1":
        return float(f1_score(y, predicted, zero_division=0))
    return float(accuracy_score(y, predicted))


def slice_outcome(holdout: pd.DataFrame, y_true: np.ndarray, scores: np.ndarray, *, column: str, metric: str,
                  floor: float, floors: dict[str, float], min_rows: int) -> Outcome:
    """The metric on each slice of the holdout (each value of `column`), against its floor.

    `y_true` is 0/1 and `scores` the positive-class scores, aligned with `holdout`'s rows (a regression metric:
    the numeric target and the predicted values). A slice with fewer than `min_rows` rows, or (for ROC AUC) a
    single class, or (for R²) a constant target, is listed but not judged."""
    if column not in holdout.columns:
        raise CheckInputError(f"checks.slices.column: '{column}' is not a column of the feature table"
                              f"{did_you_mean(column, [str(c) for c in holdout.columns])}")
    values = holdout[column].astype(str).to_numpy()
    present = sorted(set(values))
    unknown = sorted(set(floors) - set(present))
    if unknown:
        raise CheckInputError(f"checks.slices.floors: no slice {unknown} in the holdout's '{column}' "
                              f"(its values: {present[:20]})")
    failures, lines, by_slice = [], [], {}
    for value in present:
        mask = values == value
        rows = int(mask.sum())
        need = floors.get(value, floor)
        single = metric == "roc_auc" and int(y_true[mask].sum()) in (0, rows)
        constant = metric == "r2" and np.ptp(np.asarray(y_true[mask], dtype=float)) == 0
        if rows < min_rows or single or constant:
            why = (f"{rows} rows < min_rows {min_rows}" if rows < min_rows
                   else "a single class" if single else "a constant target")
            lines.append(f"{column}={value}: not judged ({why})")
            by_slice[value] = {"rows": rows, "metric": None, "floor": need}
            continue
        got = slice_metric(metric, y_true[mask], scores[mask])
        by_slice[value] = {"rows": rows, "metric": got, "floor": need}
        line = f"{column}={value}: {metric} {got:.4f} {'≥' if got >= need else '<'} floor {need:.4f} ({rows} rows)"
        (failures if got < need else lines).append(line)
    judged = sum(1 for s in by_slice.values() if s["metric"] is not None)
    return Outcome.judged(failures, f"{judged} slice(s) of {column} at or above their {metric} floor",
                          f"{len(failures)} slice(s) of {column} below their {metric} floor", lines,
                          column=column, metric=metric, slices=by_slice)


# -- model: robustness ----------------------------------------------------------------------------------
def perturbation_columns(X: pd.DataFrame, columns: list[str] | None) -> list[str]:
    """The inputs to perturb: the named ones (checked), else every float input with more than two values."""
    if columns is None:
        return [c for c in X.columns if X[c].dtype.kind == "f" and X[c].nunique(dropna=True) > 2]
    for name in columns:
        if name not in X.columns:
            raise CheckInputError(f"checks.perturbation.columns: '{name}' is not a model input"
                                  f"{did_you_mean(name, [str(c) for c in X.columns])}")
        if X[name].dtype.kind not in "fiu":
            raise CheckInputError(f"checks.perturbation.columns: '{name}' holds {X[name].dtype}, not numbers: "
                                  "only numeric inputs can be perturbed")
    return list(columns)


def perturbation_outcome(model: Any, X: pd.DataFrame, *, positive_label: Any, columns: list[str] | None,
                         noise: float, tolerance: float, max_share: float, rows: int, seed: int) -> Outcome:
    """Scores on `rows` rows of X, then again with Gaussian noise of `noise` × each perturbed column's standard
    deviation added: at most `max_share` of the rows may move by more than `tolerance`. A regressor
    (`positive_label` None) is judged on its predictions, a change measured as a share of their standard deviation. A smooth model moves a
    little everywhere; a step function (an overfit tree) jumps on the rows near its thresholds."""
    X = X.head(rows)
    perturbed_columns = perturbation_columns(X, columns)
    if not perturbed_columns:
        return Outcome("skip", "no numeric input to perturb (checks.perturbation.columns names none, and no float "
                               "input has more than two values)")
    from ml_platform.lib.modeling import positive_scores

    before = np.asarray(positive_scores(model, X, positive_label), dtype=float)
    rng = np.random.default_rng(seed)
    noisy = X.copy()
    for name in perturbed_columns:
        spread = float(X[name].std(skipna=True) or 0.0)
        noisy[name] = X[name].astype(float) + rng.normal(0.0, noise * spread, len(X))
    after = np.asarray(positive_scores(model, noisy, positive_label), dtype=float)
    if not (np.isfinite(before).all() and np.isfinite(after).all()):
        return Outcome("fail", "the model returned non-finite scores", [f"{int((~np.isfinite(after)).sum())} "
                       "non-finite scores on perturbed rows"])
    moved = np.abs(after - before)
    if positive_label is None:
        # A regressor's predictions are in the target's units: a change counts as a share of their spread.
        spread = float(before.std()) or 1.0
        moved = moved / spread
    share = float((moved > tolerance).mean())
    worst = int(np.argmax(moved))
    numbers = {"rows": len(X), "columns": perturbed_columns, "noise": noise, "tolerance": tolerance,
               "max_share": max_share, "share_over_tolerance": share, "max_change": float(moved.max()),
               "p99_change": float(np.quantile(moved, 0.99)), "mean_change": float(moved.mean())}
    details = [f"noise {noise:g} × std on {', '.join(perturbed_columns)}; {len(X)} rows",
               f"score change: mean {moved.mean():.4f}, p99 {numbers['p99_change']:.4f}, max {moved.max():.4f} "
               f"(row {worst}: {before[worst]:.4f} → {after[worst]:.4f})"]
    failures = []
    if share > max_share:
        failures.append(f"{share:.1%} of rows moved by more than {tolerance:g} under noise of {noise:g} × std "
                        f"(at most {max_share:.1%} may): the scores are sensitive to tiny input changes")
    return Outcome.judged(failures, f"{share:.1%} of rows moved by more than {tolerance:g} (≤ {max_share:.1%} allowed)",
                          "scores are not robust to small input perturbations", details, **numbers)
