"""The online feature table after real lifecycles: each entity's row is the feature table's row, and the
champion scores it exactly as it scores the offline row."""

import numpy as np
import pandas as pd
import pytest

from ml_platform.lib.modeling import model_inputs, positive_scores
from ml_platform.resources import ModelRegistry, Warehouse
from ml_platform.runner import run_lifecycle
from ml_platform.serving.online_store import OnlineFeatureStore, UnknownEntityError
from ml_platform.settings import platform_paths
from ml_platform_tests.conftest import write_config

pytestmark = pytest.mark.slow


def offline_rows(ids: list[str]) -> pd.DataFrame:
    """The rows the offline path reads (the whole feature table, as batch_predictions and training do)."""
    table = Warehouse().query("select * from features.churn_features")
    return table.set_index("customer_id", drop=False).loc[ids].reset_index(drop=True)


def test_online_rows_and_scores_equal_the_offline_ones(platform_env, tmp_path):
    config = write_config(tmp_path)
    first = run_lifecycle(config_file=config)
    assert first.success, first.errors
    assert first.assets["online_features"] == "materialized"

    store = OnlineFeatureStore(platform_paths().online_store)  # a long-lived reader, as the service holds
    published = store.published("churn_features")
    assert published == {k: v for k, v in first.outputs["online_features"].items() if k != "path"}
    [batch_one] = published["snapshot_hashes"]
    assert published["rows"] == 3000
    assert "churned" not in published["columns"], "the label is never served"

    model = ModelRegistry().mlflow().sklearn.load_model("models:/churn@champion")
    columns = list(model.feature_names_in_)
    ids = Warehouse().query("select customer_id from features.churn_features using sample reservoir(200 rows) "
                            "repeatable (7)")["customer_id"].tolist()
    online = store.lookup(ids, "churn_features")
    offline = offline_rows(ids)
    assert online["customer_id"].tolist() == ids
    assert set(online["snapshot_hash"]) == {batch_one}
    pd.testing.assert_frame_equal(model_inputs(online, columns), model_inputs(offline, columns), check_exact=True)
    online_scores = positive_scores(model, model_inputs(online, columns), 1)
    assert np.array_equal(online_scores, positive_scores(model, model_inputs(offline, columns), 1))
    # ... and equal to what batch scoring stored for them.
    batch = Warehouse().query("select entity_id, score from serving.batch_predictions").set_index("entity_id")
    assert np.array_equal(online_scores, batch.loc[ids, "score"].to_numpy())

    # Day two: a new batch is republished under the open reader; both days' customers are served.
    second = run_lifecycle(config_file=config)
    assert second.success, second.errors
    republished = store.published("churn_features")
    assert republished["rows"] == 6000 and len(republished["snapshot_hashes"]) == 2
    new_ids = Warehouse().query("select customer_id from features.churn_features where snapshot_hash != ? "
                                "order by customer_id limit 50", [batch_one])["customer_id"].tolist()
    both = ids[:50] + new_ids
    online = store.lookup(both, "churn_features")
    model = ModelRegistry().mlflow().sklearn.load_model("models:/churn@champion")  # may be version 2 now
    columns = list(model.feature_names_in_)
    pd.testing.assert_frame_equal(model_inputs(online, columns), model_inputs(offline_rows(both), columns),
                                  check_exact=True)
    assert np.array_equal(positive_scores(model, model_inputs(online, columns), 1),
                          positive_scores(model, model_inputs(offline_rows(both), columns), 1))
    with pytest.raises(UnknownEntityError) as raised:
        store.lookup([ids[0], "no-such-customer"], "churn_features")
    assert raised.value.missing == ["no-such-customer"]
    store.close()
