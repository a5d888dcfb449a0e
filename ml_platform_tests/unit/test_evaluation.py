import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ml_platform.lib.evaluation import (
    Evaluation,
    baseline_metrics,
    evaluate_classifier,
    expected_calibration_error,
    fairness_gap,
    png_markdown,
    render_report_html,
    row_latency_p99_ms,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fitted():
    X, y = make_classification(n_samples=1200, n_features=6, n_informative=4, random_state=0)
    X = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    y = pd.Series(y, name="label")
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X.iloc[:800], y.iloc[:800])
    return model, X.iloc[800:].reset_index(drop=True), y.iloc[800:].reset_index(drop=True)


# --- expected calibration error ----------------------------------------------------------------


def test_ece_of_a_calibrated_predictor_is_near_zero():
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    y = (rng.random(200_000) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.01


def test_ece_of_a_miscalibrated_predictor_matches_the_hand_computed_value():
    # bin 9 holds two rows at 0.95 with one positive: |0.5 - 0.95| * 2/4 = 0.225
    # bin 2 holds two rows at 0.25, both positive:     |1.0 - 0.25| * 2/4 = 0.375
    y = [1, 0, 1, 1]
    p = [0.95, 0.95, 0.25, 0.25]
    assert expected_calibration_error(y, p) == pytest.approx(0.6)


def test_ece_puts_probability_one_in_the_last_bin():
    assert expected_calibration_error([1, 1], [1.0, 0.95]) == pytest.approx(0.025)


def test_ece_rejects_labels_that_are_not_zero_one():
    with pytest.raises(ValueError, match="0/1"):
        expected_calibration_error(["yes", "no"], [0.2, 0.3])


# --- fairness gap ------------------------------------------------------------------------------


def test_fairness_gap_on_groups_with_known_aucs():
    y = [0, 0, 1, 1] + [0, 0, 1, 1] + [1, 1]
    p = [0.1, 0.2, 0.8, 0.9] + [0.1, 0.6, 0.4, 0.9] + [0.5, 0.7]
    groups = ["a"] * 4 + ["b"] * 4 + ["c"] * 2
    gap, detail = fairness_gap(y, p, groups)
    # a ranks every positive above every negative (AUC 1); b gets 3 of its 4 pairs right (AUC 0.75)
    assert detail["by_group"] == {"a": {"roc_auc": 1.0, "rows": 4.0}, "b": {"roc_auc": 0.75, "rows": 4.0}}
    assert gap == pytest.approx(0.25)
    assert list(detail["skipped"]) == ["c"]
    assert "only positive" in detail["skipped"]["c"]


def test_fairness_gap_is_nan_with_a_single_scorable_group():
    gap, detail = fairness_gap([0, 1, 1], [0.2, 0.8, 0.6], [1, 1, 2])
    assert math.isnan(gap)
    assert list(detail["by_group"]) == ["1"]
    assert list(detail["skipped"]) == ["2"]


# --- latency -----------------------------------------------------------------------------------


class _CountingModel:
    classes_ = np.array([0, 1])

    def __init__(self):
        self.batch_sizes = []

    def predict_proba(self, X):
        self.batch_sizes.append(len(X))
        return np.tile([0.5, 0.5], (len(X), 1))


def test_latency_warms_up_once_then_times_single_rows():
    model = _CountingModel()
    X = pd.DataFrame({"a": range(50)})
    latency = row_latency_p99_ms(model, X, rows=20, seed=1)
    assert model.batch_sizes == [1] * 21
    assert 0.0 < latency < 1000.0


def test_latency_on_a_real_pipeline_is_positive(fitted):
    model, X, _ = fitted
    assert row_latency_p99_ms(model, X, rows=10) > 0.0


# --- evaluate_classifier -----------------------------------------------------------------------


def test_evaluate_classifier_returns_every_metric_with_sane_values(fitted):
    model, X, y = fitted
    sensitive = pd.Series(np.where(X["f0"] > 0, "high", "low"))
    result = evaluate_classifier(model, X, y, positive_label=1, sensitive=sensitive, latency_rows=20)

    assert set(result.metrics) == {
        "roc_auc",
        "f1",
        "log_loss",
        "brier",
        "ece",
        "latency_p99_ms",
        "positive_rate",
        "rows",
        "fairness_gap",
    }
    m = result.metrics
    expected_auc = roc_auc_score(y, model.predict_proba(X)[:, 1])
    assert m["roc_auc"] == pytest.approx(expected_auc)
    assert 0.8 < m["roc_auc"] <= 1.0
    assert 0.5 < m["f1"] <= 1.0
    assert 0.0 < m["log_loss"] < 0.693  # better than a coin flip
    assert 0.0 < m["brier"] < 0.25
    assert 0.0 <= m["ece"] < 0.2
    assert m["latency_p99_ms"] > 0.0
    assert 0.0 < m["positive_rate"] < 1.0
    assert m["rows"] == 400.0
    assert set(result.by_group) == {"high", "low"}
    assert sum(g["rows"] for g in result.by_group.values()) == 400.0
    aucs = [g["roc_auc"] for g in result.by_group.values()]
    assert m["fairness_gap"] == pytest.approx(max(aucs) - min(aucs))
    assert result.roc_png.startswith(PNG_MAGIC)
    assert result.calibration_png.startswith(PNG_MAGIC)


def test_evaluate_classifier_without_sensitive_has_no_groups(fitted):
    model, X, y = fitted
    result = evaluate_classifier(model, X, y, positive_label=1, latency_rows=5)
    assert "fairness_gap" not in result.metrics
    assert result.by_group == {}


def test_the_positive_column_is_found_through_classes(fitted):
    model, X, y = fitted
    as_one = evaluate_classifier(model, X, y, positive_label=1, latency_rows=5)
    as_zero = evaluate_classifier(model, X, y, positive_label=0, latency_rows=5)
    # scoring class 0 with its own column ranks as well as class 1; the wrong column would give 1 - AUC
    assert as_zero.metrics["roc_auc"] == pytest.approx(as_one.metrics["roc_auc"])
    assert as_zero.metrics["positive_rate"] == pytest.approx(1 - as_one.metrics["positive_rate"], abs=0.01)


def test_string_labels_work(fitted):
    model, X, y = fitted
    y_text = y.map({0: "stayed", 1: "churned"})
    text_model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y_text)
    result = evaluate_classifier(text_model, X, y_text, positive_label="churned", latency_rows=5)
    churn_column = list(text_model.classes_).index("churned")
    expected = roc_auc_score(y_text == "churned", text_model.predict_proba(X)[:, churn_column])
    assert result.metrics["roc_auc"] == pytest.approx(expected)
    assert result.metrics["roc_auc"] > 0.8


