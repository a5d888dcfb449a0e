import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform.lib import drift
from ml_platform.lib.demo_data import generate_batch
from ml_platform.lib.drift import DriftResult, detect_drift, evidently_drift, score_drift

PROJECT_ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ["tenure", "charges", "plan", "is_senior"]
CATEGORICAL = ["plan"]  # is_senior is boolean: categorical without being listed

# Every kind of column the engine tells apart: continuous, continuous with NaN and +/-inf, counts, few
# distinct numbers, a 0/1 number, categories (one new in current), two categories, booleans.
MIXED = ["amount", "amount_nan", "visits", "rating", "binary", "plan", "region", "is_senior"]
MIXED_CATEGORICAL = ["plan", "region"]


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


def _mixed(rows: int, seed: int, *, shift: float = 0.0) -> pd.DataFrame:
    """A reference (shift 0) or a current frame; with a shift some columns drift and others do not."""
    rng = np.random.default_rng(seed)
    amount_nan = rng.normal(100, 15, rows)
    amount_nan[rng.random(rows) < 0.1] = np.nan
    amount_nan[:2] = [np.inf, -np.inf]
    plans = ["basic", "plus", "pro", "enterprise"] if shift else ["basic", "plus", "pro"]
    plan_mix = [0.45, 0.3, 0.2, 0.05] if shift else [0.5, 0.3, 0.2]
    return pd.DataFrame(
        {
            "amount": rng.normal(50 + 4 * shift, 10, rows),
            "amount_nan": amount_nan,
            "visits": rng.poisson(3 + shift, rows),
            "rating": rng.choice([1.0, 2.0, 3.0, 4.0], rows, p=[0.1, 0.2, 0.3, 0.4]),
            "binary": (rng.random(rows) < 0.3 + 0.02 * shift).astype(np.int64),
            "plan": rng.choice(plans, rows, p=plan_mix),
            "region": rng.choice(["north", "south"], rows),
            "is_senior": rng.random(rows) < 0.2 + 0.05 * shift,
        }
    )


def _assert_same_columns(ours: dict, evidently: dict) -> None:
    """The same test, threshold and decision per column; scores equal to rounding (Evidently sums the
    categories in a set's order)."""
    assert list(ours) == list(evidently)
    for name, mine in ours.items():
        theirs = evidently[name]
        assert (name, mine["method"], mine["threshold"], mine["drifted"]) == (
            name,
            theirs["method"],
            theirs["threshold"],
            theirs["drifted"],
        )
        assert mine["score"] == pytest.approx(theirs["score"], rel=1e-9, abs=1e-9), name


def _assert_same_decisions(ours: DriftResult, evidently: DriftResult) -> None:
    _assert_same_columns(ours.columns, evidently.columns)
    assert (ours.drifted_share, ours.dataset_drift) == (evidently.drifted_share, evidently.dataset_drift)


def _methods(result: DriftResult) -> dict[str, str]:
    return {name: info["method"] for name, info in result.columns.items()}


# --- the engine against Evidently run on all rows ----------------------------------------------------------


def test_auto_above_1000_reference_rows_matches_evidently_on_all_rows():
    reference, current = _mixed(8000, 1), _mixed(6000, 2, shift=0.5)
    kwargs = {"columns": MIXED, "categorical": MIXED_CATEGORICAL}

    ours = detect_drift(reference, current, **kwargs, html=False)
    _assert_same_decisions(ours, evidently_drift(reference, current, **kwargs))
    # Evidently's default choice: numbers with more than 5 distinct values -> normed Wasserstein, the rest
    # (few-valued numbers, categories, booleans) -> Jensen-Shannon
    assert _methods(ours) == {
        "amount": "wasserstein",
        "amount_nan": "wasserstein",
        "visits": "wasserstein",
        "rating": "jensenshannon",
        "binary": "jensenshannon",
        "plan": "jensenshannon",
        "region": "jensenshannon",
        "is_senior": "jensenshannon",
    }
    drifted = {name for name, info in ours.columns.items() if info["drifted"]}
    assert drifted and drifted != set(MIXED)  # both kinds of decision are compared


