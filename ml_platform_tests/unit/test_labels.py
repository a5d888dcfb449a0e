"""Late label files: each bad batch is refused with an error naming the file, the problem, counts and examples;
a good one resolves to one row per labelled prediction with the prediction's day (the SQL on a real DuckDB)."""

import datetime

import duckdb
import pandas as pd
import pytest

from ml_platform.config import load_config
from ml_platform.lib.labels import (
    LABEL_COLUMNS,
    LabelError,
    known_predictions_query,
    label_keys,
    parse_label_file,
    read_label_file,
    resolve_labels,
)
from ml_platform_tests.conftest import DEMO_CONFIG

DATA = load_config(DEMO_CONFIG, check_imports=False).data  # target churned, labels [0, 1], id customer_id
NOW = pd.Timestamp("2026-02-01 12:00:00")


def predictions(*rows: tuple[str, str, str]) -> pd.DataFrame:
    """Logged predictions (prediction_id, entity_id, day) of model churn."""
    return pd.DataFrame([{"prediction_id": pid, "entity_id": entity, "model_name": "churn", "model_version": "1",
                          "source": "batch", "score": 0.25, "prediction_day": pd.Timestamp(day)}
                         for pid, entity, day in rows])


KNOWN = predictions(("churn-v1-a", "C1", "2026-01-01"), ("churn-v1-b", "C2", "2026-01-01"),
                    ("churn-v1-c", "C3", "2026-01-02"), ("web-1", "C3", "2026-01-05"))
NOTHING_STORED = pd.DataFrame({"prediction_id": [], "label": [], "file_name": []}, dtype=object)


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def resolve(tmp_path, name: str, text: str, stored: pd.DataFrame = NOTHING_STORED):
    labels = read_label_file(write(tmp_path, name, text), DATA)
    return resolve_labels(labels, KNOWN, stored, file=name, file_sha256="f" * 64, model_name="churn", data=DATA,
                          ingested_at=NOW)


def test_labels_by_entity_and_by_prediction_id_become_one_row_per_labelled_prediction(tmp_path):
    resolved = resolve(tmp_path, "labels.csv", "customer_id,churned,labeled_at\nC1,1,2026-01-20\nC3,0,\n")
    rows = resolved.new.set_index("prediction_id")
    assert list(resolved.new.columns) == list(LABEL_COLUMNS)
    # C3 was scored in a batch and served online: its label labels both predictions.
    assert sorted(rows.index) == ["churn-v1-a", "churn-v1-c", "web-1"]
    assert rows.loc["churn-v1-a", "label"] == "1" and rows.loc["churn-v1-a", "is_positive"]
    assert rows.loc["web-1", "label"] == "0" and not rows.loc["web-1", "is_positive"]
    assert rows.loc["churn-v1-c", "prediction_day"] == datetime.date(2026, 1, 2)
    assert rows.loc["churn-v1-a", "labeled_at"] == pd.Timestamp("2026-01-20")
    assert rows.loc["churn-v1-c", "labeled_at"] == NOW  # no labeled_at: when it was ingested
    assert (resolved.file_rows, resolved.already_stored) == (2, 0)

    by_id = resolve(tmp_path, "by-id.csv", "prediction_id,customer_id,churned\nchurn-v1-b,C2,0\n")
    assert by_id.new["prediction_id"].tolist() == ["churn-v1-b"]


def test_unknown_ids_are_refused_with_counts_and_examples(tmp_path):
    with pytest.raises(LabelError) as refused:
        resolve(tmp_path, "late.csv", "customer_id,churned\nC1,1\nC9,0\nC8,1\nC7,1\nC6,0\n")
    message = str(refused.value)
    assert message.startswith("label file late.csv: ")
    assert "unknown ids: no logged prediction of model 'churn' matches 4 customer_id values" in message
    assert "'C9', 'C8', 'C7' ..." in message

    with pytest.raises(LabelError, match=r"unknown ids: .* matches 1 prediction id \(e.g. 'churn-v9-x'\)"):
        resolve(tmp_path, "late2.csv", "prediction_id,churned\nchurn-v1-a,1\nchurn-v9-x,0\n")


