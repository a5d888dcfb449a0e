"""Offline evaluation of a binary classifier or a regressor: metrics, calibration, fairness, latency and plots.

Pure functions with no Dagster in them. scikit-learn and matplotlib are imported inside the functions
that need them, so importing this module (and loading the Dagster definitions) stays cheap.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Evaluation:
    """What the evaluation stage knows about one model on one evaluation set.

    ``metrics`` holds roc_auc, f1, log_loss, brier, ece, latency_p99_ms, positive_rate (share of rows
    predicted positive at the threshold), rows, and fairness_gap when a sensitive column was given.
    ``by_group`` maps each sensitive value that has both classes to its ROC AUC and row count;
    ``skipped_groups`` maps each sensitive value that has a single class (no AUC) to the reason.
    A regressor's (``evaluate_regressor``) hold rmse, mae, r2, latency_p99_ms, mean_prediction, rows and
    fairness_gap; ``by_group`` its RMSE, MAE and rows per group; its plots are in ``plots``.
    """

    metrics: dict[str, float]
    by_group: dict[str, dict[str, float]]
    roc_png: bytes = b""
    calibration_png: bytes = b""
    skipped_groups: dict[str, str] = field(default_factory=dict)
    # A regressor's plots by file name: predicted_vs_actual.png, residuals.png (a classifier has the two above).
    plots: dict[str, bytes] = field(default_factory=dict)

    def figures(self) -> list[tuple[str, str, bytes]]:
        """(file name, title, PNG) of every plot, for the report, MLflow artifacts and Dagster metadata."""
        named = [("roc.png", "ROC curve", self.roc_png), ("calibration.png", "Reliability diagram", self.calibration_png)]
        named += [(name, _PLOT_TITLES.get(name, name), png) for name, png in self.plots.items()]
        return [(name, title, png) for name, title, png in named if png]

    def to_json(self) -> dict:
        """Metrics and per-group results as plain JSON types (NaN and infinities become None)."""
        return {
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "by_group": {g: {k: _json_float(v) for k, v in m.items()} for g, m in self.by_group.items()},
            "skipped_groups": dict(self.skipped_groups),
        }


def expected_calibration_error(y_true, y_prob, n_bins: int = 10) -> float:
    """Expected calibration error over ``n_bins`` equal-width probability bins on [0, 1].

    ECE = sum over bins of (rows in bin / rows) * |observed positive rate - mean predicted probability|.
    ``y_true`` is 0/1 (or boolean): whether each row is the positive class. A probability of exactly
    1.0 falls in the last bin.
    """
    y, p = _binary_targets_and_probs(y_true, y_prob)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    bins = _bin_index(p, n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    conf = np.bincount(bins, weights=p, minlength=n_bins)
    acc = np.bincount(bins, weights=y, minlength=n_bins)
    filled = counts > 0
    gaps = np.abs(acc[filled] - conf[filled]) / counts[filled]
    return float(np.sum(gaps * counts[filled]) / len(p))


def fairness_gap(y_true, y_prob, groups) -> tuple[float, dict]:
    """Largest difference in ROC AUC between groups (max - min over groups).

    Returns ``(gap, detail)`` where ``detail`` is
    ``{"by_group": {group: {"roc_auc": float, "rows": float}}, "skipped": {group: reason}}``.
    Group names are ``str(value)``. A group whose rows are all one class has no ROC AUC: it is left
    out of the gap and listed under ``skipped``. With fewer than two scorable groups the gap is NaN.
    """
    from sklearn.metrics import roc_auc_score

    y, p = _binary_targets_and_probs(y_true, y_prob)
    g = np.asarray(groups, dtype=object)
    if g.shape != y.shape:
        raise ValueError(f"groups has {g.shape[0] if g.ndim else 0} values but y_true has {len(y)}")
    keys = np.array([str(v) for v in g], dtype=object)

    by_group: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    for key in sorted(set(keys)):
        mask = keys == key
        yg = y[mask]
        n_pos = int(yg.sum())
        if n_pos == 0 or n_pos == len(yg):
            only = "positive" if n_pos else "negative"
            skipped[key] = f"only {only} rows ({len(yg)} rows): ROC AUC undefined"
            continue
        by_group[key] = {"roc_auc": float(roc_auc_score(yg, p[mask])), "rows": float(len(yg))}

    aucs = [m["roc_auc"] for m in by_group.values()]
    gap = float(max(aucs) - min(aucs)) if len(aucs) >= 2 else float("nan")
    return gap, {"by_group": by_group, "skipped": skipped}


def row_latency_p99_ms(model, X: pd.DataFrame, rows: int = 100, seed: int = 0, method: str = "predict_proba") -> float:
    """99th percentile wall time, in milliseconds, of ``model.predict_proba`` (or ``method``, e.g. a regressor's
    ``predict``) on a single-row DataFrame.

    Times ``rows`` rows drawn with a seeded generator (with replacement only when X has fewer rows),
    after one untimed warm-up call, as the online service scores one request at a time.
    """
    if len(X) == 0:
        raise ValueError("cannot measure latency on an empty frame")
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(X), size=rows, replace=rows > len(X))
    singles = [X.iloc[[i]] for i in picks]  # built before timing: slicing is not the model's cost
    from threadpoolctl import threadpool_limits

    # One thread, as a serving worker scores a request: OpenMP's thread team costs more than it
    # saves on one row, and on a busy machine its spin-waits turn into 100+ ms stalls.
    predict = getattr(model, method)
    with threadpool_limits(limits=1):
        predict(singles[0])
        timings = np.empty(len(singles))
        for k, row in enumerate(singles):
            start = time.perf_counter()
            predict(row)
            timings[k] = time.perf_counter() - start
    return float(np.percentile(timings, 99) * 1000.0)


def evaluate_classifier(
    model,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    positive_label,
    sensitive: pd.Series | None = None,
    threshold: float = 0.5,
    latency_rows: int = 100,
) -> Evaluation:
    """Evaluate a fitted classifier (anything with ``predict_proba`` and ``classes_``) on X, y.

    The positive class's probability column is found through ``model.classes_``; labels may be ints or
    strings. ``sensitive`` (aligned with X by position) adds ``by_group`` AUCs and ``fairness_gap``.
    """
    from sklearn.metrics import brier_score_loss, f1_score, log_loss, roc_auc_score

    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    if len(X) == 0:
        raise ValueError("cannot evaluate on an empty evaluation set")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    classes = list(model.classes_)
    if positive_label not in classes:
        raise ValueError(
            f"positive_label {positive_label!r} is not one of the model's classes {classes}"
            " (check the label's type: 1 and '1' differ)"
        )

    y_true = (np.asarray(y) == positive_label).astype(int)
    if y_true.min() == y_true.max():
        raise ValueError(
            f"the evaluation set has a single class (all rows {'are' if y_true[0] else 'are not'} "
            f"{positive_label!r}): ROC AUC is undefined; evaluate on a larger or stratified split"
        )
    proba = np.asarray(model.predict_proba(X))[:, classes.index(positive_label)].astype(float)
    y_pred = (proba >= threshold).astype(int)

    metrics: dict[str, float] = {
        "roc_auc": float(roc_auc_score(y_true, proba)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "log_loss": float(log_loss(y_true, proba, labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, proba)),
        "ece": expected_calibration_error(y_true, proba),
        "latency_p99_ms": row_latency_p99_ms(model, X, rows=latency_rows),
        "positive_rate": float(y_pred.mean()),
        "rows": float(len(X)),
    }

    by_group: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    if sensitive is not None:
        if len(sensitive) != len(X):
            raise ValueError(f"sensitive has {len(sensitive)} values but X has {len(X)} rows")
        gap, detail = fairness_gap(y_true, proba, np.asarray(sensitive, dtype=object))
        metrics["fairness_gap"] = gap
        by_group, skipped = detail["by_group"], detail["skipped"]

    return Evaluation(
        metrics=metrics,
        by_group=by_group,
        roc_png=_roc_png(y_true, proba, metrics["roc_auc"]),
        calibration_png=_calibration_png(y_true, proba, metrics["ece"]),
        skipped_groups=skipped,
    )


def baseline_metrics(y_train, y_eval, positive_label) -> dict[str, float]:
    """Metrics of a prior-only baseline that predicts the training positive rate for every row.

    A model worth promoting must beat this. ROC AUC is 0.5 by definition (a constant score ranks
    nothing); F1 uses the 0.5 threshold, so it is 0 unless positives are the training majority.
    """
    from sklearn.metrics import brier_score_loss, f1_score, log_loss

    train = np.asarray(y_train) == positive_label
    y_true = (np.asarray(y_eval) == positive_label).astype(int)
    if len(train) == 0 or len(y_true) == 0:
        raise ValueError("baseline needs non-empty y_train and y_eval")
    prior = float(train.mean())
    proba = np.full(len(y_true), prior)
    y_pred = (proba >= 0.5).astype(int)
    return {
        "roc_auc": 0.5,
        "log_loss": float(log_loss(y_true, proba, labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, proba)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
    }


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """RMSE, MAE and R² of predictions against a numeric target."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y, p = _numeric_targets_and_predictions(y_true, y_pred)
    return {
        "rmse": float(np.sqrt(mean_squared_error(y, p))),
        "mae": float(mean_absolute_error(y, p)),
        "r2": float(r2_score(y, p)) if len(y) > 1 else float("nan"),
    }


