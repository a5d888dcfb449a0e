"""The online feature store on a real SQLite file: what goes in comes out, row for row and dtype for dtype."""

import sqlite3
import threading

import duckdb
import numpy as np
import pandas as pd
import pytest

from ml_platform.defs.serving.online import latest_rows_query
from ml_platform.lib.modeling import model_inputs
from ml_platform.resources import Warehouse
from ml_platform.serving.online_store import OnlineFeatureStore, OnlineStoreError, UnknownEntityError


def feature_rows(n: int = 50, snapshot: str = "s1") -> pd.DataFrame:
    """A feature table as DuckDB hands it to pandas: int32, nullable Int32 and boolean where NULLs occur,
    None for missing strings, datetime64[us] for dates."""
    return duckdb.sql(f"""
        select 'C' || lpad(i::varchar, 4, '0') as customer_id,
               date '2026-01-01' + i::integer as event_date,
               '{snapshot}' as snapshot_hash, 'demo-0001' as batch_id,
               i::integer as tenure_months,
               case when i % 5 = 0 then null else i % 7 end::integer as support_calls,
               i / 3.0 :: double as monthly_charges,
               case when i % 4 = 0 then null else i * 0.1 end::double as total_charges,
               case when i % 6 = 0 then null else ['dsl', 'fiber', 'none'][1 + i % 3] end as internet_service,
               i % 2 = 0 as senior_citizen,
               case when i % 3 = 0 then null else i % 2 = 1 end as paperless,
               i::bigint * 1000000000007 as big_count
        from range(1, {n + 1}) t(i)""").df()


@pytest.fixture
def store(tmp_path):
    store = OnlineFeatureStore(tmp_path / "online" / "features.sqlite")
    yield store
    store.close()


def test_a_lookup_returns_the_published_rows_in_the_order_asked_with_their_dtypes(store):
    frame = feature_rows()
    assert {str(t) for t in frame.dtypes} >= {"int32", "Int32", "float64", "bool", "boolean", "object",
                                               "datetime64[us]", "int64"}, "the fixture covers DuckDB's dtypes"
    store.publish(frame, id_column="customer_id", table="churn_features")

    asked = ["C0030", "C0001", "C0030", "C0012"]  # a repeat is answered twice
    found = store.lookup(asked, "churn_features")

    expected = frame.set_index("customer_id", drop=False).loc[asked].reset_index(drop=True)
    pd.testing.assert_frame_equal(found, expected, check_exact=True)
    assert found["internet_service"].tolist()[0] is None, "a missing string is None, as DuckDB gives it"
    assert found.loc[0, "support_calls"] is pd.NA
    # Everything at once (more ids than one statement binds) comes back the same way.
    every = frame["customer_id"].tolist()[::-1] * 20
    pd.testing.assert_frame_equal(store.lookup(every, "churn_features"),
                                  pd.concat([frame.iloc[::-1]] * 20, ignore_index=True), check_exact=True)


def test_model_inputs_online_equal_model_inputs_offline(store):
    frame = feature_rows()
    store.publish(frame, id_column="customer_id", table="churn_features")
    columns = ["tenure_months", "support_calls", "monthly_charges", "total_charges", "internet_service",
               "senior_citizen", "paperless"]
    online = model_inputs(store.lookup(frame["customer_id"].tolist(), "churn_features"), columns)
    offline = model_inputs(frame, columns)
    pd.testing.assert_frame_equal(online, offline, check_exact=True)
    assert online["senior_citizen"].dtype == "float64", "booleans reach the model as 0/1 floats"


def test_unknown_ids_are_named_in_the_error(store):
    store.publish(feature_rows(), id_column="customer_id", table="churn_features")
    with pytest.raises(UnknownEntityError, match=r"2 id\(s\) not in the online table 'churn_features'") as raised:
        store.lookup(["C0001", "nobody", "C0002", "ghost", "nobody"], "churn_features")
    assert raised.value.missing == ["nobody", "ghost"]
    assert isinstance(raised.value, LookupError)


def test_empty_lookup_has_the_published_columns_and_dtypes(store):
    frame = feature_rows()
    store.publish(frame, id_column="customer_id", table="churn_features")
    empty = store.lookup([], "churn_features")
    assert empty.empty
    assert empty.dtypes.to_dict() == frame.dtypes.to_dict()


def test_a_missing_store_or_table_says_what_to_run(store):
    with pytest.raises(OnlineStoreError, match="does not exist yet: materialize the online_features asset"):
        store.lookup(["C0001"], "churn_features")
    assert store.published("churn_features") is None
    store.publish(feature_rows(), id_column="customer_id", table="other_features")
    with pytest.raises(OnlineStoreError, match="'churn_features' is not published"):
        store.lookup(["C0001"], "churn_features")


def test_publish_records_what_it_published(store):
    frame = pd.concat([feature_rows(10, "s1"), feature_rows(20, "s2").iloc[10:]], ignore_index=True)
    record = store.publish(frame, id_column="customer_id", table="churn_features")
    assert record == store.published("churn_features")
    assert (record["rows"], record["snapshot_hashes"], record["id_column"]) == (20, ["s1", "s2"], "customer_id")
    assert record["columns"]["support_calls"] == "Int32" and record["columns"]["event_date"] == "datetime64[us]"
    assert len(record["content_sha256"]) == 64 and record["published_at"].endswith("+00:00")


