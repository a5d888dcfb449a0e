"""The NumPy preprocessing used for serving equals the fitted ColumnTransformer exactly, or is not used."""

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from ml_platform.config import load_config
from ml_platform.lib.demo_data import generate_batch
from ml_platform.lib.modeling import build_pipeline, model_inputs
from ml_platform.serving.fastpath import compile_preprocessing, probe_rows
from ml_platform.serving.schema import RequestSchema
from ml_platform.settings import PROJECT_ROOT

CONFIG = load_config(PROJECT_ROOT / "ml_platform.yaml")
SKIP = {CONFIG.data.target, CONFIG.data.id_column, CONFIG.data.timestamp_column}


@pytest.fixture(scope="module")
def fitted():
    frame = generate_batch(1, rows=2000)
    columns = [c for c in frame.columns if c not in SKIP]
    X = model_inputs(frame, columns)
    pipeline = build_pipeline(CONFIG, X).set_params(model__max_iter=20).fit(X, frame[CONFIG.data.target])
    mlflow_types = {"float64": "double", "int64": "long", "object": "string"}
    schema = RequestSchema.build([(c, mlflow_types[str(X[c].dtype)]) for c in columns], CONFIG)
    return pipeline, X, schema


def _rows(X: pd.DataFrame) -> list[dict]:
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in X.astype(object).to_dict(orient="records")]


def test_the_platform_pipeline_compiles_and_matches_exactly(fitted):
    pipeline, X, schema = fitted
    compiled = compile_preprocessing(pipeline)
    assert compiled is not None
    expected = pipeline[:-1].transform(X)
    assert np.array_equal(compiled.transform(_rows(X)), expected, equal_nan=True)
    # Probe rows: nulls where allowed, every category and an unknown one.
    probes = probe_rows(schema)
    assert any(r["total_charges"] is None for r in probes) and any(r["contract"] == "__unknown__" for r in probes)
    probe_frame = pd.DataFrame(probes, columns=list(X.columns)).astype({c: X[c].dtype for c in X.columns
                                                                       if X[c].dtype != "int64"})
    assert np.array_equal(compiled.transform(probes), pipeline[:-1].transform(probe_frame), equal_nan=True)


@pytest.mark.parametrize("pipeline", [
    Pipeline([("pre", ColumnTransformer([("num", StandardScaler(), ["a"])], remainder="passthrough")),
              ("model", LogisticRegression())]),
    Pipeline([("pre", ColumnTransformer([("num", FunctionTransformer(np.log1p), ["a"])])), ("model", LogisticRegression())]),
    Pipeline([("pre", ColumnTransformer([("cat", OneHotEncoder(handle_unknown="error"), ["b"])])),
              ("model", LogisticRegression())]),
    Pipeline([("model", LogisticRegression())]),
], ids=["remainder-passthrough", "custom-step", "unknown-category-error", "no-preprocessing"])
def test_other_shapes_are_served_by_sklearn_itself(pipeline):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "c": [0.5, 0.1, 0.2, 0.3], "b": ["x", "y", "x", "y"]})
    X = frame[["a", "c"]] if "cat" not in str(pipeline) else frame[["b"]]
    pipeline.fit(X, [0, 1, 0, 1])
    assert compile_preprocessing(pipeline) is None


def test_a_missing_category_is_scored_alike_offline_online_and_by_the_fast_path():
    """The warehouse reads a null string as None; a request sends null. Every path imputes it (the most frequent
    category), as training did: before, training kept None as a category of its own and serving imputed it."""
    from ml_platform.serving.models import LoadedModel

    frame = generate_batch(1, rows=2000)
    frame["contract"] = frame["contract"].astype(object)
    frame.loc[frame.index % 10 == 0, "contract"] = None  # as DuckDB and Parquet hand a null text value to pandas
    columns = [c for c in frame.columns if c not in SKIP]
    X = model_inputs(frame, columns)
    assert X["contract"].isna().sum() == 200 and not any(v is None for v in X["contract"])
    pipeline = build_pipeline(CONFIG, X).set_params(model__max_iter=20).fit(X, frame[CONFIG.data.target])
    offline = pipeline.predict_proba(X)[:, 1]

    mlflow_types = {"float64": "double", "int64": "long", "object": "string"}
    contract = CONFIG.data.columns["contract"].model_copy(update={"max_null_fraction": 0.2})
    nullable = CONFIG.model_copy(update={"data": CONFIG.data.model_copy(
        update={"columns": {**CONFIG.data.columns, "contract": contract}})})
    schema = RequestSchema.build([(c, mlflow_types[str(X[c].dtype)]) for c in columns], nullable)
    rows = _rows(X)
    assert rows[0]["contract"] is None
    fast = compile_preprocessing(pipeline)
    by_sklearn = LoadedModel("m", "1", pipeline, schema, 1, {}).predict(rows)[0]
    by_fast_path = LoadedModel("m", "1", pipeline, schema, 1, {}, fast=fast).predict(rows)[0]
    np.testing.assert_allclose(by_sklearn, offline, rtol=0, atol=1e-12)
    np.testing.assert_allclose(by_fast_path, offline, rtol=0, atol=1e-12)
    imputed = X.iloc[[0]].assign(contract=pipeline[0].named_transformers_["categorical"][0].statistics_[0])
    assert offline[0] == pipeline.predict_proba(imputed)[0, 1]  # the null scored as the most frequent category
