"""The regression set: recorded rows come back as exactly the rows scored; a set judges only its own version."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from ml_platform.lib.regression_set import (
    RegressionSet,
    RegressionSetError,
    compare_scores,
    record_regression_set,
    score_rows,
)


@pytest.fixture(scope="module")
def recorded():
    rng = np.random.default_rng(1)
    holdout = pd.DataFrame({"customer_id": [f"C{i:03d}" for i in range(40)],
                            "ratio": rng.random(40) / 3,  # floats with many digits: must survive JSON exactly
                            "calls": rng.integers(0, 9, 40), "flag": rng.random(40) < 0.5})
    y = (holdout["ratio"] + holdout["calls"] / 10 > 0.5).astype(int)
    columns = ["ratio", "calls", "flag"]
    from ml_platform.lib.modeling import model_inputs

    model = make_pipeline(LogisticRegression()).fit(model_inputs(holdout, columns), y)
    found = record_regression_set(model, holdout, columns, model_name="churn", version="3", artifact_sha256="a" * 64,
                                  positive_label=1, id_column="customer_id", rows=25)
    return model, found


def test_recorded_rows_replay_to_the_recorded_scores_exactly(recorded, tmp_path):
    model, found = recorded
    assert len(found.rows) == 25 and found.rows[0]["customer_id"] == "C000"
    assert set(found.rows[0]) == {"ratio", "calls", "flag", "customer_id"}
    read = RegressionSet.read(found.write(tmp_path / "set.json"))
    assert read == found
    assert score_rows(model, read, 1) == read.scores  # bit for bit after the JSON round trip
    assert compare_scores(read, score_rows(model, read, 1), 0.0) == []


def test_a_different_answer_or_another_version_is_named_by_row(recorded):
    _, found = recorded
    answers = list(found.scores)
    answers[2] += 0.01
    problems = compare_scores(found, answers, 1e-6, ["3"] * 24 + ["2"])
    assert problems[0].startswith("row 2 (C002): score ") and "(tolerance 1e-06)" in problems[0]
    assert problems[1] == "row 24 (C024): answered by version 2, not v3"


def test_a_set_of_another_version_is_refused_naming_both(recorded):
    _, found = recorded
    found.require_version("churn", "3", "a" * 64, "set.json")
    with pytest.raises(RegressionSetError, match=r"set.json: the regression set was recorded for churn v3, but the "
                                                 r"version under check is churn v4"):
        found.require_version("churn", "4", None, "set.json")
    with pytest.raises(RegressionSetError, match="recorded from artifact aaaaaaaaaaaa…, but churn v3's recorded "
                                                 "artifact is bbbbbbbbbbbb…"):
        found.require_version("churn", "3", "b" * 64, "set.json")


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "not a readable regression set"),
    (json.dumps({"rows": []}), "not a regression set"),
    (json.dumps({"format": "ml_platform.regression_set/1", "model": "churn"}), "missing version, artifact_sha256"),
    (json.dumps({"format": "ml_platform.regression_set/1", "model": "churn", "version": "1", "artifact_sha256": "a",
                 "rows": [{}], "scores": [], "labels": []}), "must be non-empty and of equal length"),
])
def test_a_malformed_file_is_named(tmp_path, content, message):
    (tmp_path / "set.json").write_text(content)
    with pytest.raises(RegressionSetError, match=message):
        RegressionSet.read(tmp_path / "set.json")