def regression_fairness_gap(y_true, y_pred, groups) -> tuple[float, dict]:
    """Spread of RMSE across groups, relative to the overall RMSE: (max - min group RMSE) / overall RMSE.

    Relative, so one threshold means the same whatever the target's units: 0.2 allows a group's error to be
    20% of the overall error worse than another's. Returns ``(gap, {"by_group": {group: {"rmse", "mae",
    "rows"}}, "skipped": {group: reason}})``; a group of a single row is skipped. NaN with fewer than two groups.
    """
    y, p = _numeric_targets_and_predictions(y_true, y_pred)
    g = np.asarray(groups, dtype=object)
    if g.shape != y.shape:
        raise ValueError(f"groups has {g.shape[0] if g.ndim else 0} values but y_true has {len(y)}")
    keys = np.array([str(v) for v in g], dtype=object)
    by_group: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    for key in sorted(set(keys)):
        mask = keys == key
        if mask.sum() < 2:
            skipped[key] = f"{int(mask.sum())} row: too few to measure an error spread"
            continue
        m = regression_metrics(y[mask], p[mask])
        by_group[key] = {"rmse": m["rmse"], "mae": m["mae"], "rows": float(mask.sum())}
    overall = regression_metrics(y, p)["rmse"]
    rmses = [m["rmse"] for m in by_group.values()]
    if len(rmses) < 2:
        gap = float("nan")
    elif overall == 0:
        gap = 0.0 if max(rmses) == 0 else float("inf")
    else:
        gap = float((max(rmses) - min(rmses)) / overall)
    return gap, {"by_group": by_group, "skipped": skipped}


