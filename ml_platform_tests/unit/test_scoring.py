"""Batch scoring as a pure function: deterministic ids, the version on every row, chunking changes nothing."""

import threading
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from ml_platform.lib.demo_data import generate_batch
from ml_platform.lib.modeling import model_inputs
from ml_platform.lib.scoring import PREDICTION_COLUMNS, prediction_ids, read_ahead_of, score_chunks

COLUMNS = ["tenure_months", "monthly_charges", "support_calls", "num_products", "senior_citizen"]
SCORED_AT = datetime(2026, 1, 2, 3, 4, 5)


@pytest.fixture(scope="module")
def batch() -> pd.DataFrame:
    return generate_batch(1, rows=1000, seed=11)


@pytest.fixture(scope="module")
def model(batch):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=500).fit(model_inputs(batch, COLUMNS), batch["churned"])


def score(model, chunks, **overrides):
    kwargs = {"columns": COLUMNS, "positive_label": 1, "id_column": "customer_id", "model_name": "churn",
              "model_version": "3", "snapshot_hash": "abc123", "scored_at": SCORED_AT, **overrides}
    return list(score_chunks(model, chunks, **kwargs))


def in_chunks(frame: pd.DataFrame, rows: int) -> list[pd.DataFrame]:
    return [frame.iloc[start:start + rows].reset_index(drop=True) for start in range(0, len(frame), rows)]


def test_prediction_ids_are_the_ones_batch_scoring_has_always_made(batch):
    entities = pd.concat([pd.Series(["x", "", "é"]), batch["customer_id"]], ignore_index=True)
    hashes = pd.util.hash_pandas_object(entities + "|abc123", index=False).to_numpy()
    before = np.char.add("churn-v3-", np.char.zfill(np.char.mod("%x", hashes), 16))
    ids = prediction_ids(entities.to_numpy(), model_name="churn", model_version="3", snapshot_hash="abc123")
    assert ids.tolist() == before.tolist()
    assert all(len(i) == len("churn-v3-") + 16 for i in ids)


def test_prediction_ids_depend_on_entity_batch_and_version():
    one = prediction_ids(["a", "b"], model_name="churn", model_version="3", snapshot_hash="s1")
    assert one.tolist() == prediction_ids(["a", "b"], model_name="churn", model_version="3",
                                          snapshot_hash="s1").tolist()
    assert len(set(one)) == 2
    assert not set(one) & set(prediction_ids(["a", "b"], model_name="churn", model_version="3", snapshot_hash="s2"))
    other_version = prediction_ids(["a"], model_name="churn", model_version="4", snapshot_hash="s1")[0]
    assert other_version.startswith("churn-v4-") and other_version[-16:] == one[0][-16:]


def test_every_row_carries_the_model_version_and_its_batch(batch, model):
    (frame,) = score(model, [batch])
    assert list(frame.columns) == list(PREDICTION_COLUMNS)
    assert len(frame) == len(batch)
    assert frame["model_version"].tolist() == ["3"] * len(batch)
    assert set(frame["model_name"]) == {"churn"} and set(frame["snapshot_hash"]) == {"abc123"}
    assert set(frame["scored_at"]) == {pd.Timestamp(SCORED_AT)}
    assert frame["entity_id"].tolist() == batch["customer_id"].tolist()
    assert frame["prediction_id"].is_unique
    assert frame["prediction_id"].str.startswith("churn-v3-").all()


def test_scores_are_the_positive_class_column_of_predict_proba(batch, model):
    (frame,) = score(model, [batch])
    proba = model.predict_proba(model_inputs(batch, COLUMNS))
    np.testing.assert_array_equal(frame["score"].to_numpy(), proba[:, list(model.classes_).index(1)])
    (negative,) = score(model, [batch], positive_label=0)
    np.testing.assert_array_equal(negative["score"].to_numpy(), proba[:, list(model.classes_).index(0)])


@pytest.mark.parametrize("id_column", ["customer_id", None])
def test_scoring_in_chunks_gives_what_scoring_in_one_chunk_gives(batch, model, id_column):
    whole = pd.concat(score(model, [batch], id_column=id_column), ignore_index=True)
    chunked = score(model, in_chunks(batch, 97), id_column=id_column)
    assert [len(c) for c in chunked] == [len(c) for c in in_chunks(batch, 97)]
    pd.testing.assert_frame_equal(pd.concat(chunked, ignore_index=True), whole)


def test_without_an_id_column_rows_are_numbered_across_chunks(batch, model):
    chunked = pd.concat(score(model, in_chunks(batch.head(10), 4), id_column=None), ignore_index=True)
    assert chunked["entity_id"].tolist() == [str(i) for i in range(10)]


def test_empty_chunks_give_no_rows(batch, model):
    frames = score(model, [batch.head(0), batch.head(5), batch.head(0)])
    assert [len(f) for f in frames] == [5]
    assert score(model, []) == []


def test_reading_ahead_in_a_thread_gives_the_rows_reading_in_turn_gives(batch, model):
    in_turn = pd.concat(score(model, in_chunks(batch, 97), read_ahead=0), ignore_index=True)
    ahead = pd.concat(score(model, in_chunks(batch, 97), read_ahead=3), ignore_index=True)
    pd.testing.assert_frame_equal(ahead, in_turn)


def test_an_error_while_reading_ahead_reaches_the_caller(batch, model):
    def failing():
        yield batch.head(10)
        raise OSError("warehouse went away")

    with pytest.raises(OSError, match="warehouse went away"):
        score(model, failing())


def test_stopping_early_stops_the_reading_thread_and_closes_the_source(batch, model):
    closed = threading.Event()

    def source():
        try:
            yield from in_chunks(batch, 50)
        finally:
            closed.set()

    frames = score_chunks(model, source(), columns=COLUMNS, positive_label=1, id_column="customer_id",
                          model_name="churn", model_version="3", snapshot_hash="abc123", read_ahead=1)
    assert len(next(frames)) == 50
    frames.close()
    assert closed.is_set()
    assert not any(t.name == "read-ahead" for t in threading.enumerate())


def test_items_read_ahead_keep_their_order():
    assert list(read_ahead_of(range(1000), depth=4)) == list(range(1000))
    assert list(read_ahead_of([], depth=1)) == []
