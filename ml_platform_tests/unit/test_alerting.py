"""The pure parts of alerting: runbooks per kind, grouping of repeats, the message, retry decisions."""

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from ml_platform.lib.alerting import (
    FEATURE_PIPELINE_FAILURE,
    RUNBOOK_INDEX,
    RUNBOOKS,
    Alert,
    Grouping,
    GroupState,
    Runbook,
    backoff_delays,
    decide_grouping,
    format_text,
    format_value,
    heading_anchor,
    root_error_message,
    runbook_for,
    should_retry,
)
from ml_platform.settings import PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs" / "operations"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize("runbook", [*RUNBOOKS.values(), FEATURE_PIPELINE_FAILURE, RUNBOOK_INDEX],
                         ids=lambda r: f"{r.file}#{r.section or ''}")
def test_every_runbook_file_and_section_exists(runbook):
    text = (DOCS / runbook.file).read_text()
    if runbook.section:
        headings = [h.strip() for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)]
        assert runbook.section in headings, f"{runbook.file} has no heading '{runbook.section}': {headings}"


def test_the_kinds_other_engineers_send_have_their_own_runbooks():
    assert runbook_for("drift_detected").file == "drift-alert.md"
    assert runbook_for("prediction_drift").file == "score-distribution-change.md"
    assert runbook_for("slo_breach").file == "slo-breach.md"
    assert runbook_for("freshness_breach").file == "freshness-breach.md"
    assert runbook_for("a_kind_nobody_mapped") == RUNBOOK_INDEX


def test_a_run_failure_in_the_feature_pipeline_follows_its_runbook():
    assert runbook_for("run_failure", {"stages": ["ingestion"]}) == FEATURE_PIPELINE_FAILURE
    assert runbook_for("run_failure", {"stages": "training, features"}) == FEATURE_PIPELINE_FAILURE
    generic = runbook_for("run_failure", {"stages": ["registry"]})
    assert generic.file == "feature-pipeline-failure.md" and generic.section == "Any other failed run"
    assert runbook_for("run_failure", {}) == generic


def test_runbook_links_are_absolute_paths_or_under_the_configured_base_url():
    runbook = Runbook("rollback.md", "The canary was rolled back")
    assert runbook.link(base_url="https://wiki.example.com/ops/", docs_dir=DOCS) == \
        "https://wiki.example.com/ops/rollback.md#the-canary-was-rolled-back"
    local = runbook.link(base_url=None, docs_dir=DOCS)
    assert local == f'{DOCS / "rollback.md"} (section "The canary was rolled back")'
    assert Runbook("slo-breach.md").link(base_url=None, docs_dir=DOCS) == str(DOCS / "slo-breach.md")
    assert heading_anchor("Refused? Ask again, later!") == "refused-ask-again-later"


def test_first_alert_of_a_key_is_posted():
    assert decide_grouping(GroupState(), now=NOW, window_minutes=60) == Grouping(post=True, repeats=0, since=None)


def test_repeats_within_the_window_are_grouped_and_counted():
    posted = NOW - timedelta(minutes=59)
    first = decide_grouping(GroupState(posted, 0), now=NOW, window_minutes=60)
    second = decide_grouping(GroupState(posted, 1), now=NOW, window_minutes=60)
    assert (first.post, first.repeats, first.since) == (False, 1, posted)
    assert (second.post, second.repeats) == (False, 2)


def test_after_the_window_the_next_post_reports_the_grouped_repeats():
    posted = NOW - timedelta(minutes=61)
    decision = decide_grouping(GroupState(posted, 4), now=NOW, window_minutes=60)
    assert decision == Grouping(post=True, repeats=4, since=posted)
    text = format_text(Alert(kind="slo_breach", title="t", runbook="r"), decision)
    assert "Repeated 4 more times since the last post at 2026-03-02 08:29 UTC (grouped, not posted)." in text


def test_a_zero_window_never_groups():
    decision = decide_grouping(GroupState(NOW - timedelta(seconds=1), 0), now=NOW, window_minutes=0)
    assert decision.post


def test_the_message_says_what_fired_the_evidence_the_links_and_the_runbook():
    alert = Alert(kind="gate_rejection", title="churn v7 rejected by the promotion gate", severity="warning",
                  model="churn", details={"roc_auc": 0.812345, "failed": ["calibration error 0.14 > 0.1", "x"],
                                          "champion": None, "forced": False},
                  links={"dagster_run": "http://ui/runs/abc", "mlflow_version": "http://mlflow/v7", "extra_page": "u"},
                  runbook="/docs/operations/gate-rejection.md")
    lines = format_text(alert).splitlines()
    assert lines[0] == "[WARNING] churn v7 rejected by the promotion gate"
    assert lines[1] == "kind: gate_rejection · model: churn"
    assert "• roc_auc: 0.8123" in lines
    assert "• failed: calibration error 0.14 > 0.1; x" in lines
    assert "• champion: -" in lines and "• forced: no" in lines
    assert "• Dagster run: http://ui/runs/abc" in lines and "• MLflow version: http://mlflow/v7" in lines
    assert "• extra page: u" in lines
    assert lines[-1] == "Runbook: /docs/operations/gate-rejection.md"
    assert not any(line.startswith("Repeated") for line in lines)


def test_values_become_one_readable_line():
    assert format_value({"psi": 0.31234, "rows": 1200}) == "psi 0.3123, rows 1200"
    assert format_value("Traceback:\n  line 1\n  boom") == "Traceback: line 1 boom"
    long = format_value("x" * 5000)
    assert len(long) == 600 and long.endswith("…")


@pytest.mark.parametrize(("status", "retry"), [(None, True), (500, True), (503, True), (429, True),
                                               (400, False), (403, False), (404, False), (410, False)])
def test_only_server_trouble_and_no_answer_are_retried(status, retry):
    assert should_retry(status) is retry


def test_backoff_doubles_between_attempts():
    assert backoff_delays(4, 0.5) == [0.5, 1.0, 2.0]
    assert backoff_delays(1, 0.5) == []


def test_the_innermost_error_says_what_is_wrong():
    inner = SimpleNamespace(message="raw_batch: /data/batch.csv does not exist\n", cls_name="Failure", cause=None)
    outer = SimpleNamespace(message="Error occurred while executing user code", cls_name="DagsterUserCodeError",
                            cause=inner)
    assert root_error_message(outer) == "raw_batch: /data/batch.csv does not exist"
    assert root_error_message(SimpleNamespace(message="", cls_name="KeyError", cause=None)) == "KeyError"
