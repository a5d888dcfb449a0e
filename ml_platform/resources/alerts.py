"""Alerts to the team's chat channel: Slack-compatible JSON to ML_PLATFORM_ALERT_WEBHOOK_URL.

Every alert is also logged and recorded in the warehouse table governance.alerts (status delivered,
undelivered, logged when no webhook is configured, or grouped), so that nothing is lost, and a chat
outage never fails the pipeline. How to send one, what the message holds and how repeats are grouped:
ml_platform/lib/alerting.py. The `alerts` section of the project config is read at send time.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from ml_platform import settings
from ml_platform.config import AlertsSection
from ml_platform.lib.alerting import (
    Alert,
    GroupState,
    backoff_delays,
    decide_grouping,
    format_text,
    runbook_for,
    should_retry,
    webhook_payload,
)
from ml_platform.resources.project import ProjectResource
from ml_platform.resources.warehouse import Warehouse
from ml_platform.settings import ALERTS_TABLE

log = logging.getLogger("ml_platform.alerts")

POSTED = ("delivered", "logged")  # reached its channel (the webhook, or the log when there is none)
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}


def dagster_run_url(run_id: str) -> str:
    """The run's page in the Dagster UI, for `links={"dagster_run": ...}`."""
    return f"{settings.dagster_ui_url()}/runs/{run_id}"


