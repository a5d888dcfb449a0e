"""The platform's default preprocessing refuses free text it would one-hot encode into a column per row."""

import pytest

from ml_platform.config import load_config
from ml_platform.lib.demo_data import generate_batch
from ml_platform.lib.modeling import ModelSpecError, build_pipeline, model_inputs
from ml_platform.settings import PROJECT_ROOT

CONFIG = load_config(PROJECT_ROOT / "ml_platform.yaml")


def test_free_text_as_a_feature_is_refused_with_the_column_and_the_fix():
    frame = generate_batch(1, rows=3000, seed=7)
    X = model_inputs(frame, ["tenure_months", "contract"]).assign(comment=[f"called on day {i}" for i in range(3000)])
    with pytest.raises(ModelSpecError) as refused:
        build_pipeline(CONFIG, X)
    assert str(refused.value) == (
        "data: column 'comment' is text with 3,000 distinct values in its first 3,000 rows, not a category: one-hot "
        "encoded it would add a column per value. Add it to data.exclude_columns, or derive features from it in the "
        "dbt model")

    # A category with many values is still a category: 150 regions among 3,000 customers.
    regions = X.drop(columns="comment").assign(region=[f"region {i % 150}" for i in range(3000)])
    build_pipeline(CONFIG, regions).set_params(model__max_iter=5).fit(regions, frame[CONFIG.data.target])
