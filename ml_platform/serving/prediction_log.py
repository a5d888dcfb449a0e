"""The prediction log: every online prediction, written to the warehouse off the request path.

Scoring hands over whole batches (column arrays); a writer thread turns them into rows and appends
them every `flush_seconds`. A failed write (e.g. the warehouse locked by a long run) keeps the rows
and retries at the next flush; `close()` flushes what is left, so a clean shutdown loses nothing.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import orjson
import pandas as pd

from ml_platform.settings import PREDICTION_LOG_TABLE

log = logging.getLogger("ml_platform.serving")

COLUMNS = ("prediction_id", "logged_at", "entity_id", "model_name", "model_version", "variant", "score",
           "label", "latency_ms", "features")


class PredictionLog:
    def __init__(self, warehouse: Any, *, flush_seconds: float, enabled: bool = True):
        self.warehouse, self.flush_seconds = warehouse, flush_seconds
        # Off for a smoke-test service (`ml-platform serve --no-prediction-log`, started by `ml-platform
        # check`): its test rows are not traffic, and must not reach drift monitoring or late labels.
        self.enabled = enabled
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self.written = 0
        self.last_error: str | None = None

    def start(self) -> None:
        """Create the table before the first request: the first flush then costs what the others do."""
        if not self.enabled:
            return
        with self.warehouse.connect() as con:
            self._create_table(con)
        self._thread.start()

    @staticmethod
    def _create_table(con: Any) -> None:
        con.execute("create schema if not exists serving")
        con.execute(f"""create table if not exists {PREDICTION_LOG_TABLE} (
            prediction_id varchar, logged_at timestamp, entity_id varchar, model_name varchar,
            model_version varchar, variant varchar, score double precision, label varchar, latency_ms double precision,
            features varchar)""")

    def append(self, *, prediction_ids: list[str], entity_ids: list[str | None], model_name: str,
               model_version: str, variant: str, scores: Any, labels: Any, latency_ms: float,
               rows: list[dict]) -> None:
        """One model call's predictions (cheap: the rows are serialized by the writer thread)."""
        if not self.enabled:
            return
        batch = {"prediction_ids": prediction_ids, "entity_ids": entity_ids, "model_name": model_name,
                 "model_version": model_version, "variant": variant, "scores": scores, "labels": labels,
                 "latency_ms": latency_ms, "rows": rows, "at": datetime.now(UTC).replace(tzinfo=None)}
        with self._lock:
            self._pending.append(batch)

    def pending_rows(self) -> int:
        with self._lock:
            return sum(len(b["prediction_ids"]) for b in self._pending)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def flush(self) -> int:
        with self._lock:
            batches, self._pending = self._pending, []
        if not batches:
            return 0
        frame = pd.DataFrame({
            "prediction_id": [p for b in batches for p in b["prediction_ids"]],
            "logged_at": [b["at"] for b in batches for _ in b["prediction_ids"]],
            "entity_id": [e for b in batches for e in b["entity_ids"]],
            "model_name": [b["model_name"] for b in batches for _ in b["prediction_ids"]],
            "model_version": [b["model_version"] for b in batches for _ in b["prediction_ids"]],
            "variant": [b["variant"] for b in batches for _ in b["prediction_ids"]],
            "score": [float(s) for b in batches for s in b["scores"]],
            "label": [str(v) for b in batches for v in b["labels"]],
            "latency_ms": [b["latency_ms"] for b in batches for _ in b["prediction_ids"]],
            "features": [orjson.dumps(r).decode() for b in batches for r in b["rows"]],
        })
        try:
            with self.warehouse.connect() as con:
                self._create_table(con)
                con.insert_frame(PREDICTION_LOG_TABLE, frame)
        except Exception as exc:  # keep the rows; the next flush tries again
            self.last_error = f"prediction log write failed ({len(frame)} rows kept): {exc}"
            log.error(self.last_error)
            with self._lock:
                self._pending = batches + self._pending
            return 0
        self.written += len(frame)
        self.last_error = None
        return len(frame)
