"""Regression models (model.task: regression): the config, the gate's direction, margin and baseline, the
metrics and the pipeline's task check."""

import numpy as np
import pandas as pd
import pytest
import yaml

from ml_platform.config import ConfigError, GateSection, load_config
from ml_platform.lib.evaluation import (
    evaluate_regressor,
    regression_baseline_metrics,
    regression_fairness_gap,
    regression_metrics,
    render_report_html,
)
from ml_platform.lib.gate import decide_promotion
from ml_platform.lib.modeling import ModelSpecError, build_pipeline, positive_scores
from ml_platform.settings import PROJECT_ROOT

EXAMPLE_CONFIG = PROJECT_ROOT / "docs" / "examples" / "diabetes" / "ml_platform.yaml"

GATE = GateSection(metric="neg_rmse", min_improvement=1.0, floor=-60, baseline_margin=5,
                   max_latency_p99_ms=50, max_fairness_gap=0.3)
BASELINE = {"rmse": 75.0, "mae": 65.0, "r2": -0.01}


def metrics(**overrides):
    return {"rmse": 54.0, "mae": 44.0, "r2": 0.48, "latency_p99_ms": 2.0, "fairness_gap": 0.1, **overrides}


# -- the gate -------------------------------------------------------------------------------------------
def test_a_lower_rmse_than_the_champion_by_more_than_the_margin_is_promoted():
    decision = decide_promotion(gate=GATE, challenger=metrics(rmse=50.0), champion=metrics(rmse=52.0),
                                baseline=BASELINE)
    assert decision.promote, decision.reasons
    assert (decision.challenger_value, decision.champion_value) == (-50.0, -52.0)
    assert "pass calibration: not applicable to a regression model" in decision.reasons


def test_a_higher_rmse_than_the_champion_is_rejected():
    decision = decide_promotion(gate=GATE, challenger=metrics(rmse=53.0), champion=metrics(rmse=52.0),
                                baseline=BASELINE)
    assert not decision.promote
    assert decision.failures == ["neg_rmse -53.0000 vs champion -52.0000 on the same holdout: -1.0000 ≤ margin 1.0"]


def test_a_lower_rmse_within_the_margin_is_rejected():
    decision = decide_promotion(gate=GATE, challenger=metrics(rmse=51.5), champion=metrics(rmse=52.0),
                                baseline=BASELINE)
    assert not decision.promote
    assert "+0.5000 ≤ margin 1.0" in decision.failures[0]


def test_the_first_model_must_beat_the_mean_baseline_by_the_margin():
    close = decide_promotion(gate=GATE, challenger=metrics(rmse=58.0), champion=None,
                             baseline={**BASELINE, "rmse": 62.0})
    assert not close.promote
    assert close.failures == ["neg_rmse -58.0000 vs trivial baseline -62.0000 + margin 5.0 (not beaten)"]
    clear = decide_promotion(gate=GATE, challenger=metrics(rmse=54.0), champion=None, baseline=BASELINE)
    assert clear.promote, clear.reasons


def test_the_first_model_must_reach_the_floor():
    decision = decide_promotion(gate=GATE, challenger=metrics(rmse=61.0), champion=None, baseline=BASELINE)
    assert decision.failures == ["neg_rmse -61.0000 < floor -60.0000"]


def test_r2_is_gated_higher_is_better_and_fairness_applies():
    gate = GateSection(metric="r2", floor=0.2, baseline_margin=0.1, max_fairness_gap=0.3)
    decision = decide_promotion(gate=gate, challenger=metrics(r2=0.5, fairness_gap=0.4), champion=metrics(r2=0.45),
                                baseline=BASELINE)
    assert decision.challenger_value == 0.5
    assert decision.failures == ["fairness gap (relative RMSE spread) 0.4000 > 0.3"]


def test_neg_mae_is_the_negated_mae():
    gate = GateSection(metric="neg_mae", floor=-50, baseline_margin=1)
    decision = decide_promotion(gate=gate, challenger=metrics(mae=40.0), champion=None, baseline=BASELINE)
    assert decision.promote and decision.challenger_value == -40.0


# -- metrics --------------------------------------------------------------------------------------------
def test_regression_metrics_by_hand():
    got = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 6.0])
    assert got["rmse"] == pytest.approx(1.0)          # sqrt(4 / 4)
    assert got["mae"] == pytest.approx(0.5)           # 2 / 4
    assert got["r2"] == pytest.approx(1 - 4 / 5.0)    # SSE 4, SST 5


