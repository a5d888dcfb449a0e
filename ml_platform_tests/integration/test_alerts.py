"""Alerts on the real things: a webhook receiver on loopback (answering as told), the DuckDB warehouse
of a temporary ML_PLATFORM_HOME, the MLflow registry for a rollback, and real failing Dagster runs
evaluated by the run failure sensor."""

from __future__ import annotations

import json
import logging
import socket
import time

import dagster as dg
import pandas as pd
import pytest

from ml_platform.defs.alerts.sensors import run_failure_alert
from ml_platform.resources import Alerts, Governance, ModelRegistry, Warehouse
from ml_platform.settings import ALERTS_TABLE, PROJECT_ROOT
from ml_platform_tests.conftest import WebhookReceiver, write_config

RUNBOOKS = PROJECT_ROOT / "docs" / "operations"
FAST = {"attempts": 3, "backoff_seconds": 0.05, "group_minutes": 60}


@pytest.fixture
def alerts(platform_env, tmp_path, monkeypatch) -> Alerts:
    """The Alerts resource on this test's home, with quick retries; no webhook unless a test sets one."""
    monkeypatch.setenv("ML_PLATFORM_CONFIG", str(write_config(tmp_path, {"alerts": FAST})))
    monkeypatch.setenv("ML_PLATFORM_DAGSTER_UI_URL", "http://dagster.test:3000")
    monkeypatch.delenv("ML_PLATFORM_ALERT_WEBHOOK_URL", raising=False)
    return Alerts(warehouse=Warehouse())


def table() -> pd.DataFrame:
    return Warehouse().query(f"select * from {ALERTS_TABLE} order by sent_at")


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/team-channel"  # nothing listens there any more


def gate_rejection(alerts: Alerts, **kwargs) -> dict:
    return alerts.send(
        "gate_rejection", "churn v7 rejected by the promotion gate",
        {"failed": ["calibration error 0.1400 > 0.1"], "roc_auc": 0.812345, "champion": "v6 unchanged"},
        links={"dagster_run": "http://dagster.test:3000/runs/r-123", "mlflow_version": "http://mlflow.test/v7"},
        **kwargs)


def test_the_channel_receives_what_fired_the_evidence_the_links_and_the_runbook(alerts, webhook_receiver,
                                                                                monkeypatch):
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK_URL", webhook_receiver.url)
    result = gate_rejection(alerts)
    assert (result["status"], result["delivered"], result["attempts"]) == ("delivered", True, 1)
    [message] = webhook_receiver.messages
    lines = message["text"].splitlines()
    assert lines[0] == "[WARNING] churn v7 rejected by the promotion gate"
    assert lines[1] == "kind: gate_rejection · model: churn"
    assert "• failed: calibration error 0.1400 > 0.1" in lines and "• roc_auc: 0.8123" in lines
    assert "• Dagster run: http://dagster.test:3000/runs/r-123" in lines
    assert "• MLflow version: http://mlflow.test/v7" in lines
    assert lines[-1] == f"Runbook: {RUNBOOKS / 'gate-rejection.md'}"
    [row] = table().to_dict(orient="records")
    assert (row["kind"], row["status"], row["model_name"], row["attempts"], row["delivered"]) == \
        ("gate_rejection", "delivered", "churn", 1, True)
    assert json.loads(row["links"])["mlflow_version"] == "http://mlflow.test/v7"
    assert json.loads(row["details"])["roc_auc"] == 0.812345
    assert row["runbook"] == str(RUNBOOKS / "gate-rejection.md") and row["group_key"] == \
        "gate_rejection:churn v7 rejected by the promotion gate"


def test_runbooks_link_to_the_configured_base_url(alerts, tmp_path, monkeypatch):
    config = write_config(tmp_path, {"alerts": {**FAST, "runbook_base_url": "https://wiki.example.com/ops"}},
                          name="wiki.yaml")
    monkeypatch.setenv("ML_PLATFORM_CONFIG", str(config))
    result = alerts.send("canary_rollback", "churn v8: canary rolled back", {"reasons": "error rate +5%"})
    assert result["runbook"] == "https://wiki.example.com/ops/rollback.md#the-canary-was-rolled-back"


def test_delivery_is_retried_with_backoff_until_the_channel_answers(alerts, monkeypatch):
    with WebhookReceiver(statuses=[500, 500]) as receiver:
        monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK_URL", receiver.url)
        started = time.monotonic()
        result = gate_rejection(alerts)
        elapsed = time.monotonic() - started
    assert (result["status"], result["attempts"], result["error"]) == ("delivered", 3, None)
    assert [status for status, _ in receiver.received] == [500, 500, 200]
    assert len(receiver.messages) == 1
    assert elapsed >= 0.05 + 0.1  # waited 0.05 s, then 0.1 s
    assert table()["status"].tolist() == ["delivered"]