class Alerts(dg.ConfigurableResource):
    warehouse: Warehouse
    webhook_url: str | None = None  # default: ML_PLATFORM_ALERT_WEBHOOK_URL, read at send time
    timeout_seconds: float = 5.0  # per delivery attempt

    def send(self, kind: str, title: str, details: dict[str, Any], *, severity: str = "warning",
             links: dict[str, str] | None = None, group_key: str | None = None) -> dict:
        """Record the alert and post it to the webhook unless it repeats one posted within
        alerts.group_minutes. Never raises; returns what happened (see ml_platform/lib/alerting.py)."""
        try:
            return self._send(kind, title, details or {}, severity=severity, links=links or {},
                              group_key=group_key or f"{kind}:{title}")
        except Exception as exc:  # alerting must never fail the caller
            log.exception("alert %s could not be processed: %s", kind, title)
            return {"kind": kind, "title": title, "status": "error", "delivered": False, "error": repr(exc)}

    def _send(self, kind: str, title: str, details: dict[str, Any], *, severity: str, links: dict[str, str],
              group_key: str) -> dict:
        cfg, model = _alert_settings()
        runbook = runbook_for(kind, details).link(base_url=cfg.runbook_base_url,
                                                  docs_dir=settings.PROJECT_ROOT / "docs" / "operations")
        alert = Alert(kind=kind, title=title, severity=severity, model=model, details=details, links=links,
                      runbook=runbook, group_key=group_key)
        now = datetime.now(UTC)
        grouping = decide_grouping(self._group_state(group_key), now=now, window_minutes=cfg.group_minutes)
        text = format_text(alert, grouping)
        url = self.webhook_url or os.environ.get("ML_PLATFORM_ALERT_WEBHOOK_URL")
        attempts, error = 0, None
        if not grouping.post:
            status = "grouped"
            log.info("alert %s grouped (repeat %d since %s, not posted): %s", kind, grouping.repeats,
                     f"{grouping.since:%H:%M} UTC", title)
        elif not url:
            status, error = "logged", "no webhook configured (ML_PLATFORM_ALERT_WEBHOOK_URL)"
            log.log(_LEVELS.get(severity, logging.WARNING), "alert (no webhook configured):\n%s", text)
        else:
            delivered, attempts, error = self._post(url, webhook_payload(text), cfg)
            status = "delivered" if delivered else "undelivered"
            if delivered:
                log.info("alert %s posted: %s", kind, title)
            else:
                log.error("alert %s NOT delivered after %d attempt(s) (%s):\n%s", kind, attempts, error, text)
        recorded = self._record(alert, now=now, status=status, repeats=grouping.repeats, attempts=attempts,
                                error=error)
        return {"kind": kind, "title": title, "status": status, "delivered": status == "delivered",
                "error": error, "attempts": attempts, "repeats": grouping.repeats, "group_key": group_key,
                "runbook": runbook, "text": text, "recorded": recorded}

    def _post(self, url: str, payload: dict, cfg: AlertsSection) -> tuple[bool, int, str | None]:
        """Post with retries and exponential backoff; (delivered, attempts made, last error)."""
        body = json.dumps(payload).encode()
        delays = backoff_delays(cfg.attempts, cfg.backoff_seconds)
        error, attempt = None, 0
        for attempt in range(1, cfg.attempts + 1):
            status, retry_after = None, 0.0
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                    status = response.status
                    if 200 <= status < 300:
                        return True, attempt, None
                    error = f"HTTP {status}"
            except urllib.error.HTTPError as exc:  # urllib raises for every non-2xx answer
                status, error = exc.code, f"HTTP {exc.code} {exc.reason}"
                retry_after = _seconds(exc.headers.get("Retry-After")) if exc.code == 429 else 0.0
            except (urllib.error.URLError, OSError) as exc:  # refused, timed out, DNS: no answer at all
                error = str(getattr(exc, "reason", exc))
            # A 4xx other than 429 means the URL, token or payload is wrong: the same request fails again.
            if not should_retry(status) or attempt == cfg.attempts:
                break
            time.sleep(max(delays[attempt - 1], min(retry_after, 30.0)))
        return False, attempt, error

    # -- the alerts table ------------------------------------------------------------------------
    def _group_state(self, group_key: str) -> GroupState:
        """The last post of this key and the repeats grouped since; an unreadable table means post."""
        try:
            with self.warehouse.connect() as con:  # read-write, like every other connection of the process
                _ensure_table(con)
                placeholders = ", ".join("?" for _ in POSTED)
                [(last,)] = con.execute(f"select max(sent_at) from {ALERTS_TABLE} where group_key = ? "
                                        f"and status in ({placeholders})", [group_key, *POSTED]).fetchall()
                if last is None:
                    return GroupState()
                [(grouped,)] = con.execute(f"select count(*) from {ALERTS_TABLE} where group_key = ? and "
                                           "status = 'grouped' and sent_at > ?", [group_key, last]).fetchall()
            return GroupState(last_posted_at=last.replace(tzinfo=UTC), grouped_since_post=int(grouped))
        except Exception:
            log.exception("alerts: could not read %s to group repeats; posting", ALERTS_TABLE)
            return GroupState()

    def _record(self, alert: Alert, *, now: datetime, status: str, repeats: int, attempts: int,
                error: str | None) -> bool:
        try:
            with self.warehouse.connect() as con:
                _ensure_table(con)
                con.execute(
                    f"""insert into {ALERTS_TABLE} (sent_at, kind, severity, model_name, title, details, links,
                        runbook, group_key, status, repeats, attempts, delivered, delivery_error)
                        values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    [now.replace(tzinfo=None), alert.kind, alert.severity, alert.model, alert.title,
                     json.dumps(alert.details, default=str), json.dumps(alert.links, default=str), alert.runbook,
                     alert.group_key, status, repeats, attempts, status == "delivered", error],
                ).fetchall()
            return True
        except Exception:
            log.exception("alerts: could not record alert %s in %s: %s", alert.kind, ALERTS_TABLE, alert.title)
            return False


def _ensure_table(con: Any) -> None:
    # status: delivered | undelivered (delivery_error says why) | logged (no webhook) | grouped (a repeat,
    # not posted). repeats: on a post, the grouped repeats it reports; on a repeat, its number since the post.
    con.execute("create schema if not exists governance")
    con.execute(f"""create table if not exists {ALERTS_TABLE} (
        sent_at timestamp, kind varchar, severity varchar, model_name varchar, title varchar,
        details varchar, links varchar, runbook varchar, group_key varchar,
        status varchar, repeats integer, attempts integer, delivered boolean, delivery_error varchar)""")


def _alert_settings() -> tuple[AlertsSection, str | None]:
    """The config's alerts section and the model name, read now (cached by mtime); defaults if unreadable."""
    try:
        cfg = ProjectResource().config()
        return cfg.alerts, cfg.model.name
    except Exception as exc:
        log.warning("alerts: the project config could not be read (%s); using the default alert settings", exc)
        return AlertsSection(), None


def _seconds(value: str | None) -> float:
    try:
        return float(value) if value else 0.0
    except ValueError:
        return 0.0
