"""The warehouse resource on a real DuckDB file and on the real PostgreSQL server: appends are idempotent,
nothing stored is overwritten, and both engines give the same frames."""

import pandas as pd
import pyarrow as pa
import pytest

from ml_platform.lib.snapshots import write_snapshot
from ml_platform.resources import Warehouse
from ml_platform_tests.conftest import on_postgres


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=on_postgres)])
def warehouse(request, tmp_path):
    """The embedded warehouse (a DuckDB file) and the production one (a fresh PostgreSQL database)."""
    if request.param == "duckdb":
        return Warehouse(url=str(tmp_path / "w.duckdb"))
    return Warehouse(url=request.getfixturevalue("postgres_database"))


def predictions(ids, score):
    return pd.DataFrame({"prediction_id": ids, "entity_id": ids, "model_name": "m", "model_version": "1",
                         "snapshot_hash": "s", "score": score, "scored_at": pd.Timestamp("2026-01-01")})


def test_predictions_already_stored_are_kept_as_they_are(warehouse, tmp_path):
    assert warehouse.write_predictions([predictions(["a", "b"], 0.1), predictions(["c"], 0.2)]) == 3
    assert warehouse.write_predictions([predictions(["b", "c", "d"], 0.9)]) == 1  # only d is new
    stored = warehouse.query("select prediction_id, score from serving.batch_predictions order by 1")
    assert stored.to_dict(orient="list") == {"prediction_id": ["a", "b", "c", "d"], "score": [0.1, 0.1, 0.2, 0.9]}


def test_a_batch_is_appended_once(warehouse, tmp_path):
    snap = write_snapshot(pd.DataFrame({"id": ["x", "y"], "v": [1, 2]}), tmp_path / "snaps")
    first = warehouse.append_batch("raw.t_batches", snap.path, snap.sha256, "b1", ["id", "v"])
    again = warehouse.append_batch("raw.t_batches", snap.path, snap.sha256, "b1", ["id", "v"])
    assert (first["appended_rows"], again["appended_rows"], again["total_rows"]) == (2, 0, 2)
    assert warehouse.ingested_batch_ids("raw.t_batches") == ["b1"]


def test_a_column_the_contract_does_not_declare_stays_in_the_snapshot_only(warehouse, tmp_path):
    """A batch that adds a column passes the contract (extra columns are allowed); the table keeps the contract's
    columns, so the append does not fail on a column the table lacks (it did: 'Current transaction is aborted')."""
    first = write_snapshot(pd.DataFrame({"id": ["x", "y"], "v": [1, 2]}), tmp_path / "snaps")
    wider = write_snapshot(pd.DataFrame({"id": ["z"], "Region": ["EU"], "v": [3]}), tmp_path / "snaps")
    assert warehouse.append_batch("raw.t_batches", first.path, first.sha256, "b1", ["id", "v"])["columns_not_stored"] == []
    added = warehouse.append_batch("raw.t_batches", wider.path, wider.sha256, "b2", ["id", "v"])
    assert (added["appended_rows"], added["total_rows"], added["columns_not_stored"]) == (1, 3, ["Region"])
    stored = warehouse.query("select * from raw.t_batches order by id")
    assert list(stored.columns[:2]) == ["id", "v"] and "Region" not in stored.columns
    assert stored["v"].tolist() == [1, 2, 3]


def test_a_model_version_lineage_is_recorded_once(warehouse, tmp_path):
    record = {"model_name": "m", "version": "1", "run_id": "r", "data_snapshot_sha256": "s",
              "data_snapshot_path": "p", "feature_code_version": "f", "feature_table": "t", "config_sha256": "c",
              "config_json": "{}", "git_commit": "g", "seed": "1", "split_rule": "hash(id)"}
    warehouse.record_model_version(record)
    with pytest.raises(Exception, match="(?i)constraint"):
        warehouse.record_model_version({**record, "run_id": "other"})
    assert warehouse.query("select run_id from registry.model_versions")["run_id"].tolist() == ["r"]