@pytest.mark.parametrize("channel", ["always 500", "closed port", "404"])
def test_a_channel_that_stays_down_never_fails_the_sender(alerts, monkeypatch, channel):
    receiver = WebhookReceiver(then=404 if channel == "404" else 500)
    url = closed_port_url() if channel == "closed port" else receiver.url
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK_URL", url)
    try:
        started = time.monotonic()
        result = gate_rejection(alerts)  # returns, never raises
        elapsed = time.monotonic() - started
    finally:
        receiver.close()
    assert (result["status"], result["delivered"]) == ("undelivered", False)
    expected = {"always 500": ("HTTP 500", 3), "closed port": ("refused", 3), "404": ("HTTP 404", 1)}[channel]
    assert expected[0] in result["error"] and result["attempts"] == expected[1]  # a 404 is not retried
    assert elapsed < 3
    [row] = table().to_dict(orient="records")
    assert (row["status"], row["delivered"], row["attempts"]) == ("undelivered", False, expected[1])
    assert expected[0] in row["delivery_error"]


def test_repeats_within_the_window_are_grouped_and_the_next_post_counts_them(alerts, webhook_receiver,
                                                                             monkeypatch):
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK_URL", webhook_receiver.url)
    results = [gate_rejection(alerts) for _ in range(3)]
    assert [r["status"] for r in results] == ["delivered", "grouped", "grouped"]
    assert len(webhook_receiver.messages) == 1
    rows = table()
    assert rows["status"].tolist() == ["delivered", "grouped", "grouped"]
    assert rows["repeats"].tolist() == [0, 1, 2]
    other = alerts.send("gate_rejection", "churn v8 rejected by the promotion gate", {"roc_auc": 0.8})
    assert other["status"] == "delivered"  # another group key is its own alert

    # The window (alerts.group_minutes = 60) passes: the records are made two hours older.
    with Warehouse().connect() as con:
        con.execute(f"update {ALERTS_TABLE} set sent_at = sent_at - interval 2 hour")
    after = gate_rejection(alerts)
    assert (after["status"], after["repeats"]) == ("delivered", 2)
    text = webhook_receiver.messages[-1]["text"]
    assert "churn v7 rejected" in text and "Repeated 2 more times since the last post at" in text
    assert gate_rejection(alerts)["status"] == "grouped"  # counted from the new post
    assert len(webhook_receiver.messages) == 3


def test_without_a_webhook_alerts_go_to_the_log_and_the_table(alerts, caplog):
    with caplog.at_level(logging.INFO, logger="ml_platform.alerts"):
        result = alerts.send("freshness_breach", "churn: features are stale (30.2 h old)",
                             {"age": "30.2 h", "SLO": "at most 26 h"}, severity="critical",
                             group_key="freshness_breach:churn:features")
    assert (result["status"], result["delivered"]) == ("logged", False)
    logged = caplog.text
    assert "[CRITICAL] churn: features are stale (30.2 h old)" in logged and "• SLO: at most 26 h" in logged
    assert str(RUNBOOKS / "freshness-breach.md") in logged
    [row] = table().to_dict(orient="records")
    assert (row["status"], row["delivered"], row["group_key"]) == ("logged", False, "freshness_breach:churn:features")
    assert "no webhook configured" in row["delivery_error"]
    # Grouping holds for the log too: the same breach an hour later is counted, not logged again.
    assert alerts.send("freshness_breach", "churn: features are stale (31.2 h old)", {},
                       group_key="freshness_breach:churn:features")["status"] == "grouped"


def test_an_unreadable_config_falls_back_to_the_default_alert_settings(alerts, tmp_path, monkeypatch, caplog):
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [not, a, mapping\n")
    monkeypatch.setenv("ML_PLATFORM_CONFIG", str(broken))
    with caplog.at_level(logging.WARNING, logger="ml_platform.alerts"):
        result = alerts.send("slo_breach", "churn: live roc_auc below the SLO", {"live roc_auc": 0.61})
    assert result["status"] == "logged" and "model: -" in result["text"]
    assert "using the default alert settings" in caplog.text


def test_every_rollback_is_alerted(alerts, platform_env, webhook_receiver, monkeypatch):
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK_URL", webhook_receiver.url)
    registry = ModelRegistry()
    client = registry.client()
    client.create_registered_model("churn")
    for _ in range(2):
        version = client.create_model_version("churn", source=str(platform_env))
        registry.tag_version("churn", version.version, {"gate_decision": "promoted"})
    governance = Governance(registry=registry, warehouse=alerts.warehouse, alerts=alerts)
    for version in ("1", "2"):
        governance.promote("churn", version, actor="test", reason="test", evidence={})
    record = governance.rollback("churn", actor="alice@example.com", reason="v2 over-predicts churn")
    assert (record["from_version"], record["to_version"]) == ("2", "1")
    [message] = webhook_receiver.messages
    lines = message["text"].splitlines()
    assert lines[0] == "[WARNING] churn: champion rolled back from v2 to v1 by alice@example.com"
    assert "• reason: v2 over-predicts churn" in lines
    assert f"• MLflow version: {registry.version_ui_url('churn', '1')}" in lines
    assert lines[-1] == f"Runbook: {RUNBOOKS / 'rollback.md'}"
    # Without an Alerts resource, Governance works as before and sends nothing.
    Governance(registry=registry, warehouse=alerts.warehouse).rollback("churn", actor="bob", reason="forward")
    assert len(webhook_receiver.messages) == 1


# -- the run failure sensor ---------------------------------------------------------------------------
def evaluate_sensor(instance: dg.DagsterInstance, run_id: str, alerts: Alerts, repository_def=None):
    run = instance.get_run_by_id(run_id)
    [record] = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    with dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert", dagster_instance=instance, dagster_run=run,
        dagster_event=record.event_log_entry.dagster_event, resources={"alerts": alerts},
        repository_def=repository_def,
    ) as context:  # a context manager: Alerts is a ConfigurableResource
        return run_failure_alert(context.for_run_failure())


