"""The rules behind `ml-platform check`, on small synthetic data and real scikit-learn models."""

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from ml_platform.config import ColumnContract
from ml_platform.lib.model_checks import (
    CheckInputError,
    compare_schemas,
    perturbation_outcome,
    slice_outcome,
    training_convergence,
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    n = 2000
    X = pd.DataFrame({"x1": rng.normal(0, 1, n), "x2": rng.normal(5, 2, n), "count": rng.integers(0, 5, n)})
    logit = 1.5 * X["x1"] - 0.8 * (X["x2"] - 5) + 0.2 * X["count"]
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int))
    return X, y


# -- schema comparison ---------------------------------------------------------------------------------
CONTRACT = {"id": ColumnContract(type="string"), "tenure": ColumnContract(type="integer"),
            "plan": ColumnContract(type="category", allowed=["a", "b", "c"]), "when": ColumnContract(type="date")}


def frame(**changes):
    base = {"id": ["1", "2", "3"], "tenure": [1, 2, 3], "plan": ["a", "b", "a"],
            "when": pd.to_datetime(["2026-01-01"] * 3)}
    return pd.DataFrame({**base, **changes})


def test_the_same_schema_passes_even_when_integers_arrive_as_floats():
    outcome = compare_schemas(frame(), frame(tenure=[1.0, None, 3.0], extra=[1, 2, 3]), CONTRACT)
    assert outcome.status == "pass", outcome
    assert outcome.details == ["columns outside the contract, not compared: extra"]


def test_schema_differences_are_named_column_by_column():
    batch = frame(tenure=["1", "2", "x"], plan=["a", "c", "c"]).drop(columns=["when"])
    outcome = compare_schemas(frame(), batch, CONTRACT)
    assert outcome.status == "fail"
    assert outcome.details[0].startswith("tenure: text in the newest batch, number in the training snapshot")
    assert outcome.details[1].startswith("plan: value(s) ['c'] never seen in training")
    assert outcome.details[2] == "when: missing from the newest batch"


# -- convergence -------------------------------------------------------------------------------------------
def test_a_model_that_learnt_converges(data):
    X, y = data
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    outcome = training_convergence(model, X, y, 1)
    assert outcome.status == "pass", outcome
    assert outcome.numbers["train_log_loss"] < outcome.numbers["baseline_log_loss"]
    assert "LogisticRegression stopped after" in outcome.details[1]


def test_an_iterative_solver_stopped_at_its_cap_did_not_converge(data):
    X, y = data
    with pytest.warns(Warning):  # sklearn's own ConvergenceWarning, which the platform does not see at training
        model = make_pipeline(LogisticRegression(max_iter=1)).fit(X, y)
    outcome = training_convergence(model, X, y, 1)
    assert outcome.status == "fail"
    assert "LogisticRegression stopped at its cap of 1 iterations before converging" in outcome.details[0]
    assert "training.estimator.params.max_iter" in outcome.details[0]


def test_a_model_no_better_than_the_prior_did_not_learn(data):
    X, y = data
    model = make_pipeline(DummyClassifier(strategy="prior")).fit(X, y)
    outcome = training_convergence(model, X, y, 1)
    assert outcome.status == "fail"
    assert "is not below the prior-only baseline's" in outcome.details[0]


# -- slices ------------------------------------------------------------------------------------------------
def slices_data(n=600):
    rng = np.random.default_rng(0)
    holdout = pd.DataFrame({"plan": rng.choice(["a", "b", "tiny"], n, p=[0.6, 0.38, 0.02])})
    y = rng.integers(0, 2, n)
    noise = rng.normal(0, 0.3, n)
    # Good scores on plan a, coin flips on plan b.
    scores = np.where(holdout["plan"] == "a", np.clip(y * 0.6 + 0.2 + noise / 3, 0, 1), rng.random(n))
    return holdout, y, scores


def test_every_slice_above_its_floor_passes_and_small_slices_are_not_judged():
    holdout, y, scores = slices_data()
    outcome = slice_outcome(holdout, y, scores, column="plan", metric="roc_auc", floor=0.4,
                            floors={}, min_rows=30)
    assert outcome.status == "pass", outcome
    assert any(line.startswith("plan=tiny: not judged (") for line in outcome.details)
    assert outcome.numbers["slices"]["a"]["metric"] > 0.9


def test_a_slice_below_its_own_floor_fails_and_is_named():
    holdout, y, scores = slices_data()
    outcome = slice_outcome(holdout, y, scores, column="plan", metric="roc_auc", floor=0.4,
                            floors={"b": 0.7}, min_rows=30)
    assert outcome.status == "fail"
    assert outcome.details[0].startswith("plan=b: roc_auc 0.") and "< floor 0.7000" in outcome.details[0]
    assert outcome.summary == "1 slice(s) of plan below their roc_auc floor"


def test_an_unknown_slice_column_or_slice_is_bad_input():
    holdout, y, scores = slices_data()
    with pytest.raises(CheckInputError, match=r"checks.slices.column: 'plans' is not a column of the feature table "
                                              r"\(did you mean 'plan'\?\)"):
        slice_outcome(holdout, y, scores, column="plans", metric="roc_auc", floor=0.5, floors={}, min_rows=30)
    with pytest.raises(CheckInputError, match=r"checks.slices.floors: no slice \['z'\]"):
        slice_outcome(holdout, y, scores, column="plan", metric="roc_auc", floor=0.5, floors={"z": 0.5}, min_rows=30)


# -- robustness ----------------------------------------------------------------------------------------------
def robustness(model, X, **overrides):
    settings = {"positive_label": 1, "columns": None, "noise": 0.01, "tolerance": 0.25, "max_share": 0.01,
                "rows": 2000, "seed": 0, **overrides}
    return perturbation_outcome(model, X, **settings)


def test_a_smooth_model_is_robust_and_a_step_function_is_not(data):
    X, y = data
    smooth = robustness(make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), X)
    assert smooth.status == "pass", smooth
    assert smooth.numbers["columns"] == ["x1", "x2"]  # integer inputs change by whole units, not by noise
    assert smooth.numbers["max_change"] < 0.05

    step = robustness(make_pipeline(DecisionTreeClassifier(random_state=0)).fit(X, y), X)
    assert step.status == "fail", step
    assert "of rows moved by more than 0.25 under noise of 0.01 × std" in step.details[0]
    assert step.numbers["max_change"] == 1.0


def test_perturbed_columns_must_be_numeric_inputs(data):
    X, y = data
    model = make_pipeline(LogisticRegression()).fit(X, y)
    assert robustness(model, X, columns=["count"]).numbers["columns"] == ["count"]
    with pytest.raises(CheckInputError, match=r"'x11' is not a model input \(did you mean 'x1'\?\)"):
        robustness(model, X, columns=["x11"])
    with pytest.raises(CheckInputError, match="'plan' holds object, not numbers"):
        robustness(model, X.assign(plan="a"), columns=["plan"])