def test_unknown_positive_label_names_the_classes(fitted):
    model, X, y = fitted
    with pytest.raises(ValueError, match=r"'1' is not one of the model's classes \[.*0.*1.*\]"):
        evaluate_classifier(model, X, y, positive_label="1")


def test_single_class_evaluation_set_is_refused(fitted):
    model, X, y = fitted
    keep = (y == 1).to_numpy()
    with pytest.raises(ValueError, match="single class"):
        evaluate_classifier(model, X[keep], y[keep], positive_label=1)


def test_to_json_is_json_safe():
    evaluation = Evaluation(
        metrics={"roc_auc": 0.8, "fairness_gap": float("nan")},
        by_group={"a": {"roc_auc": 0.8, "rows": 10.0}},
        roc_png=PNG_MAGIC,
        calibration_png=PNG_MAGIC,
        skipped_groups={"b": "only positive rows (3 rows): ROC AUC undefined"},
    )
    data = json.loads(json.dumps(evaluation.to_json(), allow_nan=False))
    assert data["metrics"] == {"roc_auc": 0.8, "fairness_gap": None}
    assert data["by_group"] == {"a": {"roc_auc": 0.8, "rows": 10.0}}
    assert data["skipped_groups"] == {"b": "only positive rows (3 rows): ROC AUC undefined"}


# --- baseline ----------------------------------------------------------------------------------


def test_baseline_predicts_the_training_prior():
    y_train = [1, 0, 0, 0]  # prior 0.25
    y_eval = [1, 0, 0, 0, 1]
    m = baseline_metrics(y_train, y_eval, positive_label=1)
    assert m["roc_auc"] == 0.5
    assert m["brier"] == pytest.approx((2 * 0.75**2 + 3 * 0.25**2) / 5)
    assert m["log_loss"] == pytest.approx(-(2 * math.log(0.25) + 3 * math.log(0.75)) / 5)
    assert m["f1"] == 0.0  # predicts negative everywhere at the 0.5 threshold


def test_baseline_with_string_labels():
    m = baseline_metrics(["yes", "yes", "no"], ["yes", "no"], positive_label="yes")
    assert m["roc_auc"] == 0.5
    assert m["f1"] == pytest.approx(2 / 3)  # prior 2/3 >= 0.5: everything predicted "yes"


# --- rendering ---------------------------------------------------------------------------------


def test_report_html_holds_the_metrics_and_both_plots(fitted):
    model, X, y = fitted
    sensitive = pd.Series(np.where(X["f0"] > 0, "high", "low"))
    result = evaluate_classifier(model, X, y, positive_label=1, sensitive=sensitive, latency_rows=5)
    page = render_report_html("Churn model <v3>", result, extra={"model_version": "3", "params": {"C": 1.0}})

    assert page.startswith("<!DOCTYPE html>")
    assert "Churn model &lt;v3&gt;" in page
    for name in ("roc_auc", "f1", "log_loss", "brier", "ece"):
        assert name in page
        assert f"{result.metrics[name]:.4f}" in page
    assert "<td>400</td>" in page
    assert "high" in page and "low" in page
    assert "model_version" in page and "{&quot;C&quot;: 1.0}" in page
    assert page.count("<img ") == 2
    assert page.count('src="data:image/png;base64,') == 2
    assert "http://" not in page and "https://" not in page


def test_png_markdown():
    assert png_markdown(b"\x89PNG", "ROC curve") == "![ROC curve](data:image/png;base64,iVBORw==)"


def test_importing_the_modules_does_not_import_heavy_libraries():
    code = (
        "import sys, ml_platform.lib.evaluation, ml_platform.lib.drift; "
        "print(sorted(m for m in ('sklearn', 'matplotlib', 'evidently') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