def test_auto_at_1000_reference_rows_or_fewer_matches_evidently_on_all_rows():
    reference, current = _mixed(1000, 3), _mixed(900, 4, shift=1.0)
    kwargs = {"columns": MIXED, "categorical": MIXED_CATEGORICAL}

    ours = detect_drift(reference, current, **kwargs, html=False)
    _assert_same_decisions(ours, evidently_drift(reference, current, **kwargs))
    # numbers: K-S (> 5 distinct values), chi-square (3-5), z-test (1-2); categories: chi-square (> 2), z
    assert _methods(ours) == {
        "amount": "ks",
        "amount_nan": "ks",
        "visits": "ks",
        "rating": "chisquare",
        "binary": "z",
        "plan": "chisquare",
        "region": "z",
        "is_senior": "z",
    }
    drifted = {name for name, info in ours.columns.items() if info["drifted"]}
    assert drifted and drifted != set(MIXED)


def test_the_reference_size_that_picks_the_test_is_counted_after_dropping_missing_values():
    reference, current = _mixed(1100, 5), _mixed(1100, 6, shift=0.5)  # amount_nan keeps ~990 reference rows
    kwargs = {"columns": ["amount", "amount_nan"], "categorical": []}

    ours = detect_drift(reference, current, **kwargs, html=False)
    _assert_same_decisions(ours, evidently_drift(reference, current, **kwargs))
    assert _methods(ours) == {"amount": "wasserstein", "amount_nan": "ks"}


@pytest.mark.parametrize(
    ("method", "threshold", "columns"),
    [
        ("wasserstein", None, ["amount", "amount_nan", "visits", "rating"]),
        ("ks", 0.01, ["amount", "amount_nan", "visits", "rating"]),
        # numbers with > 20 distinct reference values are binned (sturges), the rest compared value by value
        ("jensenshannon", None, ["amount", "amount_nan", "visits", "rating", "plan", "is_senior"]),
        ("psi", 0.05, ["amount", "amount_nan", "visits", "rating", "plan", "is_senior"]),
        ("chisquare", None, ["plan", "region", "is_senior"]),
        ("z", None, ["region", "is_senior"]),
    ],
)
def test_each_explicit_method_matches_evidently_on_all_rows(method, threshold, columns):
    reference, current = _mixed(5000, 7), _mixed(4000, 8, shift=0.3)
    kwargs = {
        "columns": columns,
        "categorical": [c for c in MIXED_CATEGORICAL if c in columns],
        "method": method,
        "threshold": threshold,
    }

    ours = detect_drift(reference, current, **kwargs, html=False)
    _assert_same_decisions(ours, evidently_drift(reference, current, **kwargs))
    assert set(_methods(ours).values()) == {method}
    expected = threshold if threshold is not None else drift._STAT_TESTS[method].default_threshold
    assert {info["threshold"] for info in ours.columns.values()} == {expected}


def test_per_feature_overrides_match_evidently_on_all_rows():
    reference, current = _mixed(5000, 9), _mixed(4000, 10, shift=0.3)
    kwargs = {
        "columns": ["amount", "visits", "rating", "plan", "is_senior"],
        "categorical": ["plan"],
        "method": "psi",
        "threshold": 0.15,
        "per_feature": {
            "amount": {"method": "ks"},  # the global threshold still applies
            "visits": {"threshold": 0.3},  # the global method
            "plan": {"method": "chisquare", "threshold": 0.01},
            "rating": {"method": "auto"},  # Evidently's own choice, with the global threshold
            "is_senior": {"method": None, "threshold": None},  # inherits both
        },
    }

    ours = detect_drift(reference, current, **kwargs, html=False)
    _assert_same_decisions(ours, evidently_drift(reference, current, **kwargs))
    assert {name: (info["method"], info["threshold"]) for name, info in ours.columns.items()} == {
        "amount": ("ks", 0.15),
        "visits": ("psi", 0.3),
        "rating": ("jensenshannon", 0.15),
        "plan": ("chisquare", 0.01),
        "is_senior": ("psi", 0.15),
    }


# --- the HTML report ----------------------------------------------------------------------------------------


@pytest.fixture
def report_runs(monkeypatch):
    """Each Evidently report detect_drift runs: its input frames and Evidently's decisions in it."""
    runs = []
    real = drift._evidently_snapshot

    def recording(reference, current, **kwargs):
        snapshot = real(reference, current, **kwargs)
        per_column, share = drift._read_snapshot(snapshot.dict(), kwargs["columns"])
        runs.append({"reference": reference, "current": current, "columns": per_column, "share": share})
        return snapshot

    monkeypatch.setattr(drift, "_evidently_snapshot", recording)
    return runs