@dg.op
def publish_report():
    raise RuntimeError("report store unreachable: connection reset by peer")


@dg.job
def nightly_report():
    publish_report()


def test_a_failed_run_is_alerted_with_its_job_step_error_and_link(alerts, webhook_receiver, monkeypatch):
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK_URL", webhook_receiver.url)
    instance = dg.DagsterInstance.ephemeral()
    result = nightly_report.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    outcome = evaluate_sensor(instance, result.run_id, alerts)
    assert "alerted" in outcome.skip_message
    [message] = webhook_receiver.messages
    lines = message["text"].splitlines()
    assert lines[0] == "[CRITICAL] nightly_report run failed at publish_report"
    assert "• job: nightly_report" in lines
    assert ("• failed steps: publish_report (no asset): RuntimeError: report store unreachable: connection reset "
            "by peer") in lines
    assert f"• Dagster run: http://dagster.test:3000/runs/{result.run_id}" in lines
    assert lines[-1] == f'Runbook: {RUNBOOKS / "feature-pipeline-failure.md"} (section "Any other failed run")'


def test_a_feature_pipeline_failure_follows_its_runbook_and_a_validation_stop_is_alerted_once(
        alerts, platform_env, webhook_receiver, tmp_path, monkeypatch):
    from ml_platform.lib.demo_data import generate_batch
    from ml_platform.runner import dagster_instance, load_definitions, run_lifecycle

    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK_URL", webhook_receiver.url)
    repository = load_definitions().get_repository_def()

    # A missing source file: raw_batch (ingestion) fails.
    missing = tmp_path / "landing" / "customers.csv"
    config = write_config(tmp_path, {"alerts": FAST, "data": {"source": {"kind": "file", "path": str(missing)}}},
                          name="missing.yaml")
    failed = run_lifecycle(config_file=config)
    assert not failed.success
    with dagster_instance() as instance:
        evaluate_sensor(instance, failed.run_id, alerts, repository)
    [message] = webhook_receiver.messages
    lines = message["text"].splitlines()
    assert lines[0] == "[CRITICAL] lifecycle run failed at raw_batch"
    assert any(line.startswith("• failed steps: raw_batch (ingestion): ") and str(missing) in line for line in lines)
    assert f"• Dagster run: http://dagster.test:3000/runs/{failed.run_id}" in lines
    assert lines[-1] == f"Runbook: {RUNBOOKS / 'feature-pipeline-failure.md'}"

    # A batch that breaks the contract: the validation check alerts with its evidence; the run failure is not
    # alerted a second time.
    batch = generate_batch(2, rows=600, seed=11)
    batch.loc[1, "customer_id"] = batch.loc[0, "customer_id"]
    source = tmp_path / "duplicates.csv"
    batch.to_csv(source, index=False)
    config = write_config(tmp_path, {"alerts": FAST, "data": {"source": {"kind": "file", "path": str(source)}}},
                          name="duplicates.yaml")
    stopped = run_lifecycle(config_file=config)
    assert not stopped.success
    with dagster_instance() as instance:
        outcome = evaluate_sensor(instance, stopped.run_id, alerts, repository)
    assert "alerted on their own" in outcome.skip_message
    assert len(webhook_receiver.messages) == 2
    lines = webhook_receiver.messages[1]["text"].splitlines()
    assert lines[0].startswith("[CRITICAL] churn: batch duplicates") and "1 contract check failed" in lines[0]
    assert "• failed checks: unique_ids" in lines
    [record] = (platform_env / "quarantine").glob("*.json")
    assert f"• Quarantine record: {record}" in lines
    assert f"• Dagster run: http://dagster.test:3000/runs/{stopped.run_id}" in lines
    assert lines[-1] == f"Runbook: {RUNBOOKS / 'validation-failure.md'}"
