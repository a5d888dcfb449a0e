"""The champion/challenger promotion gate: a pure decision over metrics, recorded with its reasons."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ml_platform.config import GateSection

# Metrics where lower is better are gated on their negation, so "higher wins" everywhere.
_NEGATED = {"neg_log_loss": "log_loss", "neg_brier": "brier", "neg_rmse": "rmse", "neg_mae": "mae"}
# Gate metrics of a regressor: the calibration guardrail (a property of probabilities) does not apply to them.
_REGRESSION = {"neg_rmse", "neg_mae", "r2"}


def metric_value(metrics: dict[str, float], name: str) -> float:
    if name in _NEGATED:
        return -metrics[_NEGATED[name]]
    return metrics[name]


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    metric: str
    challenger_value: float
    champion_value: float | None
    reasons: list[str] = field(default_factory=list)   # every rule, passed or not
    failures: list[str] = field(default_factory=list)  # the rules that blocked promotion

    @property
    def verdict(self) -> str:
        return "promoted" if self.promote else "rejected"

    def to_json(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def decide_promotion(
    *,
    gate: GateSection,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    baseline: dict[str, float],
) -> GateDecision:
    """Challenger metrics, the champion's on the same holdout (None for the first model), and a trivial
    baseline's. The challenger is promoted only if every rule passes."""
    name = gate.metric
    value = metric_value(challenger, name)
    passed: list[str] = []
    failed: list[str] = []

    def rule(ok: bool, text: str) -> None:
        (passed if ok else failed).append(text)

    if champion is None:
        rule(value >= gate.floor, f"{name} {value:.4f} {'≥' if value >= gate.floor else '<'} floor {gate.floor:.4f}")
        base = metric_value(baseline, name)
        need = base + gate.baseline_margin
        rule(value >= need, f"{name} {value:.4f} vs trivial baseline {base:.4f} + margin {gate.baseline_margin} "
             f"({'beaten' if value >= need else 'not beaten'})")
        champion_value = None
    else:
        champion_value = metric_value(champion, name)
        gain = value - champion_value
        rule(gain > gate.min_improvement,
             f"{name} {value:.4f} vs champion {champion_value:.4f} on the same holdout: "
             f"{gain:+.4f} {'>' if gain > gate.min_improvement else '≤'} margin {gate.min_improvement}")

    latency = challenger["latency_p99_ms"]
    rule(latency <= gate.max_latency_p99_ms,
         f"latency p99 {latency:.2f} ms {'≤' if latency <= gate.max_latency_p99_ms else '>'} {gate.max_latency_p99_ms} ms")
    if name in _REGRESSION:
        passed.append("calibration: not applicable to a regression model")
    else:
        ece = challenger["ece"]
        rule(ece <= gate.max_calibration_error,
             f"calibration error {ece:.4f} {'≤' if ece <= gate.max_calibration_error else '>'} {gate.max_calibration_error}")
    if "fairness_gap" in challenger:
        gap = challenger["fairness_gap"]
        what = "fairness gap (relative RMSE spread)" if name in _REGRESSION else "fairness gap"
        rule(gap <= gate.max_fairness_gap,
             f"{what} {gap:.4f} {'≤' if gap <= gate.max_fairness_gap else '>'} {gate.max_fairness_gap}")

    return GateDecision(
        promote=not failed,
        metric=name,
        challenger_value=value,
        champion_value=champion_value,
        reasons=[*(f"FAIL {r}" for r in failed), *(f"pass {r}" for r in passed)],
        failures=failed,
    )