@pytest.mark.parametrize(("reference_rows", "current_rows"), [(3000, 2500), (800, 700)])
def test_a_report_on_all_rows_makes_the_engines_decisions(report_runs, reference_rows, current_rows):
    reference, current = _mixed(reference_rows, 11), _mixed(current_rows, 12, shift=0.5)

    result = detect_drift(reference, current, columns=MIXED, categorical=MIXED_CATEGORICAL)

    assert result.report_rows == reference_rows and "<html" in result.html
    (run,) = report_runs
    assert (len(run["reference"]), len(run["current"])) == (reference_rows, current_rows)
    _assert_same_columns(result.columns, run["columns"])  # the same tests, thresholds, scores and decisions
    assert run["share"] == result.drifted_share


def test_the_report_shows_a_seeded_sample_of_report_rows_per_side(report_runs):
    reference, current = _customers(3000, 1), _customers(800, 2)
    kwargs = {"columns": COLUMNS, "categorical": CATEGORICAL, "report_rows": 1000, "seed": 3}

    first, second = detect_drift(reference, current, **kwargs), detect_drift(reference, current, **kwargs)

    assert (first.reference_rows, first.current_rows, first.report_rows) == (3000, 800, 1000)
    runs = [(len(run["reference"]), len(run["current"])) for run in report_runs]
    assert runs == [(1000, 800), (1000, 800)]
    expected = reference.sample(n=1000, random_state=3)[COLUMNS].reset_index(drop=True)
    for run in report_runs:
        pd.testing.assert_frame_equal(run["reference"], expected)
    # the report tests each column as the decision did, but the decision is on all rows
    assert {c: i["method"] for c, i in report_runs[0]["columns"].items()} == _methods(first)
    assert first.columns == second.columns == detect_drift(reference, current, **kwargs, html=False).columns


def test_html_false_runs_no_report(report_runs):
    result = detect_drift(
        _customers(500, 1), _customers(500, 2), columns=COLUMNS, categorical=CATEGORICAL, html=False
    )
    assert (result.html, result.report_rows, report_runs) == (None, 0, [])


# --- decisions on data --------------------------------------------------------------------------------------


def test_two_samples_of_one_distribution_do_not_drift():
    result = detect_drift(_customers(2000, 1), _customers(2000, 2), columns=COLUMNS, categorical=CATEGORICAL)

    assert isinstance(result, DriftResult)
    assert list(result.columns) == COLUMNS
    assert not any(c["drifted"] for c in result.columns.values())
    assert result.drifted_share == 0.0
    assert result.dataset_drift is False
    assert (result.reference_rows, result.current_rows, result.report_rows) == (2000, 2000, 2000)
    for info in result.columns.values():
        assert set(info) == {"score", "method", "threshold", "drifted"}
        assert isinstance(info["score"], float) and info["method"] and info["threshold"] > 0


def test_a_shifted_number_and_a_new_category_mix_drift():
    reference = _customers(2000, 1)
    current = _customers(2000, 2, charges_shift=20.0, plan_mix=(0.1, 0.3, 0.6))
    result = detect_drift(
        reference, current, columns=COLUMNS, categorical=CATEGORICAL, share_threshold=0.3, html=False
    )

    drifted = {name for name, info in result.columns.items() if info["drifted"]}
    assert drifted == {"charges", "plan"}
    assert result.drifted_share == pytest.approx(0.5)
    assert result.dataset_drift is True
    charges = result.columns["charges"]
    assert charges["method"] == "wasserstein" and charges["score"] >= charges["threshold"]
    # the boolean column went to a categorical test, not a numerical one
    assert result.columns["is_senior"]["method"] == "jensenshannon"


def test_dataset_drift_uses_the_share_threshold():
    reference = _customers(2000, 1)
    current = _customers(2000, 2, charges_shift=20.0)  # one column of four drifts
    low = detect_drift(
        reference, current, columns=COLUMNS, categorical=CATEGORICAL, share_threshold=0.25, html=False
    )
    high = detect_drift(
        reference, current, columns=COLUMNS, categorical=CATEGORICAL, share_threshold=0.3, html=False
    )
    assert (low.drifted_share, low.dataset_drift) == (0.25, True)
    assert (high.drifted_share, high.dataset_drift) == (0.25, False)


DEMO_FEATURES = [
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "contract",
    "payment_method",
    "internet_service",
    "support_calls",
    "num_products",
    "senior_citizen",
    "region",
]
DEMO_CATEGORICAL = ["contract", "payment_method", "internet_service", "region"]


