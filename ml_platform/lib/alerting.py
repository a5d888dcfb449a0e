"""Alerts a person can act on: what the message says, which runbook it points to, when a repeat is
grouped instead of posted, and when a failed delivery is worth retrying. Pure logic: no Dagster, no
network, no warehouse. `ml_platform.resources.alerts.Alerts` sends, records and groups with it.

Sending an alert (from an asset, a check, a sensor or the serving process), with the `alerts` resource:

    from ml_platform.resources.alerts import Alerts, dagster_run_url

    alerts.send(
        "slo_breach",                                   # one of RUNBOOKS' kinds: it picks the runbook
        f"{model}: live roc_auc below the SLO for 2 days",  # what fired, in one line
        {"live roc_auc": "0.64 (floor 0.70)",           # the evidence: the numbers a person decides on
         "days below the floor": 2, "labelled predictions": 812},
        severity="critical",                            # info | warning (default) | critical
        links={"dagster_run": dagster_run_url(context.run.run_id),  # label keys: LINK_LABELS
               "mlflow_version": registry.version_ui_url(model, version),
               "report": str(report_path)},
        group_key=f"slo_breach:{model}",                # repeats of one key are grouped (default: kind + title)
    )

- `send` never raises: chat being down, a bad webhook URL, an unreadable config or a locked warehouse
  must not fail the run that alerts. It returns what happened: {"status": "delivered" | "undelivered" |
  "logged" | "grouped" | "error", "delivered", "error", "attempts", "repeats", "runbook", "text", ...}.
- The message names the kind, the model (from the project config) and the title, lists `details` as
  the evidence and `links` by label, and ends with the runbook: `alerts.runbook_base_url` + file when
  configured, else the absolute path of docs/operations/<file> in this checkout.
- A repeat (same group_key) within `alerts.group_minutes` of the last posted one is recorded as
  `grouped`, not posted; the next post after the window says how many were grouped since when.
  Choose a group_key that names the problem, not the numbers (`freshness_breach:<model>:features`),
  when the title carries numbers that change between repeats.
- Every alert is logged (logger `ml_platform.alerts`) and recorded in the warehouse table
  `governance.alerts` (settings.ALERTS_TABLE), posted or not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Runbook:
    """A runbook in docs/operations, optionally one section of it."""

    file: str
    section: str | None = None

    def link(self, *, base_url: str | None, docs_dir: Path) -> str:
        if base_url:
            anchor = f"#{heading_anchor(self.section)}" if self.section else ""
            return f"{base_url.rstrip('/')}/{self.file}{anchor}"
        where = str(docs_dir / self.file)
        return f'{where} (section "{self.section}")' if self.section else where


# The kinds of alert, each with the runbook a person follows when it fires.
RUNBOOKS: dict[str, Runbook] = {
    "drift_detected": Runbook("drift-alert.md"),
    "prediction_drift": Runbook("score-distribution-change.md"),
    "slo_breach": Runbook("slo-breach.md"),
    "freshness_breach": Runbook("freshness-breach.md"),
    "validation_failure": Runbook("validation-failure.md"),
    "label_rejected": Runbook("validation-failure.md", "Late labels rejected"),
    "schema_change": Runbook("validation-failure.md", "Columns the contract does not declare"),
    "gate_rejection": Runbook("gate-rejection.md"),
    "approval_requested": Runbook("approvals.md"),
    "promotion": Runbook("approvals.md"),
    "approval_refused": Runbook("approvals.md"),
    "rollback": Runbook("rollback.md"),
    "canary_rollback": Runbook("rollback.md", "The canary was rolled back"),
    "rolled_back_held": Runbook("rollback.md", "The gate held a rolled-back version"),
    "run_failure": Runbook("feature-pipeline-failure.md", "Any other failed run"),
}
# A run that failed in one of these stages (asset groups) follows the feature pipeline runbook.
PIPELINE_STAGES = ("ingestion", "validation", "features")
FEATURE_PIPELINE_FAILURE = Runbook("feature-pipeline-failure.md")
RUNBOOK_INDEX = Runbook("README.md")  # an unknown kind still points somewhere useful

# Metadata key on an asset check spec whose failure sends its own alert (with better evidence than the
# run failure): a run stopped only by such blocking checks is not alerted again as a run failure.
ALERTS_ON_FAILURE = "ml_platform/alerts_on_failure"

LINK_LABELS = {
    "dagster_run": "Dagster run",
    "mlflow_version": "MLflow version",
    "mlflow_run": "MLflow run",
    "previous_version": "MLflow version (previous champion)",
    "report": "Report",
    "quarantine_record": "Quarantine record",
}

MAX_VALUE_CHARS = 600  # one evidence value (a stack trace, a long list) is cut here; the table keeps it whole


def runbook_for(kind: str, details: Mapping[str, Any] | None = None) -> Runbook:
    """The runbook of an alert kind. A run failure names the stages (asset groups) of its failed steps
    in details["stages"]; one in ingestion, validation or features follows the feature pipeline runbook."""
    if kind == "run_failure":
        stages = (details or {}).get("stages") or ()
        if isinstance(stages, str):
            stages = [s.strip() for s in stages.split(",")]
        if set(stages) & set(PIPELINE_STAGES):
            return FEATURE_PIPELINE_FAILURE
    return RUNBOOKS.get(kind, RUNBOOK_INDEX)


def heading_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading: lower case, punctuation dropped."""
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", heading.strip().lower()))