def test_the_mean_baseline_has_r2_of_zero_on_its_own_rows():
    y = [10.0, 20.0, 30.0, 40.0]
    got = regression_baseline_metrics(y, y)
    assert got["r2"] == pytest.approx(0.0)
    assert got["rmse"] == pytest.approx(np.std(y))


def test_fairness_gap_is_the_rmse_spread_over_the_overall_rmse():
    y = np.array([0.0, 0.0, 0.0, 0.0])
    pred = np.array([1.0, -1.0, 3.0, -3.0])  # group a: RMSE 1, group b: RMSE 3, overall sqrt(5)
    gap, detail = regression_fairness_gap(y, pred, ["a", "a", "b", "b"])
    assert gap == pytest.approx((3 - 1) / np.sqrt(5))
    assert detail["by_group"]["b"] == {"rmse": pytest.approx(3.0), "mae": pytest.approx(3.0), "rows": 2.0}
    single, detail = regression_fairness_gap(y, pred, ["a", "a", "a", "b"])
    assert np.isnan(single) and "b" in detail["skipped"]


def test_evaluate_regressor_on_a_fitted_ridge():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=200), "z": rng.normal(size=200)})
    y = pd.Series(3 * X["x"] + rng.normal(scale=0.5, size=200))
    model = Ridge().fit(X, y)
    result = evaluate_regressor(model, X, y, sensitive=pd.Series(np.where(X["z"] > 0, "p", "q")), latency_rows=10)
    assert result.metrics["r2"] > 0.9 and result.metrics["rmse"] < 0.6
    assert set(result.by_group) == {"p", "q"} and result.metrics["fairness_gap"] >= 0
    assert [name for name, _, _ in result.figures()] == ["predicted_vs_actual.png", "residuals.png"]
    assert all(png.startswith(b"\x89PNG") for _, _, png in result.figures())
    html = render_report_html("ridge", result)
    assert "Predicted vs actual" in html and "<th>rmse</th>" in html


# -- the config and the pipeline ------------------------------------------------------------------------
def write(tmp_path, mutate) -> str:
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    raw["data"]["source"]["path"] = str(EXAMPLE_CONFIG.parent / raw["data"]["source"]["path"])
    raw["training"]["estimator"] = {"class": "sklearn.linear_model.Ridge"}
    mutate(raw)
    path = tmp_path / "ml_platform.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_the_example_config_is_a_valid_regression():
    config = load_config(EXAMPLE_CONFIG)
    assert (config.model.task, config.gate.metric, config.gate.floor) == ("regression", "neg_rmse", -70)
    assert config.data.labels is None and config.data.positive_label is None


def test_a_regression_gate_defaults_to_r2_with_floor_zero(tmp_path):
    config = load_config(write(tmp_path, lambda raw: raw.pop("gate")))
    assert (config.gate.metric, config.gate.floor) == ("r2", 0.0)


def test_a_regression_live_metric_defaults_to_r2_with_floor_zero(tmp_path):
    config = load_config(write(tmp_path, lambda raw: raw.pop("performance")))
    assert (config.performance.metric, config.performance.floor) == ("r2", 0.0)
    assert load_config(EXAMPLE_CONFIG).performance.metric == "neg_rmse"


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda raw: raw["data"].update(labels=[0, 1]),
     "data.labels: a regression model (model.task: regression) has no labels; remove it"),
    (lambda raw: raw["data"]["columns"]["progression"].update(type="category"),
     "data.columns.progression: the target of a regression must be 'number' or 'integer', not 'category'"),
    (lambda raw: raw["gate"].update(metric="roc_auc", floor=0.5),
     "gate.metric: 'roc_auc' is a classification metric; a regression is gated on one of neg_rmse, neg_mae, r2"),
    (lambda raw: raw["gate"].update(floor=70),
     "gate.floor: got 70.0: neg_rmse is the negated RMSE (higher is better), so its floor is at most 0 "
     "(did you mean -70, i.e. RMSE at most 70?)"),
    (lambda raw: raw["gate"].pop("floor"),
     "gate.floor: required with metric neg_rmse (the target's units, negated: -60 means RMSE at most 60)"),
    (lambda raw: raw["model"].pop("task"),
     "data.labels: required for a classification model"),
    (lambda raw: raw["performance"].update(metric="roc_auc", floor=0.7),
     "performance.metric: 'roc_auc' is a classification metric; a regression's live performance is judged on one "
     "of neg_rmse, neg_mae, r2"),
    (lambda raw: raw["performance"].update(floor=70),
     "performance.floor: got 70.0: neg_rmse is the negated RMSE (higher is better), so its floor is at most 0"),
    (lambda raw: raw["performance"].pop("floor"),
     "performance.floor: required with metric neg_rmse (the target's units, negated: -60 means RMSE at most 60)"),
])
def test_config_errors_name_the_file_field_and_fix(tmp_path, mutate, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, mutate))
    assert "ml_platform.yaml: " in str(caught.value) and expected in str(caught.value)