def test_duplicate_labels_in_the_file_are_refused(tmp_path):
    with pytest.raises(LabelError, match=r"duplicate labels: 1 customer_id value labelled more than once in the "
                                         r"file: 'C1' \(rows 1, 3\)"):
        resolve(tmp_path, "twice.csv", "customer_id,churned\nC1,1\nC2,0\nC1,0\n")
    # The same prediction named once by its id and once by its entity.
    with pytest.raises(LabelError, match=r"1 prediction labelled twice in the file, by prediction id and by "
                                         r"customer_id: 'churn-v1-a' \(rows 1, 2\)"):
        resolve(tmp_path, "both.csv", "prediction_id,customer_id,churned\nchurn-v1-a,,1\n,C1,1\n")


def test_a_label_conflicting_with_a_stored_one_is_refused_and_an_identical_one_is_a_redelivery(tmp_path):
    stored = pd.DataFrame({"prediction_id": ["churn-v1-a"], "label": ["1"], "file_name": ["labels-0001.csv"]})
    with pytest.raises(LabelError, match=r"duplicate labels: a different label is already stored for 1 prediction "
                                         r"\('churn-v1-a': 1 from labels-0001.csv, here 0 \(row 1\)\)"):
        resolve(tmp_path, "again.csv", "customer_id,churned\nC1,0\n", stored)
    redelivered = resolve(tmp_path, "same.csv", "customer_id,churned\nC1,1\nC2,0\n", stored)
    assert redelivered.new["prediction_id"].tolist() == ["churn-v1-b"]
    assert redelivered.already_stored == 1


def test_labels_outside_the_configured_target_values_are_refused(tmp_path):
    with pytest.raises(LabelError) as refused:
        resolve(tmp_path, "values.csv", "customer_id,churned\nC1,1\nC2,yes\nC3,2\nC1,2\n")
    assert "churned labels outside data.labels [0, 1] on 3 rows: '2' (2 rows), 'yes' (1 row)" in str(refused.value)
    with pytest.raises(LabelError, match=r"no churned label on 1 row \(rows 2\)"):
        resolve(tmp_path, "blank.csv", "customer_id,churned\nC1,1\nC2,\n")


def test_every_problem_of_a_file_is_reported_in_one_error(tmp_path):
    labels, problems = parse_label_file(write(tmp_path, "mixed.csv", "customer_id,churned\nC1,7\nC9,0\nC2,1\n"), DATA)
    with pytest.raises(LabelError) as refused:
        resolve_labels(labels, KNOWN, NOTHING_STORED, file="mixed.csv", file_sha256="f" * 64, model_name="churn",
                       data=DATA, ingested_at=NOW, problems=problems)
    assert refused.value.problems == [
        "churned labels outside data.labels [0, 1] on 1 row: '7' (1 row)",
        "unknown ids: no logged prediction of model 'churn' matches 1 customer_id value (e.g. 'C9'): label only "
        "predictions that were scored or served"]


def test_a_file_with_zero_rows_is_refused(tmp_path):
    with pytest.raises(LabelError, match=r"^label file header.csv: has a header but no rows$"):
        resolve(tmp_path, "header.csv", "customer_id,churned\n")
    with pytest.raises(LabelError, match=r"^label file empty.csv: is empty \(0 bytes\)$"):
        resolve(tmp_path, "empty.csv", "")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(LabelError, match=r"^label file broken.parquet: could not be read as parquet"):
        read_label_file(broken, DATA)


def test_a_file_missing_the_id_or_target_column_is_refused(tmp_path):
    with pytest.raises(LabelError) as refused:
        resolve(tmp_path, "noid.csv", "customer,churned\nC1,1\n")
    assert ("no id column: expected 'prediction_id' or 'customer_id' (data.id_column) (did you mean 'customer'?); "
            "its columns are ['customer', 'churned']") in str(refused.value)
    with pytest.raises(LabelError, match=r"no 'churned' column \(data.target\) \(did you mean 'churn'\?\)"):
        resolve(tmp_path, "notarget.csv", "customer_id,churn\nC1,1\n")