def evaluate_regressor(
    model,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    sensitive: pd.Series | None = None,
    latency_rows: int = 100,
) -> Evaluation:
    """Evaluate a fitted regressor (anything with ``predict``) on X, y: RMSE, MAE, R², per-row latency p99,
    and with ``sensitive`` (aligned with X by position) the per-group RMSE and the relative fairness gap.
    Plots: predicted against actual, and residuals against predicted."""
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    if len(X) == 0:
        raise ValueError("cannot evaluate on an empty evaluation set")
    y_true = np.asarray(y, dtype=float)
    pred = np.asarray(model.predict(X), dtype=float)
    metrics = {
        **regression_metrics(y_true, pred),
        "latency_p99_ms": row_latency_p99_ms(model, X, rows=latency_rows, method="predict"),
        "mean_prediction": float(pred.mean()),
        "rows": float(len(X)),
    }
    by_group: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    if sensitive is not None:
        if len(sensitive) != len(X):
            raise ValueError(f"sensitive has {len(sensitive)} values but X has {len(X)} rows")
        gap, detail = regression_fairness_gap(y_true, pred, np.asarray(sensitive, dtype=object))
        metrics["fairness_gap"] = gap
        by_group, skipped = detail["by_group"], detail["skipped"]
    return Evaluation(
        metrics=metrics,
        by_group=by_group,
        skipped_groups=skipped,
        plots={"predicted_vs_actual.png": _predicted_vs_actual_png(y_true, pred, metrics["r2"]),
               "residuals.png": _residuals_png(y_true, pred, metrics["rmse"])},
    )