def test_republishing_replaces_the_table_whole_and_the_same_rows_give_the_same_digest(store):
    first = store.publish(feature_rows(50, "s1"), id_column="customer_id", table="churn_features")
    again = store.publish(feature_rows(50, "s1").iloc[::-1], id_column="customer_id", table="churn_features")
    assert again["content_sha256"] == first["content_sha256"], "the digest does not depend on row order"

    newer = feature_rows(30, "s2")
    store.publish(newer, id_column="customer_id", table="churn_features")
    assert store.lookup(["C0030"], "churn_features")["snapshot_hash"].tolist() == ["s2"]
    with pytest.raises(UnknownEntityError):
        store.lookup(["C0031"], "churn_features")  # rows not in the new frame are gone, not left behind
    with sqlite3.connect(store.path) as con:
        tables = sorted(r[0] for r in con.execute("select name from sqlite_master where type = 'table'"))
        assert tables == ["_published", "churn_features"], "no staging table is left behind"
        assert con.execute("select count(*) from _published").fetchone() == (1,)
        assert con.execute("pragma journal_mode").fetchone() == ("wal",)


def test_a_failed_publish_leaves_the_published_table_as_it_was(store):
    store.publish(feature_rows(50, "s1"), id_column="customer_id", table="churn_features")
    broken = feature_rows(50, "s2")
    broken["internet_service"] = broken["internet_service"].astype(object)
    broken.loc[3, "internet_service"] = 3.5  # not a string: refused before anything is written
    with pytest.raises(OnlineStoreError, match="'internet_service' holds mixed values"):
        store.publish(broken, id_column="customer_id", table="churn_features")
    duplicated = pd.concat([feature_rows(5, "s2"), feature_rows(5, "s2")])
    with pytest.raises(OnlineStoreError, match="5 customer_id\\(s\\) have more than one row"):
        store.publish(duplicated, id_column="customer_id", table="churn_features")
    assert store.published("churn_features")["snapshot_hashes"] == ["s1"]
    assert store.lookup(["C0050"], "churn_features")["snapshot_hash"].tolist() == ["s1"]


def test_readers_see_the_old_table_or_the_new_one_never_a_part(store):
    """Lookups of every id, on other threads, while the table is republished over and over: each answer
    comes whole from one publish (all rows of one snapshot), and no lookup fails."""
    versions = [feature_rows(2000, f"s{i}") for i in range(2)]
    store.publish(versions[0], id_column="customer_id", table="churn_features")
    ids = versions[0]["customer_id"].tolist()
    seen, errors, done = [], [], threading.Event()

    def read():
        try:
            while not done.is_set():
                seen.append(frozenset(store.lookup(ids, "churn_features")["snapshot_hash"]))
        except Exception as exc:  # any failure is the finding
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    writer = OnlineFeatureStore(store.path)  # as the Dagster run does, in its own process
    for i in range(1, 7):
        writer.publish(versions[i % 2], id_column="customer_id", table="churn_features")
    done.set()
    for reader in readers:
        reader.join()
    assert errors == []
    assert seen and set(seen) <= {frozenset({"s0"}), frozenset({"s1"})}


def test_latest_rows_query_keeps_the_newest_event_then_the_latest_batch(tmp_path):
    warehouse = Warehouse(url=str(tmp_path / "w.duckdb"))
    with warehouse.connect() as con:
        con.execute("create schema features")
        con.execute("""create table features.f as select * from (values
            ('a', date '2026-01-02', 'demo-0001', 'h1', 1),
            ('a', date '2026-01-03', 'demo-0002', 'h2', 2),  -- newest event
            ('b', date '2026-01-05', 'demo-0003', 'h3', 3),
            ('b', date '2026-01-05', 'demo-0004', 'h4', 4),  -- same event time, later batch
            ('c', null,              'demo-0009', 'h9', 5),
            ('c', date '2026-01-01', 'demo-0001', 'h1', 6))  -- an event time beats none
            t(customer_id, event_date, batch_id, snapshot_hash, x)""")
    columns = ["customer_id", "event_date", "batch_id", "snapshot_hash", "x"]
    latest = warehouse.query(latest_rows_query("features.f", "customer_id", columns, "event_date"))
    assert dict(zip(latest["customer_id"], latest["x"], strict=True)) == {"a": 2, "b": 4, "c": 6}
    assert latest["customer_id"].tolist() == ["a", "b", "c"]  # in key order: SQLite appends to its index
    # Without an event time, the latest batch wins.
    latest = warehouse.query(latest_rows_query("features.f", "customer_id", columns, None))
    assert dict(zip(latest["customer_id"], latest["x"], strict=True)) == {"a": 2, "b": 4, "c": 5}


def test_floats_round_trip_exactly(store):
    values = np.array([0.1, 1 / 3, np.nextafter(1.0, 2.0), 1e-300, 1.7976931348623157e308, 123456789.12345679,
                       -0.0, np.nan])
    frame = pd.DataFrame({"id": [f"e{i}" for i in range(len(values))], "x": values})
    store.publish(frame, id_column="id", table="floats")
    found = store.lookup(frame["id"].tolist(), "floats")["x"].to_numpy()
    assert found.tobytes()[:-16] == values.tobytes()[:-16], "bit for bit, up to the last two"
    # SQLite keeps -0.0 as 0: equal in every comparison and sum a model makes, only its sign bit differs.
    assert found[-2] == 0.0 and np.isnan(found[-1])