def test_a_classification_gate_metric_is_refused_for_regression_and_vice_versa(tmp_path):
    from ml_platform_tests.conftest import write_config

    with pytest.raises(ConfigError, match="gate.metric: 'neg_rmse' is a regression metric"):
        load_config(write_config(tmp_path, {"gate": {"metric": "neg_rmse", "floor": -1}}))
    with pytest.raises(ConfigError, match="performance.metric: 'r2' is a regression metric; a classification's "
                                          "live performance is judged on one of roc_auc, f1, accuracy"):
        load_config(write_config(tmp_path, {"performance": {"metric": "r2", "floor": 0}}))
    with pytest.raises(ConfigError, match="performance.floor: got 1.5: the floor of roc_auc must be between 0 and 1"):
        load_config(write_config(tmp_path, {"performance": {"floor": 1.5}}))


def test_build_pipeline_refuses_a_classifier_for_regression_and_a_regressor_for_classification(tmp_path):
    from ml_platform_tests.conftest import write_config

    X = pd.DataFrame({"bmi": [20.0, 30.0]})
    regression = load_config(write(tmp_path, lambda raw: raw["training"]["estimator"].update(
        {"class": "sklearn.linear_model.LogisticRegression"})))
    with pytest.raises(ModelSpecError, match="'sklearn.linear_model.LogisticRegression' is a classifier, but "
                                             "model.task is regression"):
        build_pipeline(regression, X)
    demo = write_config(tmp_path, name="demo.yaml")
    raw = yaml.safe_load(demo.read_text())
    raw["training"]["estimator"] = {"class": "sklearn.linear_model.Ridge"}
    demo.write_text(yaml.safe_dump(raw))
    classification = load_config(demo)
    with pytest.raises(ModelSpecError, match="is not a classifier but a regressor: set model.task: regression"):
        build_pipeline(classification, X)


def test_a_regressor_scores_with_its_predictions(tmp_path):
    config = load_config(write(tmp_path, lambda raw: None))
    X = pd.DataFrame({"bmi": [20.0, 30.0, 40.0], "sex": [1, 2, 1]})
    pipeline = build_pipeline(config, X).fit(X, [1.0, 2.0, 3.0])
    # A regression config has no positive label: the score is the predicted value.
    assert positive_scores(pipeline, X, config.data.positive_label) == pytest.approx(pipeline.predict(X))


def test_slices_of_a_regression_are_judged_on_the_negated_rmse():
    from ml_platform.lib.model_checks import slice_outcome

    holdout = pd.DataFrame({"sex": ["1"] * 4 + ["2"] * 4})
    y = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    pred = np.array([1.0, -1.0, 1.0, -1.0, 3.0, -3.0, 3.0, -3.0])  # RMSE 1 and 3
    outcome = slice_outcome(holdout, y, pred, column="sex", metric="neg_rmse", floor=-2.0, floors={}, min_rows=2)
    assert outcome.status == "fail"
    assert outcome.numbers["slices"]["1"]["metric"] == pytest.approx(-1.0)
    assert "sex=2: neg_rmse -3.0000 < floor -2.0000 (4 rows)" in outcome.details
    constant = slice_outcome(holdout, y, pred, column="sex", metric="r2", floor=0.0, floors={}, min_rows=2)
    assert constant.status != "fail" and "sex=1: not judged (a constant target)" in constant.details


@pytest.mark.parametrize(("slices", "expected"), [
    ({"column": "sex", "metric": "roc_auc"}, "checks.slices.metric: 'roc_auc' is a classification metric"),
    ({"column": "sex", "metric": "neg_rmse"}, "checks.slices.floor: required with metric neg_rmse"),
    ({"column": "sex", "metric": "neg_rmse", "floor": -80, "floors": {"1": 10}},
     "checks.slices.floors: slice '1': floor 10.0: neg_rmse is the negated RMSE"),
])
def test_bad_regression_slices_name_the_field(tmp_path, slices, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, lambda raw: raw["checks"].update(slices=slices)))
    assert expected in str(caught.value)


def test_regression_slices_default_to_r2_with_floor_zero(tmp_path):
    config = load_config(write(tmp_path, lambda raw: raw["checks"].update(slices={"column": "sex"})))
    assert (config.checks.slices.metric, config.checks.slices.floor) == ("r2", 0.0)
