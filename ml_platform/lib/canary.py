"""Canary policy: which entity sees the challenger, and whether the challenger's guardrails hold.

Pure functions over plain numbers, so the serving process and the tests share one definition.
Routing hashes the entity id (not Python's salted `hash`), so a customer sees the same variant in
every process and after every restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Fewer labelled rows than this per variant and the live metric is not judged (too noisy).
MIN_LABELLED_ROWS = 30


def traffic_bucket(entity_id: str) -> float:
    """A stable position of the entity in [0, 100): the entity goes to the challenger when below the share."""
    digest = hashlib.blake2b(entity_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100


def goes_to_challenger(entity_id: str, share_percent: float) -> bool:
    return traffic_bucket(entity_id) < share_percent


@dataclass
class VariantWindow:
    """What one variant did during the current canary step."""

    rows: int = 0
    errors: int = 0
    call_latencies_ms: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    # (score, actual): actual is 1 for the positive label, else 0 (classification), or the true value (regression)
    labelled: list[tuple[float, float]] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.rows if self.rows else 0.0

    def p99_ms(self) -> float:
        return float(np.percentile(self.call_latencies_ms, 99)) if self.call_latencies_ms else 0.0


@dataclass(frozen=True)
class Verdict:
    status: str  # "wait" (not enough traffic yet), "hold" (guardrails hold), "breach"
    reasons: list[str]
    evidence: dict[str, Any]


def population_stability_index(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """PSI of `actual` against `expected`, on the expected's quantile bins (scores in [0, 1])."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    if len(edges) < 3:  # (nearly) constant scores: compare on fixed bins instead
        edges = np.linspace(0, 1, bins + 1)
    edges[0], edges[-1] = -np.inf, np.inf
    e = np.histogram(expected, edges)[0] / len(expected)
    a = np.histogram(actual, edges)[0] / len(actual)
    e, a = np.clip(e, 1e-4, None), np.clip(a, 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _auc(labelled: list[tuple[float, float]]) -> float | None:
    if len(labelled) < MIN_LABELLED_ROWS:
        return None
    scores, labels = np.array([s for s, _ in labelled]), np.array([y for _, y in labelled])
    positives, negatives = scores[labels == 1], scores[labels == 0]
    if not len(positives) or not len(negatives):
        return None
    # Mann-Whitney U: the probability a positive outranks a negative (ties count half).
    greater = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives[None, :]).sum()
    return float(greater / (len(positives) * len(negatives)))


def _rmse(labelled: list[tuple[float, float]]) -> float | None:
    if len(labelled) < MIN_LABELLED_ROWS:
        return None
    pairs = np.asarray(labelled, dtype=float)
    return float(np.sqrt(np.mean((pairs[:, 0] - pairs[:, 1]) ** 2)))


def judge(champion: VariantWindow, challenger: VariantWindow, rails: Any, task: str = "classification") -> Verdict:
    """Compare the challenger with the champion on the same traffic. `rails` is a CanaryGuardrails; `task` says
    how labelled rows are judged: live AUC (classification) or live RMSE (regression)."""
    if min(champion.rows, challenger.rows) < rails.min_requests:
        return Verdict("wait", [f"each variant needs {rails.min_requests} rows (champion {champion.rows}, "
                                f"challenger {challenger.rows})"], {})
    reasons: list[str] = []
    evidence: dict[str, Any] = {
        "champion_rows": champion.rows, "challenger_rows": challenger.rows,
        "champion_error_rate": round(champion.error_rate, 4), "challenger_error_rate": round(challenger.error_rate, 4),
        "champion_p99_ms": round(champion.p99_ms(), 2), "challenger_p99_ms": round(challenger.p99_ms(), 2),
    }
    if challenger.error_rate - champion.error_rate > rails.max_error_rate_increase:
        reasons.append(f"error rate {challenger.error_rate:.3f} vs champion {champion.error_rate:.3f} "
                       f"(allowed +{rails.max_error_rate_increase})")
    p99_limit = max(champion.p99_ms() * rails.max_latency_p99_ratio, champion.p99_ms() + rails.latency_slack_ms)
    if challenger.p99_ms() > p99_limit:
        reasons.append(f"latency p99 {challenger.p99_ms():.1f} ms vs champion {champion.p99_ms():.1f} ms "
                       f"(limit {p99_limit:.1f} ms)")
    if champion.scores and challenger.scores:
        psi = population_stability_index(np.asarray(champion.scores), np.asarray(challenger.scores))
        evidence["score_psi"] = round(psi, 4)
        if psi > rails.max_score_psi:
            reasons.append(f"score distribution shift PSI {psi:.3f} (limit {rails.max_score_psi})")
    if task == "regression":
        champion_rmse, challenger_rmse = _rmse(champion.labelled), _rmse(challenger.labelled)
        if champion_rmse is not None and challenger_rmse is not None:
            evidence.update(champion_live_rmse=round(champion_rmse, 4), challenger_live_rmse=round(challenger_rmse, 4))
            limit = champion_rmse * (1 + rails.max_rmse_increase)
            if challenger_rmse > limit:
                reasons.append(f"live RMSE {challenger_rmse:.3f} vs champion {champion_rmse:.3f} "
                               f"(limit {limit:.3f}: allowed +{rails.max_rmse_increase:.0%})")
        return Verdict("breach" if reasons else "hold", reasons, evidence)
    champion_auc, challenger_auc = _auc(champion.labelled), _auc(challenger.labelled)
    if champion_auc is not None and challenger_auc is not None:
        evidence.update(champion_live_auc=round(champion_auc, 4), challenger_live_auc=round(challenger_auc, 4))
        if champion_auc - challenger_auc > rails.max_metric_drop:
            reasons.append(f"live AUC {challenger_auc:.3f} vs champion {champion_auc:.3f} "
                           f"(allowed drop {rails.max_metric_drop})")
    return Verdict("breach" if reasons else "hold", reasons, evidence)
