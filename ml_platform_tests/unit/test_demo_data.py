"""The demo churn generator: deterministic, on contract, and its drift switches really drift."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pytest

from ml_platform.config import load_config
from ml_platform.lib.demo_data import COLUMNS, generate_batch, write_batches
from ml_platform.settings import PROJECT_ROOT

DTYPE_BY_CONTRACT_TYPE = {
    "string": "object",
    "category": "object",
    "date": "datetime64[ns]",
    "integer": "int64",
    "number": "float64",
    "boolean": "bool",
}
FEATURES = [c for c in COLUMNS if c not in ("customer_id", "event_date", "churned")]


@pytest.fixture(scope="module")
def contract():
    return load_config(PROJECT_ROOT / "ml_platform.yaml", check_imports=False).data.columns


def test_same_arguments_give_the_same_frame():
    kwargs = dict(rows=800, seed=11, data_drift_from_batch=2, concept_drift_from_batch=3)
    pd.testing.assert_frame_equal(generate_batch(3, **kwargs), generate_batch(3, **kwargs))


def test_batches_and_seeds_differ():
    first = generate_batch(1, rows=800)
    assert not first["monthly_charges"].equals(generate_batch(2, rows=800)["monthly_charges"])
    assert not first["monthly_charges"].equals(generate_batch(1, rows=800, seed=8)["monthly_charges"])


def test_columns_and_dtypes_are_the_contract(contract):
    frame = generate_batch(1, rows=500)
    assert list(frame.columns) == list(contract)
    expected = {name: DTYPE_BY_CONTRACT_TYPE[col.type] for name, col in contract.items()}
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == expected


@pytest.mark.parametrize(
    "switches",
    [{}, {"data_drift_from_batch": 1}, {"concept_drift_from_batch": 1}],
    ids=["plain", "data-drift", "concept-drift"],
)
def test_values_respect_the_contract(contract, switches):
    frame = generate_batch(2, rows=20_000, **switches)
    for name, col in contract.items():
        values = frame[name]
        assert values.isna().mean() <= col.max_null_fraction, name
        present = values.dropna()
        if col.min is not None:
            assert present.min() >= col.min, name
        if col.max is not None:
            assert present.max() <= col.max, name
        if col.allowed is not None:
            assert set(present.unique()) == set(col.allowed), name
    assert set(frame["churned"].unique()) == {0, 1}


def test_total_charges_has_some_nulls_and_nothing_else_does():
    frame = generate_batch(1, rows=50_000)
    assert 0.01 < frame["total_charges"].isna().mean() < 0.03
    assert frame.drop(columns="total_charges").notna().all().all()


def test_rates_are_realistic():
    frame = generate_batch(1, rows=50_000)
    assert 0.2 <= frame["churned"].mean() <= 0.3
    assert 0.14 <= frame["senior_citizen"].mean() <= 0.18
    assert (frame["monthly_charges"] == frame["monthly_charges"].round(2)).all()


def test_ids_are_unique_across_batches_and_dates_follow_the_batch():
    frames = [generate_batch(b, rows=1000, start_date=datetime.date(2026, 3, 30)) for b in (1, 2, 3)]
    ids = pd.concat([f["customer_id"] for f in frames])
    assert ids.is_unique
    assert frames[0]["customer_id"].iloc[0] == "C0001-0000001"
    assert [f["event_date"].unique().tolist() for f in frames] == [
        [pd.Timestamp("2026-03-30")],
        [pd.Timestamp("2026-03-31")],
        [pd.Timestamp("2026-04-01")],
    ]


def test_data_drift_shifts_the_features_from_its_batch_on():
    plain = generate_batch(4, rows=20_000)
    drifted = generate_batch(4, rows=20_000, data_drift_from_batch=4)
    assert drifted["monthly_charges"].mean() - plain["monthly_charges"].mean() > 20
    assert drifted["support_calls"].mean() > 1.8 * plain["support_calls"].mean()
    fiber_share = {
        name: (f["internet_service"] == "fiber").mean() for name, f in (("plain", plain), ("drift", drifted))
    }
    assert fiber_share["drift"] > fiber_share["plain"] + 0.2
    assert drifted["tenure_months"].mean() < 0.75 * plain["tenure_months"].mean()
    # Batches before the switch are untouched.
    pd.testing.assert_frame_equal(
        generate_batch(3, rows=500, data_drift_from_batch=4), generate_batch(3, rows=500)
    )


def test_concept_drift_changes_only_the_label():
    plain = generate_batch(5, rows=5000)
    drifted = generate_batch(5, rows=5000, concept_drift_from_batch=5)
    pd.testing.assert_frame_equal(drifted.drop(columns="churned"), plain.drop(columns="churned"))
    assert (drifted["churned"] != plain["churned"]).mean() > 0.15
    assert 0.15 <= drifted["churned"].mean() <= 0.35


def test_concept_drift_costs_a_model_trained_before_it_its_auc():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    def features(frame: pd.DataFrame) -> pd.DataFrame:
        x = frame[FEATURES].copy()
        for name in ("contract", "payment_method", "internet_service", "region"):
            x[name] = x[name].astype("category")
        return x

    train = pd.concat([generate_batch(b, rows=4000) for b in (1, 2)])
    model = HistGradientBoostingClassifier(max_iter=100, categorical_features="from_dtype", random_state=0)
    model.fit(features(train), train["churned"])

    def auc(frame: pd.DataFrame) -> float:
        return roc_auc_score(frame["churned"], model.predict_proba(features(frame))[:, 1])

    before = auc(generate_batch(3, rows=4000))
    after = auc(generate_batch(3, rows=4000, concept_drift_from_batch=3))
    assert 0.78 <= before <= 0.9
    assert after < before - 0.1


def test_write_batches_names_files_by_batch(tmp_path):
    parquet = write_batches(tmp_path / "p", [1, 2], rows=300)
    csv = write_batches(tmp_path / "c", range(3, 4), fmt="csv", rows=300, seed=3)
    assert [p.name for p in parquet] == ["batch-0001.parquet", "batch-0002.parquet"]
    assert [p.name for p in csv] == ["batch-0003.csv"]
    pd.testing.assert_frame_equal(pd.read_parquet(parquet[1]), generate_batch(2, rows=300))
    from_csv = pd.read_csv(csv[0], parse_dates=["event_date"])
    assert np.allclose(from_csv["monthly_charges"], generate_batch(3, rows=300, seed=3)["monthly_charges"])


@pytest.mark.parametrize("kwargs", [{"batch": 0}, {"batch": 1, "rows": 0}])
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError, match="must be 1 or more"):
        generate_batch(**kwargs)


def test_write_batches_rejects_an_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="'parquet' or 'csv'"):
        write_batches(tmp_path, [1], fmt="json")