# -- grouping -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupState:
    """What the alerts table says about one group key."""

    last_posted_at: datetime | None = None  # the last alert of the key that reached its channel
    grouped_since_post: int = 0  # repeats recorded as grouped since then


@dataclass(frozen=True)
class Grouping:
    post: bool
    repeats: int  # post: the grouped repeats to mention; not posted: this repeat's number since the post
    since: datetime | None  # the last post the repeats are counted from


def decide_grouping(state: GroupState, *, now: datetime, window_minutes: float) -> Grouping:
    """Post unless the last post of the same key is less than `window_minutes` old."""
    last = state.last_posted_at
    if last is not None and window_minutes > 0 and now - last < timedelta(minutes=window_minutes):
        return Grouping(post=False, repeats=state.grouped_since_post + 1, since=last)
    return Grouping(post=True, repeats=state.grouped_since_post if last is not None else 0, since=last)


# -- the message --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Alert:
    kind: str
    title: str
    severity: str = "warning"
    model: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    links: Mapping[str, str] = field(default_factory=dict)
    runbook: str = ""  # the link, as Runbook.link made it
    group_key: str = ""


def format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        text = {True: "yes", False: "no", None: "-"}[value]
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, Mapping):
        text = ", ".join(f"{k} {format_value(v)}" for k, v in value.items())
    elif isinstance(value, Iterable) and not isinstance(value, str | bytes):
        text = "; ".join(format_value(v) for v in value)
    else:
        text = str(value)
    text = " ".join(text.split())  # one line per item: a newline in a value would break the list
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def format_text(alert: Alert, grouping: Grouping | None = None) -> str:
    """The message as a person reads it in the channel: what fired, the evidence, the links, the runbook.
    Plain text with bare URLs: Slack, Mattermost and Teams-style webhooks all render it and link the URLs."""
    lines = [f"[{alert.severity.upper()}] {alert.title}",
             f"kind: {alert.kind} · model: {alert.model or '-'}"]
    if grouping is not None and grouping.post and grouping.repeats and grouping.since is not None:
        lines.append(f"Repeated {grouping.repeats} more time{'s' if grouping.repeats != 1 else ''} since the "
                     f"last post at {grouping.since:%Y-%m-%d %H:%M} UTC (grouped, not posted).")
    if alert.details:
        lines.append("Evidence:")
        lines += [f"• {key}: {format_value(value)}" for key, value in alert.details.items()]
    if alert.links:
        lines.append("Links:")
        lines += [f"• {LINK_LABELS.get(key, key.replace('_', ' '))}: {url}" for key, url in alert.links.items() if url]
    lines.append(f"Runbook: {alert.runbook}")
    return "\n".join(lines)


def webhook_payload(text: str) -> dict:
    """Slack-compatible incoming-webhook JSON (Mattermost, Rocket.Chat and others accept it)."""
    return {"text": text}


# -- delivery -----------------------------------------------------------------------------------------
def should_retry(status: int | None) -> bool:
    """Whether a failed post is worth another attempt. None: no HTTP answer (refused, timed out, DNS).
    429 and 5xx are the server's trouble and pass; any other 4xx means the URL, token or payload is
    wrong, and sending the same request again cannot help."""
    return status is None or status == 429 or status >= 500


def backoff_delays(attempts: int, first_delay: float) -> list[float]:
    """The waits between `attempts` attempts: first_delay, then doubling."""
    return [first_delay * 2**i for i in range(max(attempts - 1, 0))]


# -- run failures -------------------------------------------------------------------------------------
def root_error_message(error: Any) -> str:
    """The innermost error's message (the one that says what is wrong) of a Dagster SerializableErrorInfo
    or anything shaped like it (message, cls_name, cause)."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return (getattr(error, "message", "") or "").strip() or getattr(error, "cls_name", "") or "unknown error"