def regression_baseline_metrics(y_train, y_eval) -> dict[str, float]:
    """Metrics of the trivial baseline that predicts the training mean for every row (R² about 0 or below).

    A regressor worth promoting must beat this."""
    train = np.asarray(y_train, dtype=float)
    y = np.asarray(y_eval, dtype=float)
    if len(train) == 0 or len(y) == 0:
        raise ValueError("baseline needs non-empty y_train and y_eval")
    return regression_metrics(y, np.full(len(y), float(train.mean())))


def render_report_html(title: str, evaluation: Evaluation, extra: dict | None = None) -> str:
    """A self-contained HTML page: metrics, per-group results, extra details and the two plots inline."""
    esc = html.escape
    metric_rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(_display(v))}</td></tr>" for k, v in evaluation.metrics.items()
    )
    sections = [f"<h2>Metrics</h2><table>{metric_rows}</table>"]

    if evaluation.by_group or evaluation.skipped_groups:
        group_metric = "rmse" if "rmse" in evaluation.metrics else "roc_auc"  # a regressor's groups: their RMSE
        group_rows = "".join(
            f"<tr><td>{esc(g)}</td><td>{esc(_display(m.get(group_metric)))}</td>"
            f"<td>{esc(_display(m.get('rows')))}</td><td></td></tr>"
            for g, m in evaluation.by_group.items()
        ) + "".join(
            f"<tr><td>{esc(g)}</td><td>-</td><td></td><td>{esc(reason)}</td></tr>"
            for g, reason in evaluation.skipped_groups.items()
        )
        sections.append(
            f"<h2>By group</h2><table><tr><th>group</th><th>{group_metric}</th><th>rows</th><th>note</th></tr>"
            f"{group_rows}</table>"
        )

    if extra:
        extra_rows = "".join(
            f"<tr><th>{esc(str(k))}</th><td>{esc(_display(v))}</td></tr>" for k, v in extra.items()
        )
        sections.append(f"<h2>Details</h2><table>{extra_rows}</table>")

    sections.append(
        '<h2>Plots</h2><div class="plots">'
        + "".join(f'<img alt="{esc(title)}" src="{_data_uri(png)}">' for _, title, png in evaluation.figures())
        + "</div>"
    )
    body = "\n".join(sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 960px; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: left; }}
