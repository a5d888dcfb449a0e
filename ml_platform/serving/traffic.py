"""Who answers: the champion, or for a canary's share of entities the challenger; in shadow mode the
challenger scores every request but only the champion's answers are returned.

The canary ramps through `serving.canary.steps` while the guardrails (lib/canary.py) hold on the same
traffic. A breach sends all traffic back to the champion at once, tags the version
`canary=rolled_back` in the registry (so a restart does not retry it), appends the decision to the
audit log and alerts the team. The criteria are copied when the canary starts: editing the config
mid-canary cannot loosen them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ml_platform.lib.canary import VariantWindow, goes_to_challenger, judge

log = logging.getLogger("ml_platform.serving")

CHAMPION, CHALLENGER, SHADOW = "champion", "challenger", "shadow"
# Requests of `ml-platform check` (header CHECK_HEADER): the champion answers them, and they are logged under this
# variant, apart from traffic: no canary evidence, no traffic drift, no late labels, no cost.
CHECK = "check"
CHECK_HEADER = "X-ML-Platform-Check"
_JUDGE_EVERY_SECONDS = 0.5
_REMEMBERED_PREDICTIONS = 200_000  # prediction id -> (variant, score), for labels that arrive later


class TrafficController:
    def __init__(self, canary_config: Any, *, on_decision: Callable[[str, str, dict], None],
                 task: str = "classification"):
        self.config = canary_config
        self.task = task  # how labels are judged: live AUC (classification) or live RMSE (regression)
        self.on_decision = on_decision  # (action, version, evidence): audit + alert, off the request path
        self._lock = threading.Lock()
        self._reset(None)
        self._predictions: OrderedDict[str, tuple[str, float]] = OrderedDict()
        # Judged on a clock too, not only when a request arrives: a burst that ends between two judgements
        # would otherwise leave its evidence unjudged until the next request.
        self._stop = threading.Event()
        self._judge_thread = threading.Thread(target=self._judge_on_the_clock, name="canary-judge", daemon=True)
        self._judge_thread.start()

    def close(self) -> None:
        self._stop.set()
        self._judge_thread.join(timeout=5)

    def _judge_on_the_clock(self) -> None:
        while not self._stop.wait(_JUDGE_EVERY_SECONDS):
            try:
                self._maybe_judge()
            except Exception:  # a judgement that fails is logged; the next tick or request tries again
                log.exception("canary judgement failed")

    def _reset(self, version: str | None, status: str = "off") -> None:
        self.version, self.status, self.step, self.reasons = version, status, 0, []
        self.rails = self.config.guardrails
        self.step_started = time.monotonic()
        self.windows = {CHAMPION: VariantWindow(), CHALLENGER: VariantWindow()}
        self.last_judged = 0.0
        self.last_evidence: dict = {}
        self.shadow_rows, self.shadow_abs_diff, self.shadow_max_diff = 0, 0.0, 0.0

    # -- the challenger came or went (called by the model watcher) ---------------------------------
    def challenger_changed(self, challenger: Any | None) -> None:
        with self._lock:
            if challenger is None or self.config.mode == "off":
                self._reset(None)
                return
            previous = challenger.tags.get("canary")
            if self.config.mode == "canary" and previous in ("rolled_back", "passed"):
                self._reset(challenger.version, status=previous)  # decided before; not retried on restart
                return
            self._reset(challenger.version, status="shadow" if self.config.mode == "shadow" else "running")
            self.rails = self.config.guardrails.model_copy()  # fixed for this canary
        if self.status == "running":
            self.on_decision("canary_started", challenger.version, self.state())

    # -- routing -----------------------------------------------------------------------------------
    @property
    def share(self) -> float:
        if self.status == "running":
            return self.config.steps[self.step]
        return 100.0 if self.status == "passed" else 0.0

    def route(self, entity_id: str) -> str:
        share = self.share
        if share <= 0:
            return CHAMPION
        return CHALLENGER if goes_to_challenger(entity_id, share) else CHAMPION

    @property
    def shadowing(self) -> bool:
        return self.status == "shadow"

    # -- evidence ----------------------------------------------------------------------------------
    def observe(self, variant: str, *, rows: int, errors: int, latency_ms: float, scores: Any,
                prediction_ids: list[str]) -> None:
        with self._lock:
            window = self.windows.get(variant)
            if window is not None and self.status == "running":
                window.rows += rows
                window.errors += errors
                window.call_latencies_ms.append(latency_ms)
                window.scores.extend(float(s) for s in scores)
            for pid, score in zip(prediction_ids, scores, strict=False):
                self._predictions[pid] = (variant, float(score))
            while len(self._predictions) > _REMEMBERED_PREDICTIONS:
                self._predictions.popitem(last=False)
        self._maybe_judge()

    def observe_shadow(self, prediction_ids: list[str], scores: Any) -> None:
        """Compare the shadow's scores with the champion's answers to the same requests."""
        with self._lock:
            for pid, score in zip(prediction_ids, scores, strict=True):
                answered = self._predictions.get(pid)
                if answered is None:
                    continue
                diff = abs(float(score) - answered[1])
                self.shadow_rows += 1
                self.shadow_abs_diff += diff
                self.shadow_max_diff = max(self.shadow_max_diff, diff)

    def add_labels(self, labels: dict[str, float]) -> int:
        """Late labels by prediction id (1 = positive, 0 = not; a regression's true value); returns how many
        matched a remembered prediction."""
        matched = 0
        with self._lock:
            for pid, label in labels.items():
                found = self._predictions.get(pid)
                if found and found[0] in self.windows and self.status == "running":
                    self.windows[found[0]].labelled.append((found[1], float(label)))
                matched += found is not None
        self._maybe_judge(force=True)
        return matched

    def _maybe_judge(self, force: bool = False) -> None:
        now = time.monotonic()
        decision = None
        with self._lock:
            if self.status != "running" or (not force and now - self.last_judged < _JUDGE_EVERY_SECONDS):
                return
            self.last_judged = now
            verdict = judge(self.windows[CHAMPION], self.windows[CHALLENGER], self.rails, self.task)
            self.last_evidence = {"share_percent": self.share, **verdict.evidence}
            if verdict.status == "breach":
                self.status, self.reasons = "rolled_back", verdict.reasons
                decision = ("canary_rollback", {**self.last_evidence, "reasons": verdict.reasons})
            elif verdict.status == "hold" and now - self.step_started >= self.config.step_seconds:
                self.step += 1
                self.step_started = now
                self.windows = {CHAMPION: VariantWindow(), CHALLENGER: VariantWindow()}
                if self.share >= 100:
                    self.status = "passed"
                    decision = ("canary_passed", self.last_evidence)
                else:
                    decision = ("canary_step", self.last_evidence)
            version = self.version
        if decision:
            log.warning("canary %s for version %s: %s", decision[0], version, decision[1])
            self.on_decision(decision[0], version, decision[1])

    def state(self) -> dict:
        return {"mode": self.config.mode, "status": self.status, "challenger_version": self.version,
                "share_percent": self.share, "steps": list(self.config.steps), "step": self.step,
                "reasons": list(self.reasons), "evidence": dict(self.last_evidence),
                "guardrails": self.rails.model_dump(),
                "shadow": {"rows_compared": self.shadow_rows,
                           "mean_abs_score_diff": self.shadow_abs_diff / self.shadow_rows if self.shadow_rows else None,
                           "max_abs_score_diff": self.shadow_max_diff}}
