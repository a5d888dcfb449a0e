"""Sign-off rules (lib/governance.py): who may approve what, and against which champion."""

from ml_platform.lib.governance import NO_CHAMPION, check_approval

SIGNED = {"approval": "approved", "approver": "alice", "gate_decision": "passed", "evidence_sha256": "abc"}


def verdict(champion_now, **tags):
    return check_approval(tags={**SIGNED, **tags}, approvers=["alice"], current_evidence="abc",
                          champion_now=champion_now)


def test_a_sign_off_promotes_when_the_champion_is_the_one_the_gate_compared_with():
    assert verdict(None, gate_compared_to=NO_CHAMPION).ok
    assert verdict("3", gate_compared_to="3").ok


def test_a_sign_off_after_the_champion_changed_is_refused_and_says_to_gate_again():
    # v2 was gated when there was no champion; meanwhile v1 was signed off and is champion.
    refused = verdict("1", gate_compared_to=NO_CHAMPION)
    assert not refused.ok
    assert refused.reason.startswith("the champion changed since the gate decided: the gate compared this version "
                                     "with no champion, and the champion is now v1; to have the gate compare them, run "
                                     "`ml-platform run`")
    # v5 was gated against v4; a rollback made v3 champion.
    rolled_back = verdict("3", gate_compared_to="4")
    assert not rolled_back.ok and "compared this version with the champion v4, and the champion is now v3" in \
        rolled_back.reason
    # And the champion rolled away to nothing is a change too.
    assert not verdict(None, gate_compared_to="4").ok


def test_a_version_gated_before_the_compared_to_tag_existed_is_judged_as_before():
    assert verdict("7").ok


def test_the_other_rules_still_come_first():
    assert "not on the allowlist" in verdict(None, approver="mallory", gate_compared_to=NO_CHAMPION).reason
    assert "did not pass the gate" in verdict(None, gate_decision="rejected").reason
    assert "evidence changed" in verdict(None, evidence_sha256="zzz").reason


def test_a_rolled_back_version_is_held_until_a_person_brings_it_back():
    from ml_platform.lib.governance import rolled_back_hold

    assert rolled_back_hold("2", {"gate_decision": "promoted"}) is None  # never rolled back
    rolled = {"promoted_at": "2026-12-01T10:00:00.000000+00:00", "demoted_at": "2026-12-02T09:00:00.000000+00:00",
              "demoted_by": "ops@example.com", "demotion_reason": "complaints"}
    reason = rolled_back_hold("2", rolled)
    assert reason == ("v2 was rolled back by ops@example.com at 2026-12-02T09:00:00.000000+00:00 (complaints): the gate "
                      "does not put it live again; a person can, with `ml-platform rollback --to 2`")
    # Rolled forward again by a person (a later promoted_at): the gate judges it as any other version.
    assert rolled_back_hold("2", {**rolled, "promoted_at": "2026-12-03T08:00:00.000000+00:00"}) is None
    # Rolled back by its serving canary: a sign-off would be refused (check_approval), so it is not offered again.
    assert "canary was rolled back by its guardrails" in rolled_back_hold("3", {"gate_decision": "passed",
                                                                               "canary": "rolled_back"})
    assert rolled_back_hold("3", {"gate_decision": "passed", "canary": "passed"}) is None