th {{ background: #f4f4f4; font-weight: 600; }}
td {{ font-variant-numeric: tabular-nums; }}
.plots img {{ margin-right: 1em; border: 1px solid #eee; }}
</style>
</head>
<body>
<h1>{esc(title)}</h1>
{body}
</body>
</html>
"""


def png_markdown(png: bytes, alt: str) -> str:
    """An inline markdown image, for Dagster ``MetadataValue.md``."""
    alt = alt.replace("[", "(").replace("]", ")")
    return f"![{alt}]({_data_uri(png)})"


# --- helpers ---------------------------------------------------------------------------------------

_PLOT_TITLES = {"predicted_vs_actual.png": "Predicted vs actual", "residuals.png": "Residuals"}


def _numeric_targets_and_predictions(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    if y.ndim != 1 or p.ndim != 1 or len(y) != len(p):
        raise ValueError(f"y_true and y_pred must be 1-d and the same length (got {y.shape} and {p.shape})")
    if len(y) == 0:
        raise ValueError("y_true is empty")
    if np.isnan(y).any() or np.isnan(p).any():
        raise ValueError("y_true and y_pred must have no NaN")
    return y, p


def _predicted_vs_actual_png(y_true: np.ndarray, pred: np.ndarray, r2: float) -> bytes:
    fig, ax = _new_figure()
    ax.scatter(y_true, pred, s=12, alpha=0.6, color="tab:blue", label=f"model (R² = {r2:.3f})")
    low, high = float(min(y_true.min(), pred.min())), float(max(y_true.max(), pred.max()))
    ax.plot([low, high], [low, high], color="grey", lw=1, ls="--", label="perfect")
    ax.set(xlabel="Actual", ylabel="Predicted")
    ax.set_title("Predicted vs actual")
    ax.legend(loc="upper left")
    return _to_png(fig)


def _residuals_png(y_true: np.ndarray, pred: np.ndarray, rmse: float) -> bytes:
    fig, ax = _new_figure()
    ax.scatter(pred, y_true - pred, s=12, alpha=0.6, color="tab:blue", label=f"RMSE = {rmse:.3f}")
    ax.axhline(0, color="grey", lw=1, ls="--")
    ax.set(xlabel="Predicted", ylabel="Actual − predicted")
    ax.set_title("Residuals")
    ax.legend(loc="upper left")
    return _to_png(fig)


def _binary_targets_and_probs(y_true, y_prob) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(y_prob, dtype=float)
    if y.ndim != 1 or p.ndim != 1 or len(y) != len(p):
        raise ValueError(f"y_true and y_prob must be 1-d and the same length (got {y.shape} and {p.shape})")
    if len(y) == 0:
        raise ValueError("y_true is empty")
    if not np.isin(y, [0, 1]).all():
        raise ValueError("y_true must be 0/1 (whether each row is the positive class)")
    if np.isnan(p).any() or p.min() < 0.0 or p.max() > 1.0:
        raise ValueError("y_prob must be probabilities in [0, 1] with no NaN")
    return y.astype(float), p


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((p * n_bins).astype(int), n_bins - 1)


def _json_float(v: Any) -> Any:
    if isinstance(v, float | np.floating) and not math.isfinite(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def _display(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        if not math.isfinite(v):
            return "n/a"
        return str(int(v)) if float(v).is_integer() else f"{float(v):.4f}"
    if isinstance(v, dict | list | tuple):
        return json.dumps(v, default=str)
    return str(v)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _new_figure():
    # A bare Figure renders PNG through the Agg canvas without pyplot: no global backend switch, no
    # figure registry to leak, and safe from a threaded server.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4), dpi=80)
    return fig, fig.subplots()


def _to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _roc_png(y_true: np.ndarray, proba: np.ndarray, auc: float) -> bytes:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y_true, proba)
    fig, ax = _new_figure()
    ax.plot(fpr, tpr, color="tab:blue", lw=2, label=f"model (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right")
    return _to_png(fig)


def _calibration_png(y_true: np.ndarray, proba: np.ndarray, ece: float, n_bins: int = 10) -> bytes:
    bins = _bin_index(proba, n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    filled = counts > 0
    conf = np.bincount(bins, weights=proba, minlength=n_bins)[filled] / counts[filled]
    acc = np.bincount(bins, weights=y_true, minlength=n_bins)[filled] / counts[filled]

    fig, ax = _new_figure()
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfectly calibrated")
    ax.plot(conf, acc, marker="o", color="tab:blue", lw=2, label=f"model (ECE = {ece:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Mean predicted probability", ylabel="Observed positive rate")
    ax.set_title("Reliability diagram")
    ax.legend(loc="upper left")
    share = ax.twinx()  # how many rows stand behind each point
    share.bar(
        (np.arange(n_bins) + 0.5) / n_bins,
        counts / counts.sum(),
        width=1 / n_bins,
        alpha=0.15,
        color="tab:grey",
    )
    share.set(ylim=(0, 1), ylabel="Share of rows")
    share.set_zorder(ax.get_zorder() - 1)
    ax.patch.set_visible(False)
    return _to_png(fig)