def test_a_query_read_in_chunks_gives_the_frames_a_whole_query_gives(tmp_path):
    warehouse = Warehouse(url=str(tmp_path / "w.duckdb"))
    with warehouse.connect() as con:
        # Arrow's pandas conversion differs from DuckDB's for nulls, dates and decimals; iter_query matches DuckDB's.
        con.execute("""create table t as select range::integer as i,
                       case when range % 3 = 0 then null else range end as nullable_int,
                       range % 2 = 0 as flag, case when range % 5 = 0 then null else range % 2 = 0 end as nullable_flag,
                       date '2026-01-01' + range::integer as day, (range / 7)::decimal(10, 2) as amount,
                       case when range % 4 = 0 then null else 'c' || range end as name, range * 0.5 as x,
                       range::float as x32, range::hugeint as big, timestamp '2026-01-01' + to_seconds(range) as at,
                       '2026-01-01 10:00:00'::timestamp_s as at_s, '2026-01-01 10:00:00.1'::timestamp_ns as at_ns
                       from range(1000)""")
        # A type Arrow converts differently (an interval) is read through DuckDB's own conversion.
        con.execute("create table u as select range as i, interval 1 day * range as wait from range(5000)")
    for table, rows in (("t", 300), ("u", 2048)):
        chunks = list(warehouse.iter_query(f"select * from {table} where i >= ?", [0], chunk_rows=rows))
        assert [len(c) for c in chunks[:-1]] == [rows] * (len(chunks) - 1)
        whole = warehouse.query(f"select * from {table}")
        pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)


def test_predictions_are_written_while_their_features_are_read(warehouse):
    with warehouse.connect() as con:
        con.execute("create schema if not exists features")
        con.insert_arrow("features.f", pa.table({"id": [f"c{i}" for i in range(2500)], "s": [i * 0.001 for i in range(2500)]}),
                         create=True)
    chunks = warehouse.iter_query("select id, s from features.f", chunk_rows=1000)
    written = warehouse.write_predictions(predictions(c["id"], c["s"]) for c in chunks)
    assert written == 2500


def test_a_batch_of_predictions_is_stored_whole_or_not_at_all(warehouse, tmp_path):

    def failing():
        yield predictions(["a", "b"], 0.1)
        raise RuntimeError("scoring failed")

    with pytest.raises(RuntimeError, match="scoring failed"):
        warehouse.write_predictions(failing())
    assert warehouse.query("select count(*) as n from serving.batch_predictions")["n"].tolist() == [0]


@on_postgres
def test_both_engines_give_the_same_frames(tmp_path, postgres_database):
    """What the platform stores and reads back (nulls, dates, booleans, text) has the same dtypes and values on
    PostgreSQL as on DuckDB, whole or in chunks: every stage downstream sees one kind of frame."""
    snapshot = write_snapshot(pd.DataFrame({
        "customer_id": ["a", "b", "c", "d"], "event_date": pd.to_datetime(["2026-01-01", "2026-01-02", None, "2026-01-04"]),
        "tenure": pd.array([1, None, 3, 4], dtype="Int32"), "charges": [1.5, None, 2.5, 3.0],
        "senior": [True, False, True, False], "contract": ["x", None, "y", "x"], "churned": [0, 1, 0, 1],
    }), tmp_path / "snaps")
    frames = {}
    for name, warehouse in (("duckdb", Warehouse(url=str(tmp_path / "w.duckdb"))), ("postgres", Warehouse(url=postgres_database))):
        warehouse.append_batch("raw.t_batches", snapshot.path, snapshot.sha256, "b1",
                               ["customer_id", "event_date", "tenure", "charges", "senior", "contract", "churned"])
        sql = "select customer_id, event_date, tenure, charges, senior, contract, churned from raw.t_batches order by 1"
        whole = warehouse.query(sql)
        pd.testing.assert_frame_equal(pd.concat(list(warehouse.iter_query(sql, chunk_rows=3)), ignore_index=True), whole)
        frames[name] = whole
    pd.testing.assert_frame_equal(frames["postgres"], frames["duckdb"])
