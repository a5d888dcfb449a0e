"""The dbt feature project on a real warehouse: `dbt build` turns raw batches into churn_features.

DuckDB (the default profile) always runs; the PostgreSQL profile runs when a server answers at
ML_PLATFORM_PG_HOST (default 127.0.0.1), in a throwaway database that is dropped afterwards.
"""

from __future__ import annotations

import io
import os
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform.lib.demo_data import generate_batch
from ml_platform.settings import DBT_PROJECT_DIR, dbt_executable
from ml_platform_tests.conftest import on_postgres

ROWS = 1500


def raw_batches() -> pd.DataFrame:
    """Batches 1 and 2 as the platform appends them, with batch 2 ingested a second time."""
    frames = []
    for batch, snapshot, hour in ((1, "a" * 64, 6), (2, "b" * 64, 6), (2, "c" * 64, 9)):
        frame = generate_batch(batch, rows=ROWS)
        frame["_snapshot_hash"] = snapshot
        frame["_batch_id"] = f"batch-{batch:04d}"
        frame["_ingested_at"] = pd.Timestamp(2026, 1, batch, hour)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def dbt_build(tmp_path: Path, env: dict[str, str], *args: str) -> None:
    # Target and log paths in tmp_path: parallel runs must not share dbt_project/target. The churn model and its
    # parents, as the platform selects them for the demo config (the diabetes example's source is not here).
    command = [
        dbt_executable(),
        "build",
        "--select",
        "+churn_features",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(tmp_path / "dbt-target"),
        "--log-path",
        str(tmp_path / "dbt-logs"),
        *args,
    ]
    result = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"dbt build failed:\n{result.stdout}\n{result.stderr}"
    assert "PASS=8 WARN=0 ERROR=0" in result.stdout, result.stdout


def check_features(features: pd.DataFrame, raw: pd.DataFrame) -> None:
    # One row per customer; the re-ingested batch 2 keeps its latest copy.
    assert len(features) == 2 * ROWS
    assert features["customer_id"].is_unique
    hashes = features.groupby("batch_id")["snapshot_hash"].unique()
    assert {batch: list(h) for batch, h in hashes.items()} == {
        "batch-0001": ["a" * 64],
        "batch-0002": ["c" * 64],
    }

    expected = raw.drop_duplicates("customer_id", keep="last").set_index("customer_id")
    features = features.set_index("customer_id").loc[expected.index]
    total = expected["total_charges"].fillna(expected["monthly_charges"] * expected["tenure_months"])
    assert expected["total_charges"].isna().any()  # the fill below is exercised
    np.testing.assert_allclose(features["total_charges"], total)
    np.testing.assert_allclose(
        features["avg_charge_per_month"], total / expected["tenure_months"].clip(lower=1)
    )
    np.testing.assert_allclose(
        features["calls_per_tenure_year"],
        expected["support_calls"] * 12 / expected["tenure_months"].clip(lower=1),
    )
    assert (features["is_new_customer"] == (expected["tenure_months"] < 6).astype(int)).all()
    assert (features["churned"] == expected["churned"]).all()
    assert (pd.to_datetime(features["event_date"]) == expected["event_date"]).all()


def test_dbt_build_on_duckdb(tmp_path):
    import duckdb

    raw = raw_batches()
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("create schema raw")
        con.execute("create table raw.churn_batches as select * from raw")

    dbt_build(tmp_path, {"ML_PLATFORM_HOME": str(tmp_path)})

    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        features = con.sql("select * from features.churn_features").df()
        types = dict(
            con.sql(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'features' and table_name = 'churn_features'"
            ).fetchall()
        )
    check_features(features, raw)
    assert types["senior_citizen"] == "BOOLEAN"
    assert types["is_new_customer"] == "INTEGER"
    assert types["avg_charge_per_month"] == "DOUBLE"


@pytest.fixture
def postgres_database():
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    psycopg2 = pytest.importorskip("psycopg2")
    server = {
        "host": os.environ.get("ML_PLATFORM_PG_HOST", "127.0.0.1"),
        "port": int(os.environ.get("ML_PLATFORM_PG_PORT", "5432")),
        "user": os.environ.get("ML_PLATFORM_PG_USER", "postgres"),
        "password": os.environ.get("ML_PLATFORM_PG_PASSWORD", ""),
    }
    try:
        admin = psycopg2.connect(dbname="postgres", connect_timeout=3, **server)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server at {server['host']}:{server['port']}: {exc}")
    admin.autocommit = True
    name = f"mlp_dbt_test_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f"create database {name}")
    try:
        yield psycopg2.connect(dbname=name, **server), name
    finally:
        with admin.cursor() as cur:
            cur.execute(f"drop database if exists {name} with (force)")
        admin.close()


@on_postgres
def test_dbt_build_on_postgres(tmp_path, postgres_database):
    con, name = postgres_database
    raw = raw_batches()
    with con, con.cursor() as cur:
        cur.execute("create schema raw")
        cur.execute(
            "create table raw.churn_batches (customer_id varchar, event_date timestamp, tenure_months bigint, "
            "monthly_charges double precision, total_charges double precision, contract varchar, "
            "payment_method varchar, internet_service varchar, support_calls bigint, num_products bigint, "
            "senior_citizen boolean, region varchar, churned bigint, _snapshot_hash varchar, "
            "_batch_id varchar, _ingested_at timestamp)"
        )
        buffer = io.StringIO(raw.to_csv(index=False, header=False))
        cur.copy_expert("copy raw.churn_batches from stdin with (format csv)", buffer)

    dbt_build(
        tmp_path, {"ML_PLATFORM_HOME": str(tmp_path), "ML_PLATFORM_PG_DBNAME": name}, "--target", "postgres"
    )

    with con, con.cursor() as cur:
        cur.execute("select * from features.churn_features")
        features = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
    con.close()
    check_features(features, raw)
