"""The promotion gate's rules: margin over the champion, each guardrail, and the first model."""

import pytest

from ml_platform.config import GateSection
from ml_platform.lib.gate import decide_promotion

GATE = GateSection(metric="roc_auc", min_improvement=0.01, floor=0.7, baseline_margin=0.05,
                   max_latency_p99_ms=50, max_calibration_error=0.05, max_fairness_gap=0.1)
BASELINE = {"roc_auc": 0.5, "log_loss": 0.6, "brier": 0.2, "f1": 0.0}


def metrics(**overrides):
    return {"roc_auc": 0.85, "log_loss": 0.4, "brier": 0.12, "f1": 0.6, "ece": 0.02, "latency_p99_ms": 10.0,
            "fairness_gap": 0.03, **overrides}


def test_challenger_beating_champion_by_more_than_margin_is_promoted():
    decision = decide_promotion(gate=GATE, challenger=metrics(roc_auc=0.87), champion=metrics(roc_auc=0.85),
                                baseline=BASELINE)
    assert decision.promote
    assert decision.champion_value == pytest.approx(0.85)
    assert decision.failures == []


def test_challenger_within_margin_is_rejected_with_the_numbers():
    decision = decide_promotion(gate=GATE, challenger=metrics(roc_auc=0.855), champion=metrics(roc_auc=0.85),
                                baseline=BASELINE)
    assert not decision.promote
    assert len(decision.failures) == 1
    assert "0.8550 vs champion 0.8500" in decision.failures[0]
    assert "margin 0.01" in decision.failures[0]


def test_challenger_worse_than_champion_is_rejected():
    decision = decide_promotion(gate=GATE, challenger=metrics(roc_auc=0.80), champion=metrics(roc_auc=0.85),
                                baseline=BASELINE)
    assert not decision.promote


@pytest.mark.parametrize(
    ("breach", "words"),
    [
        ({"latency_p99_ms": 80.0}, "latency p99 80.00 ms > 50"),
        ({"ece": 0.09}, "calibration error 0.0900 > 0.05"),
        ({"fairness_gap": 0.25}, "fairness gap 0.2500 > 0.1"),
    ],
)
def test_each_guardrail_blocks_an_otherwise_better_challenger(breach, words):
    decision = decide_promotion(gate=GATE, challenger=metrics(roc_auc=0.95, **breach),
                                champion=metrics(roc_auc=0.85), baseline=BASELINE)
    assert not decision.promote
    assert decision.failures == [words] or any(words in f for f in decision.failures)
    assert len(decision.failures) == 1


def test_guardrails_apply_to_the_first_model_too():
    decision = decide_promotion(gate=GATE, challenger=metrics(ece=0.3), champion=None, baseline=BASELINE)
    assert not decision.promote
    assert any("calibration error" in f for f in decision.failures)


def test_first_model_must_reach_the_floor():
    decision = decide_promotion(gate=GATE, challenger=metrics(roc_auc=0.65), champion=None, baseline=BASELINE)
    assert not decision.promote
    assert any("floor 0.7000" in f for f in decision.failures)


def test_first_model_must_beat_the_trivial_baseline_by_its_margin():
    gate = GATE.model_copy(update={"floor": 0.5})
    decision = decide_promotion(gate=gate, challenger=metrics(roc_auc=0.54), champion=None, baseline=BASELINE)
    assert not decision.promote
    assert any("trivial baseline" in f for f in decision.failures)


def test_good_first_model_is_promoted():
    decision = decide_promotion(gate=GATE, challenger=metrics(), champion=None, baseline=BASELINE)
    assert decision.promote
    assert decision.champion_value is None
    assert decision.verdict == "promoted"


def test_lower_is_better_metrics_are_compared_the_right_way_round():
    gate = GATE.model_copy(update={"metric": "neg_log_loss", "min_improvement": 0.01})
    better = decide_promotion(gate=gate, challenger=metrics(log_loss=0.35), champion=metrics(log_loss=0.40),
                              baseline=BASELINE)
    worse = decide_promotion(gate=gate, challenger=metrics(log_loss=0.45), champion=metrics(log_loss=0.40),
                             baseline=BASELINE)
    assert better.promote and not worse.promote


def test_fairness_is_not_judged_without_a_sensitive_column():
    challenger = metrics()
    del challenger["fairness_gap"]
    decision = decide_promotion(gate=GATE, challenger=challenger, champion=None, baseline=BASELINE)
    assert decision.promote
    assert not any("fairness" in r for r in decision.reasons)
