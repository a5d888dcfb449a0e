"""Runs as builds, on the real Dagster instance, dbt, DuckDB and MLflow: unchanged inputs and code recompute
nothing; new training params retrain without re-ingesting; params set back reuse the version trained with them
(a cache hit); a changed dbt feature model recomputes that model and what depends on it; what Dagster shows as
stale is what the next run recomputes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ml_platform.lib.demo_data import generate_batch
from ml_platform.resources import ModelRegistry, Warehouse
from ml_platform.runner import dagster_instance, load_definitions, run_lifecycle
from ml_platform.settings import DBT_PROJECT_DIR, PROJECT_ROOT
from ml_platform_tests.conftest import write_config

pytestmark = pytest.mark.slow

UPSTREAM_OF_TRAINING = ("raw_batch", "validated_batches", "features/stg_churn_batches", "features/churn_features",
                        "training_data")


def _stale(keys: list[str]) -> dict[str, str]:
    """What the Dagster UI shows for each asset (the same resolver): FRESH, STALE or MISSING."""
    import dagster as dg
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._time import get_current_datetime

    graph = load_definitions().resolve_asset_graph()
    with dagster_instance() as instance:
        view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                              instance=instance, asset_graph=graph)
        resolver = CachingStaleStatusResolver(instance, graph, view)
        return {k: resolver.get_status(dg.AssetKey.from_user_string(k)).value for k in keys}


def test_unchanged_inputs_recompute_nothing_and_new_params_retrain_without_reingesting(platform_env, tmp_path):
    generate_batch(1, rows=3000, seed=7).to_parquet(tmp_path / "batch.parquet")
    source = {"data": {"source": {"kind": "file", "path": "batch.parquet"}}}
    config = write_config(tmp_path, source)
    first = run_lifecycle(config_file=config)
    assert first.success, first.errors
    assert first.outputs["trained_model"]["version"] == "1"
    # dbt's parse of the project is kept in the home for the next build (defs/features/assets.py).
    assert (platform_env / "dbt" / "partial_parse.msgpack").is_file()

    again = run_lifecycle(config_file=config)
    assert again.success and again.run_id == "", "nothing to recompute: no run at all"
    assert set(again.assets.values()) == {"unchanged"}
    assert again.unchanged["trained_model"]["model_version"] == "1"
    assert again.unchanged["raw_batch"]["snapshot_sha256"] == first.outputs["raw_batch"]["sha256"]

    # New training params: Dagster shows training stale (its code version covers the config it reads), not ingestion.
    config = write_config(tmp_path, {**source, "training": {"estimator": {"params": {"max_iter": 120}}}})
    stale = _stale([*UPSTREAM_OF_TRAINING, "trained_model"])
    assert stale == {**{k: "FRESH" for k in UPSTREAM_OF_TRAINING}, "trained_model": "STALE"}, stale
    retrained = run_lifecycle(config_file=config)
    assert retrained.success, retrained.errors
    assert {k: retrained.assets[k] for k in UPSTREAM_OF_TRAINING} == {k: "unchanged" for k in UPSTREAM_OF_TRAINING}
    assert retrained.assets["trained_model"] == "materialized"
    trained = retrained.outputs["trained_model"]
    assert (trained["version"], trained["cache_hit"]) == ("2", False)

    # Back to the first params: the version trained with them is reused, no fit, no new version.
    config = write_config(tmp_path, source)
    back = run_lifecycle(config_file=config)
    assert back.success, back.errors
    assert back.outputs["trained_model"]["version"] == "1" and back.outputs["trained_model"]["cache_hit"] is True
    assert back.outputs["model_evaluation"]["metrics"] == first.outputs["model_evaluation"]["metrics"]
    assert len(ModelRegistry().versions("churn")) == 2

    # A changed dbt feature model: that model and what depends on it, not ingestion or staging.
    dbt_copy = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, dbt_copy, ignore=shutil.ignore_patterns("target", "logs"))
    model = dbt_copy / "models" / "features" / "churn_features.sql"
    model.write_text(model.read_text().replace("tenure_months < 6 then 1", "tenure_months < 3 then 1"))
    shown = subprocess.run([sys.executable, "-m", "ml_platform.cli", "--config", str(config), "run", "--json"],
                           capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600,
                           env={**os.environ, "ML_PLATFORM_DBT_PROJECT_DIR": str(dbt_copy)})
    assert shown.returncode == 0, shown.stderr[-3000:]
    changed = json.loads(shown.stdout)["assets"]
    assert {k: changed[k] for k in ("raw_batch", "validated_batches", "features/stg_churn_batches")} == \
        {k: "unchanged" for k in ("raw_batch", "validated_batches", "features/stg_churn_batches")}
    assert {k: changed[k] for k in ("features/churn_features", "training_data", "trained_model")} == \
        {k: "materialized" for k in ("features/churn_features", "training_data", "trained_model")}
    # ... with the changed SQL, although that build started from the parse kept for the unchanged project.
    [(wrong, new_customers)] = Warehouse().query(
        "select sum(case when is_new_customer <> (case when tenure_months < 3 then 1 else 0 end) then 1 else 0 end),"
        " sum(is_new_customer) from features.churn_features").itertuples(index=False)
    assert wrong == 0 and new_customers > 0


def test_a_run_launched_from_the_ui_leaves_nothing_for_the_next_cli_run_to_redo(platform_env, tmp_path):
    """The `lifecycle` job run whole, as the UI's launchpad, the daily schedule or a sensor starts it (not through
    `ml-platform run`, which observes the sources first): its first steps observe the sources, so its
    materializations name the batch they hold. Before, they named the batch observed last, and the next
    `ml-platform run` recomputed the whole lifecycle on the data that run had just processed."""
    generate_batch(1, rows=3000, seed=7).to_parquet(tmp_path / "batch.parquet")
    config = write_config(tmp_path, {"data": {"source": {"kind": "file", "path": "batch.parquet"}}})
    assert run_lifecycle(config_file=config).success

    generate_batch(2, rows=3000, seed=7).to_parquet(tmp_path / "batch.parquet")  # the next export arrives
    whole_job = run_lifecycle(config_file=config, incremental=False)
    assert whole_job.success, whole_job.errors
    assert whole_job.assets["raw_batch"] == "materialized"
    assert set(_stale(["raw_batch", "training_data", "trained_model"]).values()) == {"FRESH"}
    after = run_lifecycle(config_file=config)
    assert after.success and after.run_id == "", f"recomputed: {after.assets}"


def test_assets_materialized_from_the_asset_graph_leave_nothing_for_the_next_cli_run_to_redo(platform_env, tmp_path):
    """The asset graph's "Materialize all" runs the assets without observing the sources first. Each asset that
    reads a source records the version it read, so its materialization names the export it holds: before, it
    named the export observed last, and the next `ml-platform run` ingested the same file again and recomputed
    everything after it."""
    generate_batch(1, rows=3000, seed=7).to_parquet(tmp_path / "batch.parquet")
    config = write_config(tmp_path, {"data": {"source": {"kind": "file", "path": "batch.parquet"}}})
    assert run_lifecycle(config_file=config).success

    generate_batch(2, rows=3000, seed=7).to_parquet(tmp_path / "batch.parquet")  # the next export arrives
    every_asset = [k.to_user_string() for k in load_definitions().resolve_asset_graph().materializable_asset_keys]
    from_the_graph = run_lifecycle(config_file=config, selection=every_asset)
    assert from_the_graph.success, from_the_graph.errors
    assert from_the_graph.assets["raw_batch"] == "materialized"
    after = run_lifecycle(config_file=config)
    assert after.success and after.run_id == "", f"recomputed: {after.assets}"


def test_a_chosen_demo_batch_run_whole_does_not_hide_the_next_batch(platform_env, tmp_path):
    """`ml-platform run --all --batch 1` (the whole job, its sources observed by its first steps) ingests batch 1
    again, while the source's own observation names the batch after the last one: batch 2. The ingestion now
    records batch 1 as what it read. Before, it named batch 2, and the next plain run took batch 2 for ingested
    and skipped it."""
    config = write_config(tmp_path)
    first = run_lifecycle(config_file=config)
    assert first.success and first.outputs["raw_batch"]["batch_id"] == "demo-0001"
    again = run_lifecycle(config_file=config, batch="1", incremental=False)
    assert again.success, again.errors
    assert again.outputs["raw_batch"]["batch_id"] == "demo-0001"
    after = run_lifecycle(config_file=config)
    assert after.success, after.errors
    assert after.assets.get("raw_batch") == "materialized" and after.outputs["raw_batch"]["batch_id"] == "demo-0002"


def test_a_warehouse_table_source_is_ingested_once_per_content(platform_env, tmp_path):
    """`data.source.kind: table`: the table is the batch. The same rows again recompute nothing; new rows in the
    table are the next batch. The ingestion names the rows it read (a hash of them) without reading the table a
    second time."""
    config = write_config(tmp_path, {"data": {"source": {"kind": "table", "table": "landing.customers"}}})
    warehouse = Warehouse()

    def load(batch: int) -> None:
        with warehouse.connect() as con:
            con.register("batch", generate_batch(batch, rows=3000, seed=7))
            con.execute("create schema if not exists landing")
            con.execute("create or replace table landing.customers as select * from batch")

    load(1)
    first = run_lifecycle(config_file=config)
    assert first.success, first.errors
    assert first.outputs["raw_batch"]["rows"] == 3000 and first.outputs["raw_batch"]["batch_id"] == "landing.customers"
    again = run_lifecycle(config_file=config)
    assert again.success and again.run_id == "", f"recomputed: {again.assets}"

    load(2)
    after = run_lifecycle(config_file=config)
    assert after.success, after.errors
    assert after.assets["raw_batch"] == "materialized" and after.outputs["raw_batch"]["sha256"] != first.outputs["raw_batch"]["sha256"]


def test_a_training_window_trains_on_the_last_days_and_changing_it_retrains(platform_env, tmp_path):
    import pandas as pd

    from ml_platform.lib.snapshots import read_snapshot

    # Three days of customers in one export: event dates 2026-01-01 to 2026-01-03.
    days = pd.concat([generate_batch(day, rows=2000, seed=7) for day in (1, 2, 3)], ignore_index=True)
    days.to_parquet(tmp_path / "export.parquet")
    source = {"data": {"source": {"kind": "file", "path": "export.parquet"}}}
    config = write_config(tmp_path, {**source, "training": {"window_days": 2}})
    windowed = run_lifecycle(config_file=config)
    assert windowed.success, windowed.errors
    training = windowed.outputs["training_data"]
    trained_on = read_snapshot(Path(training["path"]), training["sha256"])
    assert sorted(trained_on["event_date"].dt.strftime("%Y-%m-%d").unique()) == ["2026-01-02", "2026-01-03"]
    assert len(trained_on) == 4000
    assert training["window"] == ("the last 2 day(s) of event_date: 2026-01-02 to 2026-01-03, 2000 other row(s) "
                                  "left out")
    version = windowed.outputs["trained_model"]["version"]
    assert ModelRegistry().client().get_model_version("churn", version).tags["training_window"] == training["window"]
    from ml_platform.status import model_status

    assert model_status()["champion"]["lineage"]["training_window"] == training["window"]  # `ml-platform status`

    # All history again: the window is part of training_data's code version, so Dagster shows it stale (not the
    # ingestion or the features), and the run trains a new version on every row.
    config = write_config(tmp_path, source)
    stale = _stale([*UPSTREAM_OF_TRAINING])
    assert stale == {**{k: "FRESH" for k in UPSTREAM_OF_TRAINING[:-1]}, "training_data": "STALE"}, stale
    everything = run_lifecycle(config_file=config)
    assert everything.success, everything.errors
    assert everything.outputs["training_data"]["rows"] == 6000
    assert everything.outputs["training_data"]["window"] == "all rows"
    assert everything.outputs["trained_model"]["version"] != version
