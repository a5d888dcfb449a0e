"""The canary policy (lib/canary.py) and the sign-off rule that a rolled-back canary blocks promotion."""

import numpy as np
import pytest

from ml_platform.config import CanaryGuardrails
from ml_platform.lib.canary import (
    VariantWindow,
    goes_to_challenger,
    judge,
    population_stability_index,
    traffic_bucket,
)
from ml_platform.lib.governance import check_approval

RAILS = CanaryGuardrails(min_requests=100)


def window(rows=1000, errors=0, latency=10.0, scores=None, labelled=()):
    rng = np.random.default_rng(rows)
    return VariantWindow(rows=rows, errors=errors, call_latencies_ms=[latency] * 50,
                         scores=list(scores if scores is not None else rng.beta(2, 5, rows)), labelled=list(labelled))


def test_routing_is_stable_and_gives_the_configured_share():
    entities = [f"customer-{i}" for i in range(20_000)]
    assert [traffic_bucket(e) for e in entities[:50]] == [traffic_bucket(e) for e in entities[:50]]
    for share in (5, 25, 50):
        routed = np.mean([goes_to_challenger(e, share) for e in entities])
        assert routed == pytest.approx(share / 100, abs=0.01)
    # Ramping up only adds entities: whoever saw the challenger at 5 % still sees it at 25 %.
    assert all(goes_to_challenger(e, 25) for e in entities if goes_to_challenger(e, 5))


def test_not_enough_traffic_means_wait():
    assert judge(window(rows=99), window(), RAILS).status == "wait"


def test_a_challenger_like_the_champion_holds():
    verdict = judge(window(), window(rows=1001), RAILS)
    assert verdict.status == "hold", verdict.reasons
    assert verdict.evidence["score_psi"] < 0.05


@pytest.mark.parametrize("challenger, words", [
    (window(errors=50), "error rate 0.050"),
    (window(latency=30.0), "latency p99 30.0 ms vs champion 10.0 ms"),
    (window(scores=np.random.default_rng(1).beta(5, 2, 1000)), "score distribution shift PSI"),
])
def test_each_guardrail_breaches_on_its_own(challenger, words):
    verdict = judge(window(), challenger, RAILS)
    assert verdict.status == "breach"
    assert len(verdict.reasons) == 1 and words in verdict.reasons[0]


def test_latency_below_the_slack_is_noise():
    assert judge(window(latency=1.0), window(latency=4.0), RAILS).status == "hold"  # 4x, but within 5 ms


def test_live_auc_is_judged_once_labels_arrive():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 400)
    good = [(0.8 * y + 0.2 * rng.random(), int(y)) for y in labels]
    random = [(float(rng.random()), int(y)) for y in labels]
    verdict = judge(window(labelled=good), window(labelled=random), RAILS)
    assert verdict.status == "breach" and "live AUC" in verdict.reasons[0]
    assert verdict.evidence["champion_live_auc"] > 0.95 > 0.6 > verdict.evidence["challenger_live_auc"]


def test_psi_is_zero_for_the_same_distribution_and_grows_with_shift():
    rng = np.random.default_rng(0)
    base = rng.random(5000)
    assert population_stability_index(base, rng.random(5000)) < 0.01
    assert population_stability_index(base, rng.random(5000) ** 3) > 0.25


def test_a_rolled_back_canary_blocks_the_sign_off():
    tags = {"approval": "approved", "approver": "alice", "gate_decision": "passed",
            "evidence_sha256": "abc", "canary": "rolled_back"}
    verdict = check_approval(tags=tags, approvers=["alice"], current_evidence="abc", champion_now=None)
    assert not verdict.ok and "canary was rolled back" in verdict.reason


def test_a_regression_canary_judges_the_live_rmse_against_the_champions():
    rng = np.random.default_rng(4)
    truth = rng.uniform(50, 300, 400)
    close = [(float(t + rng.normal(0, 40)), float(t)) for t in truth]
    closer = [(float(t + rng.normal(0, 38)), float(t)) for t in truth]
    worse = [(float(t + rng.normal(0, 60)), float(t)) for t in truth]
    scores = rng.uniform(50, 300, 1000)
    held = judge(window(scores=scores, labelled=close), window(scores=scores, labelled=closer), RAILS, "regression")
    assert held.status == "hold", held.reasons
    assert held.evidence["challenger_live_rmse"] < held.evidence["champion_live_rmse"]
    breach = judge(window(scores=scores, labelled=close), window(scores=scores, labelled=worse), RAILS, "regression")
    assert breach.status == "breach" and len(breach.reasons) == 1
    assert breach.reasons[0].startswith("live RMSE 5") and "allowed +10%" in breach.reasons[0]
    # Too few labelled rows on a side: the live RMSE is not judged yet.
    few = judge(window(scores=scores, labelled=close), window(scores=scores, labelled=worse[:20]), RAILS, "regression")
    assert few.status == "hold" and "challenger_live_rmse" not in few.evidence
