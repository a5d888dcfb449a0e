"""Late labels on a real home: batches scored by a champion trained before a concept drift, their labels
dropped into the landing folder days later, the live metric decaying per day, and a sustained SLO breach
starting exactly one gated retraining; a bad label file is rejected without touching the stored labels."""

import datetime

import pytest

from ml_platform.config import load_config
from ml_platform.lib.demo_data import write_late_labels
from ml_platform.resources import Warehouse
from ml_platform.runner import run_lifecycle, tick_sensor
from ml_platform.settings import LABELS_TABLE, LIVE_PERFORMANCE_TABLE
from ml_platform_tests.conftest import write_config

pytestmark = pytest.mark.slow

# The daily path: ingest, validate, features, score with the champion as it is, late labels; no training.
DAILY = ["raw_batch", "validated_batches", "features/stg_churn_batches", "features/churn_features",
         "batch_predictions", "late_labels", "live_performance"]
LABELS_ONLY = ["late_labels", "live_performance"]
# Day 1 also trains the champion; the drift reports are left out: they have their own tests and cost ~10 s.
FIRST_DAY = [*DAILY, "training_data", "trained_model", "model_evaluation", "champion_model"]


def test_late_labels_show_concept_drift_and_a_sustained_breach_starts_one_retraining(platform_env, tmp_path):
    config = write_config(tmp_path, {
        "data": {"source": {"demo": {"concept_drift_from_batch": 2}}},
        "performance": {"floor": 0.7, "window_days": 1, "consecutive_days": 2, "min_labels": 500},
    })
    demo = load_config(config, check_imports=False).data.source.demo
    generated_as = {"rows": demo.rows_per_batch, "seed": demo.seed, "data_drift_from_batch": demo.data_drift_from_batch,
                    "concept_drift_from_batch": demo.concept_drift_from_batch}
    landing = platform_env / "landing" / "labels"
    warehouse = Warehouse()

    # Day 1: the champion (v1) is trained and scores batch 1. No labels yet: nothing to judge.
    first = run_lifecycle(config_file=config, selection=FIRST_DAY)
    assert first.success, first.errors
    assert first.outputs["champion_model"]["champion_version"] == "1"
    assert first.outputs["late_labels"]["new_labels"] == 0
    assert first.outputs["live_performance"]["days"] == []

    # Day 2 (concept drift from here): batch 2 scored by v1; batch 1's labels arrive.
    write_late_labels(landing, 1, **generated_as)
    second = run_lifecycle(config_file=config, selection=DAILY)
    assert second.success, second.errors
    assert second.outputs["late_labels"]["new_labels"] == 3000
    assert not (landing / "labels-0001.csv").exists() and (landing / "ingested" / "labels-0001.csv").exists()

    # Day 3: batch 2's labels show the decay, on one day: no breach and no retraining yet.
    write_late_labels(landing, 2, **generated_as)
    third = run_lifecycle(config_file=config, selection=DAILY)
    assert third.success, third.errors
    live = third.outputs["live_performance"]
    assert (live["streak"], live["sustained_breach"]) == (1, False)
    assert third.checks["live_performance:live_metric_slo"]["passed"]
    assert tick_sensor("performance_sensor") == [], "one bad day starts nothing"

    # Batch 3's labels arrive with a bad file (an unknown customer, a label that is no churn value). The bad file
    # is rejected and nothing stored changes; the run goes on, and the second judged day below the floor makes a
    # sustained breach since day 2.
    stored_before = warehouse.query(f"select * from {LABELS_TABLE} order by prediction_id")
    (landing / "labels-bad.csv").write_text("customer_id,churned\nC0003-0000001,1\nC9999-0000001,0\nC0003-0000002,7\n")
    write_late_labels(landing, 3, **generated_as)
    breached = run_lifecycle(config_file=config, selection=LABELS_ONLY)
    assert breached.success, breached.errors
    assert not breached.checks["late_labels:label_files_accepted"]["passed"]
    assert "C9999-0000001" in breached.checks["late_labels:label_files_accepted"]["metadata"]["failures"]
    ingested = breached.outputs["late_labels"]
    assert [f["file"] for f in ingested["ingested"]] == ["labels-0003.csv"] and ingested["new_labels"] == 3000
    [rejected] = ingested["rejected"]
    assert "unknown ids" in rejected["error"] and "outside data.labels" in rejected["error"]
    assert (landing / "rejected" / "labels-bad.csv").exists()
    assert "C9999-0000001" in (landing / "rejected" / "labels-bad.csv.error.txt").read_text()
    stored = warehouse.query(f"select * from {LABELS_TABLE} order by prediction_id")
    assert stored[stored["file_name"] != "labels-0003.csv"].reset_index(drop=True).equals(stored_before)
    assert "labels-bad.csv" not in set(stored["file_name"])
    alerts = warehouse.query("select kind, title from governance.alerts")
    assert any(k == "label_rejected" and "labels-bad.csv" in t for k, t in alerts.itertuples(index=False))

    live = breached.outputs["live_performance"]
    assert (live["sustained_breach"], live["breach_started"], live["streak"]) == (True, "2026-01-02", 2)
    assert not breached.checks["live_performance:live_metric_slo"]["passed"]
    assert "below the floor 0.7 on 2 judged days since 2026-01-02" in \
        breached.checks["live_performance:live_metric_slo"]["metadata"]["failures"]
    days = warehouse.query(f"select day, labelled_rows, daily_metric, below_floor from {LIVE_PERFORMANCE_TABLE} "
                           "where model_name = 'churn' order by day")
    assert [d.date() for d in days["day"]] == [datetime.date(2026, 1, d) for d in (1, 2, 3)]
    assert days["labelled_rows"].tolist() == [3000, 3000, 3000]
    before, *after = days["daily_metric"].tolist()
    assert before >= 0.7 > max(after), days  # v1 was good on its own concept, below the floor after the drift
    assert days["below_floor"].tolist() == [False, True, True]
    assert "slo_breach" in set(warehouse.query("select kind from governance.alerts")["kind"])

    # The performance sensor starts exactly one gated retraining for the breach, and never a second one.
    [retraining] = tick_sensor("performance_sensor")
    assert retraining.success
    tags = retraining.dagster_run.tags
    assert (tags["ml_platform/trigger"], tags["ml_platform/breach_started"]) == ("performance", "2026-01-02")
    assert tags["dagster/run_key"] == "performance-churn-2026-01-02"
    assert retraining.output_for_node("champion_model")["challenger_version"] == "2"
    assert tick_sensor("performance_sensor") == [], "the same breach never starts a second retraining"
