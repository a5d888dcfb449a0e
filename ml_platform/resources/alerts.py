"""Alerts to the team's chat channel: Slack-compatible JSON to ML_PLATFORM_ALERT_WEBHOOK_URL.

Every alert is also logged and appended to the warehouse table governance.alerts, so that with no
webhook configured nothing is lost, and a chat outage never fails the pipeline.
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

from ml_platform.resources.warehouse import Warehouse
from ml_platform.settings import ALERTS_TABLE

log = logging.getLogger("ml_platform.alerts")


class Alerts(dg.ConfigurableResource):
    warehouse: Warehouse
    webhook_url: str | None = None  # default: ML_PLATFORM_ALERT_WEBHOOK_URL
    attempts: int = 3

    def send(self, kind: str, title: str, details: dict[str, Any], *, severity: str = "warning") -> dict:
        """Record the alert and post it to the webhook if one is configured. Returns what happened."""
        url = self.webhook_url or os.environ.get("ML_PLATFORM_ALERT_WEBHOOK_URL")
        text = f"*[{severity.upper()}] {title}*\n" + "\n".join(f"• {k}: {v}" for k, v in details.items())
        delivered, error = (False, "no webhook configured") if not url else self._post(url, {"text": text})
        log.log(logging.INFO if severity == "info" else logging.WARNING, "alert %s: %s %s", kind, title,
                json.dumps(details, default=str))
        with self.warehouse.connect() as con:
            con.execute("create schema if not exists governance")
            con.execute(f"""create table if not exists {ALERTS_TABLE} (
                sent_at timestamp, kind varchar, severity varchar, title varchar, details varchar,
                delivered boolean, delivery_error varchar)""")
            con.execute(f"insert into {ALERTS_TABLE} values (?, ?, ?, ?, ?, ?, ?)", [
                datetime.now(UTC).replace(tzinfo=None), kind, severity, title,
                json.dumps(details, default=str), delivered, error,
            ]).fetchall()
        return {"kind": kind, "title": title, "delivered": delivered, "error": error}

    def _post(self, url: str, payload: dict) -> tuple[bool, str | None]:
        body = json.dumps(payload).encode()
        error = None
        for attempt in range(self.attempts):
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if 200 <= response.status < 300:
                        return True, None
                    error = f"HTTP {response.status}"
            except (urllib.error.URLError, OSError) as exc:
                error = str(exc)
            time.sleep(0.5 * 2**attempt)  # back off, then give up: chat being down must not fail a run
        return False, error
