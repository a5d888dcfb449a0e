import json

import numpy as np
import pandas as pd
import pytest

from ml_platform.lib.drift import DriftResult, detect_drift

COLUMNS = ["tenure", "charges", "plan", "is_senior"]
CATEGORICAL = ["plan"]  # is_senior is boolean: categorical without being listed


def _customers(rows: int, seed: int, *, charges_shift: float = 0.0, plan_mix=(0.5, 0.3, 0.2)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "tenure": rng.normal(30, 10, rows),
            "charges": rng.normal(70 + charges_shift, 20, rows),
            "plan": rng.choice(["basic", "plus", "pro"], size=rows, p=list(plan_mix)),
            "is_senior": rng.random(rows) < 0.2,
            "customer_id": np.arange(rows),  # not compared
        }
    )


def test_two_samples_of_one_distribution_do_not_drift():
    result = detect_drift(_customers(2000, 1), _customers(2000, 2), columns=COLUMNS, categorical=CATEGORICAL)

    assert isinstance(result, DriftResult)
    assert list(result.columns) == COLUMNS
    assert not any(c["drifted"] for c in result.columns.values())
    assert result.drifted_share == 0.0
    assert result.dataset_drift is False
    assert (result.reference_rows, result.current_rows, result.sampled) == (2000, 2000, False)
    for info in result.columns.values():
        assert set(info) == {"score", "method", "threshold", "drifted"}
        assert isinstance(info["score"], float) and info["method"] and info["threshold"] > 0


def test_a_shifted_number_and_a_new_category_mix_drift():
    reference = _customers(2000, 1)
    current = _customers(2000, 2, charges_shift=20.0, plan_mix=(0.1, 0.3, 0.6))
    result = detect_drift(reference, current, columns=COLUMNS, categorical=CATEGORICAL, share_threshold=0.3)

    drifted = {name for name, info in result.columns.items() if info["drifted"]}
    assert drifted == {"charges", "plan"}
    assert result.drifted_share == pytest.approx(0.5)
    assert result.dataset_drift is True
    # the decisions are Evidently's: a distance above its threshold (or a p-value below it)
    charges = result.columns["charges"]
    assert "Wasserstein" in charges["method"] and charges["score"] > charges["threshold"]
    # the boolean column went to a categorical test, not a numerical one
    assert "Wasserstein" not in result.columns["is_senior"]["method"]


def test_dataset_drift_uses_the_share_threshold():
    reference = _customers(2000, 1)
    current = _customers(2000, 2, charges_shift=20.0)  # one column of four drifts
    low = detect_drift(reference, current, columns=COLUMNS, categorical=CATEGORICAL, share_threshold=0.25)
    high = detect_drift(reference, current, columns=COLUMNS, categorical=CATEGORICAL, share_threshold=0.3)
    assert (low.drifted_share, low.dataset_drift) == (0.25, True)
    assert (high.drifted_share, high.dataset_drift) == (0.25, False)


def test_a_side_above_sample_rows_is_sampled():
    result = detect_drift(
        _customers(3000, 1), _customers(800, 2), columns=COLUMNS, categorical=CATEGORICAL, sample_rows=1000
    )
    assert result.sampled is True
    assert (result.reference_rows, result.current_rows) == (1000, 800)
    assert result.dataset_drift is False


def test_html_report_and_json():
    result = detect_drift(
        _customers(300, 1), _customers(300, 2), columns=["tenure", "plan"], categorical=["plan"]
    )
    assert "<html" in result.html
    data = json.loads(json.dumps(result.to_json()))
    assert "html" not in data
    assert set(data) == {
        "columns",
        "drifted_share",
        "dataset_drift",
        "share_threshold",
        "reference_rows",
        "current_rows",
        "sampled",
    }
    assert set(data["columns"]) == {"tenure", "plan"}


def test_missing_column_is_named():
    current = _customers(100, 2).drop(columns=["charges"])
    with pytest.raises(ValueError, match=r"missing from the current frame: \['charges'\]"):
        detect_drift(_customers(100, 1), current, columns=COLUMNS, categorical=CATEGORICAL)


def test_empty_frame_is_refused():
    with pytest.raises(ValueError, match="reference frame is empty"):
        detect_drift(_customers(0, 1), _customers(100, 2), columns=COLUMNS, categorical=CATEGORICAL)


def test_text_column_not_listed_as_categorical_is_refused():
    with pytest.raises(ValueError, match="'plan' has dtype object .* list it in `categorical`"):
        detect_drift(_customers(100, 1), _customers(100, 2), columns=COLUMNS, categorical=[])
