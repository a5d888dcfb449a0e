"""What the MLflow UI shows at the top of the model's page and of each version's (lib/governance.py)."""

from ml_platform.lib.governance import model_description, version_description


def test_the_model_page_says_how_a_version_goes_live_for_each_risk_tier():
    low = model_description(description="Predicts churn.", owner="team:ml", risk_tier="low", approvers=[])
    assert low.startswith("Predicts churn.\n\nOwner: team:ml.")
    assert "becomes champion (risk tier low: no sign-off)" in low
    medium = model_description(description="Predicts churn.", owner="team:ml", risk_tier="medium",
                               approvers=["alice", "bob"])
    assert "waits for a sign-off (risk tier medium)" in medium
    assert "`approval` = `approved` and `approver` = your name (one of: alice, bob)" in medium


def test_a_version_says_the_gate_decision_against_what_and_what_next():
    first = version_description(outcome="promoted", metric="roc_auc", challenger_value=0.80129, champion_value=None,
                                compared_to=None, failures=[], risk_tier="low", approvers=[])
    assert first.startswith("Promotion gate: promoted to champion; roc_auc 0.8013 against the floor and a trivial "
                            "baseline (first model).")
    waiting = version_description(outcome="passed", metric="roc_auc", challenger_value=0.81, champion_value=0.8,
                                  compared_to="3", failures=[], risk_tier="high", approvers=["alice"])
    assert "roc_auc 0.8100 against the champion v3's 0.8000 on the same holdout" in waiting
    assert "Awaits a sign-off (risk tier high)" in waiting and "(one of: alice)" in waiting
    rejected = version_description(outcome="rejected", metric="roc_auc", challenger_value=0.7, champion_value=0.8,
                                   compared_to="3", failures=["fail roc_auc 0.7000 < champion 0.8000 + margin 0.01"],
                                   risk_tier="low", approvers=[])
    assert rejected.startswith("Promotion gate: rejected, the champion is unchanged;")
    assert rejected.endswith("Failed: fail roc_auc 0.7000 < champion 0.8000 + margin 0.01.")