def test_the_drifted_demo_batch_drifts_and_a_fresh_sample_does_not():
    reference = generate_batch(1, rows=20000, seed=7)
    fresh = generate_batch(2, rows=20000, seed=7)
    drifted = generate_batch(4, rows=20000, seed=7, data_drift_from_batch=3)
    kwargs = {"columns": DEMO_FEATURES, "categorical": DEMO_CATEGORICAL, "html": False}

    same = detect_drift(reference, fresh, **kwargs)
    moved = detect_drift(reference, drifted, **kwargs)

    assert (same.drifted_share, same.dataset_drift) == (0.0, False)
    assert moved.dataset_drift is True
    # the columns demo_data shifts (tenure, charges, support calls, internet service) and those derived from them
    assert {"tenure_months", "monthly_charges", "support_calls", "internet_service"} <= {
        name for name, info in moved.columns.items() if info["drifted"]
    }
    assert not moved.columns["region"]["drifted"] and not moved.columns["payment_method"]["drifted"]


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
        "report_rows",
    }
    assert set(data["columns"]) == {"tenure", "plan"}


# --- prediction drift ---------------------------------------------------------------------------------------


def test_score_drift_of_one_score_distribution_is_none():
    rng = np.random.default_rng(0)
    result = score_drift(rng.beta(2, 5, 20000), rng.beta(2, 5, 5000))
    assert result["drifted"] is False and result["psi"] < 0.02
    assert result["wasserstein"] < 0.01
    assert result["reference_mean"] == pytest.approx(2 / 7, abs=0.01)
    assert (result["reference_rows"], result["current_rows"], result["psi_threshold"]) == (20000, 5000, 0.2)


def test_score_drift_of_shifted_scores_is_detected():
    rng = np.random.default_rng(1)
    reference, current = rng.beta(2, 5, 20000), rng.beta(4, 3, 5000)
    result = score_drift(reference, current)
    assert result["drifted"] is True and result["psi"] >= 0.2
    assert result["current_mean"] > result["reference_mean"]
    assert score_drift(reference, current, psi_threshold=100.0)["drifted"] is False


def test_score_drift_psi_is_evidentlys_psi_for_a_numerical_column():
    from evidently.legacy.calculations.stattests import psi_stat_test
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(2)
    for reference, current in [
        (rng.beta(2, 5, 3000), rng.beta(2.5, 5, 2000)),  # binned
        (rng.integers(0, 10, 3000) / 10, rng.integers(0, 12, 2000) / 10),
    ]:  # by value
        theirs = psi_stat_test(pd.Series(reference), pd.Series(current), ColumnType.Numerical, 0.2)
        ours = score_drift(reference, current)
        assert ours["psi"] == pytest.approx(theirs.drift_score, rel=1e-9, abs=1e-12)
        assert ours["drifted"] == theirs.drifted


@pytest.mark.parametrize(
    ("reference", "current", "message"),
    [
        ([], [0.5], "reference_scores is empty"),
        ([0.5], np.array([]), "current_scores is empty"),
        ([0.5, np.nan], [0.5], "reference_scores has 1 scores that are NaN or infinite"),
    ],
)
def test_score_drift_refuses_empty_or_missing_scores(reference, current, message):
    with pytest.raises(ValueError, match=message):
        score_drift(reference, current)


# --- input errors -------------------------------------------------------------------------------------------


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


def test_a_column_with_no_values_on_a_side_is_refused():
    current = _customers(100, 2).assign(charges=np.nan)
    with pytest.raises(ValueError, match="'charges' has no values in the current frame"):
        detect_drift(_customers(100, 1), current, columns=COLUMNS, categorical=CATEGORICAL, html=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"method": "chisquare"},
            r"'tenure' is numerical, and method 'chisquare' applies to categorical columns only",
        ),
        (
            {"per_feature": {"plan": {"method": "wasserstein"}}},
            r"'plan' is categorical, and method 'wasserstein'",
        ),
        ({"method": "kolmogorov"}, r"drift: method 'kolmogorov' is not one of"),
        ({"per_feature": {"charge": {"threshold": 0.2}}}, r"not drift columns: \['charge'\]"),
        (
            {"per_feature": {"charges": {"treshold": 0.2}}},
            r"per_feature\['charges'\] has unknown keys \['treshold'\]",
        ),
        ({"threshold": 0}, r"drift: threshold must be above 0"),
    ],
)
def test_bad_methods_and_overrides_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        detect_drift(
            _customers(100, 1), _customers(100, 2), columns=COLUMNS, categorical=CATEGORICAL, **kwargs
        )


def test_importing_the_module_imports_neither_evidently_nor_scipy():
    code = "import sys, ml_platform.lib.drift; print(sorted(m for m in ('evidently', 'scipy') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
