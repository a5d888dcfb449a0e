"""The prediction service's core, independent of HTTP: checked rows in, scores out.

Row-at-a-time prediction cannot be fast (one `predict_proba` on a one-row frame costs milliseconds of
fixed overhead, while the same model scores hundreds of thousands of rows per second in bulk), so
concurrent requests are coalesced: each request queues its rows, and one worker makes a single model
call per variant for everything that arrived within `batch_window_ms` (up to `max_batch_rows`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ml_platform.serving.metrics import ServiceMetrics
from ml_platform.serving.models import LoadedModel, ModelWatcher
from ml_platform.serving.prediction_log import PredictionLog
from ml_platform.serving.traffic import CHALLENGER, CHAMPION, CHECK, SHADOW, TrafficController

log = logging.getLogger("ml_platform.serving")


def _model_thread_setup() -> None:
    import sklearn
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    # Rows reaching the model were checked against its signature already (types, nulls, finite numbers);
    # sklearn's own re-checks are per-call overhead. sklearn's config is per thread: only this one.
    sklearn.set_config(assume_finite=True, skip_parameter_validation=True)


class NotReadyError(RuntimeError):
    """No champion is loaded yet (HTTP 503)."""


@dataclass
class Job:
    rows: list[dict]
    entity_ids: list[str | None]
    future: asyncio.Future
    check: bool = False  # sent by `ml-platform check`, not traffic (traffic.CHECK)
    results: dict[str, list] = field(default_factory=dict)


class PredictionService:
    def __init__(self, config: Any, *, registry: Any, warehouse: Any, governance: Any, alerts: Any,
                 online_store: Any | None = None, pinned_version: str | None = None, log_predictions: bool = True):
        self.config = config
        self.settings = config.serving
        self.metrics = ServiceMetrics()
        self.traffic = TrafficController(self.settings.canary, on_decision=self._record_decision,
                                         task=config.model.task)
        self.models = ModelWatcher(registry, config, poll_seconds=self.settings.alias_poll_seconds,
                                   on_change=self._alias_moved, pinned_version=pinned_version)
        self.prediction_log = PredictionLog(warehouse, flush_seconds=self.settings.log_flush_seconds,
                                            enabled=log_predictions)
        self.registry, self.governance, self.alerts = registry, governance, alerts
        self.online_store = online_store
        # One model thread, itself single-threaded: micro-batches are small, and OpenMP's thread team
        # (HistGradientBoosting) stalls for tens of ms per call on 2 busy cores. The limit is per thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model", initializer=_model_thread_setup)
        self._pending: list[Job] = []
        self._wakeup: asyncio.Event | None = None
        self._arrival: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self.started_at = time.time()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start_background(self) -> None:
        """Load the models and start the watcher and the log writer (blocking; before serving)."""
        import gc

        self.models.start()
        self.prediction_log.start()
        gc.freeze()  # the loaded models and libraries never die: keep them out of every GC pass

    async def start_batching(self) -> None:
        self._wakeup = asyncio.Event()  # something is queued
        self._arrival = asyncio.Event()  # a request arrived (while a batch is being gathered)
        self._worker = asyncio.create_task(self._batch_loop(), name="micro-batcher")

    async def stop(self) -> None:
        if self._worker:
            while self._pending and not self._worker.done():  # answer what is queued before going down
                await asyncio.sleep(0.01)
            self._worker.cancel()
        self.models.stop()
        self.traffic.close()
        self.prediction_log.close()
        self._executor.shutdown(wait=True)

    @property
    def ready(self) -> bool:
        return self.models.champion is not None and self.models.first_poll_done.is_set()

    # -- scoring -----------------------------------------------------------------------------------
    async def score(self, rows: list[dict], entity_ids: list[str | None], *, check: bool = False) -> dict[str, list]:
        """Queue checked rows; returns per row: prediction_id, score, label, model_version, variant. `check`: the
        rows of `ml-platform check`, answered by the champion and logged as variant `check`, apart from traffic."""
        if self.models.champion is None:
            raise NotReadyError(f"no champion of model '{self.config.model.name}' is loaded yet")
        job = Job(rows, entity_ids, asyncio.get_running_loop().create_future(), check=check)
        self._pending.append(job)
        self._wakeup.set()
        self._arrival.set()
        return await job.future

    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        window = self.settings.batch_window_ms / 1000
        max_rows = self.settings.max_batch_rows
        last_batch_rows = 1
        while True:
            await self._wakeup.wait()
            # Wait (at most the window) only for as many rows as the last call had: under concurrent load
            # their senders are about to send again; a lone request at low load goes at once.
            deadline = loop.time() + window
            while sum(len(j.rows) for j in self._pending) < min(max_rows, last_batch_rows):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrival.clear()
                try:
                    await asyncio.wait_for(self._arrival.wait(), remaining)
                except TimeoutError:
                    break
            batch, taken = [], 0
            while self._pending and (not batch or taken + len(self._pending[0].rows) <= max_rows):
                job = self._pending.pop(0)
                batch.append(job)
                taken += len(job.rows)
            if not self._pending:
                self._wakeup.clear()
            last_batch_rows = max(taken, 1)
            try:
                shadow = await loop.run_in_executor(self._executor, self._score_batch, batch)
            except Exception as exc:
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job in batch:
                if not job.future.done():
                    job.future.set_result(job.results)
            if shadow is not None:  # after the answers went out: the shadow never delays a response
                await loop.run_in_executor(self._executor, self._score_shadow, *shadow)

    def _score_batch(self, batch: list[Job]) -> tuple | None:
        """Runs in the model thread. Splits rows by variant, one model call each, fills each job's results."""
        champion, challenger = self.models.champion, self.models.challenger
        rows = [r for job in batch for r in job.rows]
        entities = [e for job in batch for e in job.entity_ids]
        checks = [job.check for job in batch for _ in job.rows]
        ids = [uuid.uuid4().hex for _ in rows]
        variants = [CHAMPION] * len(rows)
        if challenger is not None and self.traffic.share > 0:
            variants = [self.traffic.route(e if e is not None else pid) for e, pid in zip(entities, ids, strict=True)]
        variants = [CHECK if check else v for v, check in zip(variants, checks, strict=True)]
        scores = np.empty(len(rows))
        labels = np.empty(len(rows), dtype=object)
        versions = [""] * len(rows)
        for variant, model in ((CHAMPION, champion), (CHALLENGER, challenger), (CHECK, champion)):
            index = [i for i, v in enumerate(variants) if v == variant]
            if not index:
                continue
            result = self._call(variant, model, [rows[i] for i in index], [ids[i] for i in index],
                                [entities[i] for i in index])
            if result is None and variant in (CHAMPION, CHECK):
                raise RuntimeError(f"champion version {champion.version} failed to score the request (see the log)")
            if result is None:  # the challenger failed: the champion answers these rows instead
                result = self._call(CHAMPION, champion, [rows[i] for i in index], [ids[i] for i in index],
                                    [entities[i] for i in index])
                if result is None:
                    raise RuntimeError(f"champion version {champion.version} failed to score the request")
                for i in index:
                    variants[i] = CHAMPION
            answered_by, s, lab = result
            scores[index], labels[index] = s, lab
            for i in index:
                versions[i] = answered_by.version
        self.metrics.batch_rows.observe(len(rows))
        start = 0
        for job in batch:
            end = start + len(job.rows)
            job.results = {"prediction_id": ids[start:end], "score": scores[start:end].tolist(),
                           "label": labels[start:end].tolist(), "model_version": versions[start:end],
                           "variant": variants[start:end]}
            start = end
        if challenger is not None and self.traffic.shadowing:
            traffic = [i for i, check in enumerate(checks) if not check]
            if traffic:
                return (challenger, [rows[i] for i in traffic], [ids[i] for i in traffic],
                        [entities[i] for i in traffic])
        return None

    def _call(self, variant: str, model: LoadedModel, rows: list[dict], ids: list[str],
              entities: list[str | None]) -> tuple[LoadedModel, np.ndarray, np.ndarray] | None:
        started = time.perf_counter()
        try:
            scores, labels = model.predict(rows)
        except Exception as exc:
            self.metrics.model_errors.labels(variant).inc()
            log.error("%s version %s failed on %d rows: %s", variant, model.version, len(rows), exc)
            if variant != CHECK:  # a check's rows are no canary evidence
                self.traffic.observe(variant, rows=len(rows), errors=len(rows),
                                     latency_ms=(time.perf_counter() - started) * 1000, scores=[], prediction_ids=[])
            return None
        latency_ms = (time.perf_counter() - started) * 1000
        self.metrics.model_latency.labels(variant).observe(latency_ms / 1000)
        self.metrics.predictions.labels(variant, model.version).inc(len(rows))
        if variant != CHECK:
            self.traffic.observe(variant, rows=len(rows), errors=0, latency_ms=latency_ms, scores=scores,
                                 prediction_ids=ids)
        self.prediction_log.append(prediction_ids=ids, entity_ids=entities, model_name=model.name,
                                   model_version=model.version, variant=variant, scores=scores, labels=labels,
                                   latency_ms=latency_ms, rows=rows)
        return model, scores, labels

    def _score_shadow(self, challenger: LoadedModel, rows: list[dict], ids: list[str],
                      entities: list[str | None]) -> None:
        started = time.perf_counter()
        try:
            scores, labels = challenger.predict(rows)
        except Exception as exc:
            self.metrics.model_errors.labels(SHADOW).inc()
            log.error("shadow version %s failed on %d rows: %s", challenger.version, len(rows), exc)
            return
        latency_ms = (time.perf_counter() - started) * 1000
        self.metrics.model_latency.labels(SHADOW).observe(latency_ms / 1000)
        self.metrics.predictions.labels(SHADOW, challenger.version).inc(len(rows))
        self.traffic.observe_shadow(ids, scores)
        # Same prediction ids as the champion's answers: the log pairs them for comparison.
        self.prediction_log.append(prediction_ids=ids, entity_ids=entities, model_name=challenger.name,
                                   model_version=challenger.version, variant=SHADOW, scores=scores,
                                   labels=labels, latency_ms=latency_ms, rows=rows)

    def online_features(self, entity_ids: list[str]) -> list[dict]:
        """Each entity's row of the online feature table, in the order asked (LookupError if unknown)."""
        if self.online_store is None:
            raise LookupError("this service has no online feature table: send the features in the request")
        from ml_platform.serving.online_store import OnlineStoreError

        try:
            frame = self.online_store.lookup(entity_ids, table=self.config.features.dbt_model)
        except OnlineStoreError as exc:  # not published yet, or unreadable: the service is not ready for it
            raise NotReadyError(str(exc)) from None
        return frame.to_dict(orient="records")

    # -- registry and governance events ----------------------------------------------------------------
    def _alias_moved(self, alias: str, old: LoadedModel | None, new: LoadedModel | None) -> None:
        self.metrics.model_version.labels(alias).set(float(new.version) if new else 0)
        if alias == CHALLENGER:
            self.traffic.challenger_changed(new)
        self.metrics.canary_share.set(self.traffic.share)

    def _record_decision(self, action: str, version: str | None, evidence: dict) -> None:
        """Canary decisions go to the audit log, the version's tags and the team channel, in a thread of
        their own: the warehouse and the webhook are never on the request path."""
        self.metrics.canary_share.set(self.traffic.share)

        def record() -> None:
            name = self.config.model.name
            try:
                reason = "; ".join(evidence.get("reasons", [])) or action.replace("_", " ")
                self.governance.record(name, action, version=version, actor="ml-platform-serve", reason=reason,
                                       evidence=evidence)
                if action in ("canary_rollback", "canary_passed"):
                    status = "rolled_back" if action == "canary_rollback" else "passed"
                    self.registry.tag_version(name, version, {"canary": status, "canary_evidence": evidence})
                if action == "canary_rollback":
                    self.alerts.send("canary_rollback", f"{name} v{version}: canary rolled back, champion "
                                     "takes all traffic", {"reasons": reason, **evidence}, severity="critical")
            except Exception:
                log.exception("could not record canary decision %s for version %s", action, version)

        threading.Thread(target=record, name=f"record-{action}", daemon=True).start()

    def version_info(self) -> dict:
        def describe(model: LoadedModel | None) -> dict | None:
            return None if model is None else {"version": model.version, "run_id": model.tags.get("training_run_id")}

        return {
            "model": self.config.model.name,
            "champion": describe(self.models.champion),
            "challenger": describe(self.models.challenger),
            "loaded_versions": self.models.loaded_versions(),
            "canary": self.traffic.state(),
            "registry": {"last_poll": self.models.last_poll, "last_error": self.models.last_error},
            # Versions the registry named but the service would not load (e.g. an artifact altered after
            # evaluation), with the reason; the last good version keeps answering meanwhile.
            "refused_versions": dict(self.models.refused),
            "champion_refused": self.models.champion_refused(),
            "pinned_version": self.models.pinned_version,
            "prediction_log": {"written": self.prediction_log.written, "pending": self.prediction_log.pending_rows(),
                               "last_error": self.prediction_log.last_error},
        }