def test_parquet_labels_and_a_bad_labeled_at(tmp_path):
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"customer_id": ["C2"], "churned": [1]}).to_parquet(path)
    assert read_label_file(path, DATA)[["entity_id", "label"]].values.tolist() == [["C2", 1]]
    with pytest.raises(LabelError, match=r"labeled_at is not a date or time on 1 row \(e.g. 'soon'\)"):
        resolve(tmp_path, "when.csv", "customer_id,churned,labeled_at\nC1,1,soon\n")


def test_the_prediction_day_is_the_batch_event_day_else_the_scored_or_logged_date():
    con = duckdb.connect()
    con.execute("create schema serving; create schema features")
    con.execute("""create table serving.batch_predictions as select * from (values
        ('churn-v1-a', 'C1', 'churn', '1', 'snap1', 0.9, timestamp '2026-03-01 10:00'),
        ('churn-v1-b', 'C2', 'churn', '1', 'snap1', 0.2, timestamp '2026-03-01 10:00'),
        ('other-v1-a', 'C1', 'other', '1', 'snap1', 0.5, timestamp '2026-03-01 10:00'))
        t(prediction_id, entity_id, model_name, model_version, snapshot_hash, score, scored_at)""")
    # C2's row is gone from the feature table (rebuilt since): its day falls back to the scoring date.
    con.execute("""create table features.churn_features as select * from (values
        ('C1', date '2026-01-07', 'snap1'), ('C1', date '2026-01-09', 'snap0'))
        t(customer_id, event_date, snapshot_hash)""")
    con.execute("""create table serving.prediction_log as select * from (values
        ('web-1', timestamp '2026-03-04 23:59', 'C1', 'churn', '2', 'champion', 0.7),
        ('web-1', timestamp '2026-03-04 23:59', 'C1', 'churn', '3', 'shadow', 0.1))
        t(prediction_id, logged_at, entity_id, model_name, model_version, variant, score)""")
    keys = label_keys(pd.DataFrame({"prediction_id": [None, None], "entity_id": ["C1", "C2"]})).astype("string")
    con.register("label_keys", keys)
    sql = known_predictions_query(batch_table="serving.batch_predictions", log_table="serving.prediction_log",
                                  feature_table="features.churn_features", id_column="customer_id",
                                  timestamp_column="event_date")
    found = con.execute(sql, ["churn", "churn"]).df().sort_values("prediction_id")
    assert found[["prediction_id", "source", "model_version"]].values.tolist() == [
        ["churn-v1-a", "batch", "1"], ["churn-v1-b", "batch", "1"], ["web-1", "online", "2"]]  # no shadow
    assert [d.date() for d in found["prediction_day"]] == [
        datetime.date(2026, 1, 7), datetime.date(2026, 3, 1), datetime.date(2026, 3, 4)]

    no_timestamp = known_predictions_query(batch_table="serving.batch_predictions", log_table=None,
                                           feature_table="features.churn_features", id_column="customer_id",
                                           timestamp_column=None)
    days = con.execute(no_timestamp, ["churn"]).df()["prediction_day"]
    assert {d.date() for d in days} == {datetime.date(2026, 3, 1)}


# -- a regression's labels are its true values ------------------------------------------------------------
REGRESSION = load_config(DEMO_CONFIG.parent / "docs" / "examples" / "diabetes" / "ml_platform.yaml",
                         check_imports=False).data  # target progression, id patient_id, no labels


def test_a_regression_label_is_its_true_value_as_text_with_no_positive_label(tmp_path):
    known = predictions(("diabetes-v1-a", "P1", "2026-01-01"), ("diabetes-v1-b", "P2", "2026-01-01"))
    labels = read_label_file(write(tmp_path, "outcomes.csv", "patient_id,progression\nP1,151\nP2,75.50\n"),
                             REGRESSION)
    resolved = resolve_labels(labels, known, NOTHING_STORED, file="outcomes.csv", file_sha256="f" * 64,
                              model_name="diabetes", data=REGRESSION, ingested_at=NOW)
    rows = resolved.new.set_index("prediction_id")
    # Text, so that 75.50 from one file and 75.5 from another are the same label.
    assert rows["label"].to_dict() == {"diabetes-v1-a": "151", "diabetes-v1-b": "75.5"}
    assert rows["is_positive"].isna().all()

    stored = pd.DataFrame({"prediction_id": ["diabetes-v1-a"], "label": ["151"], "file_name": ["outcomes.csv"]})
    again = resolve_labels(read_label_file(write(tmp_path, "again.csv", "patient_id,progression\nP1,151.0\n"),
                                           REGRESSION), known, stored, file="again.csv", file_sha256="e" * 64,
                           model_name="diabetes", data=REGRESSION, ingested_at=NOW)
    assert (len(again.new), again.already_stored) == (0, 1)  # a re-delivery, not a conflict


def test_a_regression_label_that_is_not_a_number_is_refused(tmp_path):
    with pytest.raises(LabelError) as refused:
        read_label_file(write(tmp_path, "words.csv", "patient_id,progression\nP1,151\nP2,high\nP3,inf\nP4,\n"),
                        REGRESSION)
    assert refused.value.problems == [
        "no progression label on 1 row (rows 4)",
        "progression is not a finite number on 2 rows (rows 2, 3, e.g. 'high', 'inf'): a regression's label is "
        "the true value"]


def test_a_label_file_saved_by_excel_in_europe_reads_as_a_plain_one(tmp_path):
    """Semicolons, a decimal comma, cp1252: the same labels as the plain file, with nothing to configure."""
    known = predictions(("diabetes-v1-a", "Pé1", "2026-01-01"), ("diabetes-v1-b", "P2", "2026-01-01"))

    def labels_of(name: str, text: str, encoding: str) -> dict:
        (tmp_path / name).write_bytes(text.encode(encoding))
        resolved = resolve_labels(read_label_file(tmp_path / name, REGRESSION), known, NOTHING_STORED, file=name,
                                  file_sha256="f" * 64, model_name="diabetes", data=REGRESSION, ingested_at=NOW)
        return resolved.new.set_index("prediction_id")["label"].to_dict()

    plain = labels_of("plain.csv", "patient_id,progression\nPé1,151\nP2,75.50\n", "utf-8")
    assert plain == {"diabetes-v1-a": "151", "diabetes-v1-b": "75.5"}
    assert labels_of("excel.csv", "patient_id;progression\nPé1;151\nP2;75,50\n", "cp1252") == plain


def test_labeled_at_is_read_as_the_file_writes_dates_and_an_ambiguous_one_is_refused(tmp_path):
    """31.12.2025 is the 31st of December; 01/02/2026 with no day above 12 could be either month: refused, not guessed."""
    resolved = resolve(tmp_path, "de.csv", "customer_id;churned;labeled_at\nC1;1;02.01.2026\nC2;0;31.12.2025\n")
    stamps = resolved.new.set_index("prediction_id")["labeled_at"]
    assert stamps["churn-v1-a"] == pd.Timestamp("2026-01-02") and stamps["churn-v1-b"] == pd.Timestamp("2025-12-31")

    with pytest.raises(LabelError) as refused:
        read_label_file(write(tmp_path, "us.csv", "customer_id,churned,labeled_at\nC1,1,01/02/2026\nC2,0,03/04/2026\n"),
                        DATA)
    assert refused.value.problems == ["labeled_at cannot tell day from month (e.g. '01/02/2026' fits both %d/%m/%Y "
                                      "and %m/%d/%Y): write it as 2026-12-31"]
