"""Registry governance rules, as pure functions: who may approve what, and what counts as known-good.

The registry is a state machine over model versions. States live in MLflow tags on each version:

    gate_decision   promoted | rejected | passed (awaiting approval) | already champion
    approval_state  not required | pending | approved | refused
    approval        set by a reviewer in the MLflow UI: "approved"
    approver        set by the reviewer: their name, checked against governance.approvers
    demoted_at      set by a rollback on the version it took the alias from (with demoted_by, demotion_reason);
                    until a person brings it back (promoted_at later), the gate holds it: rolled_back_hold
    canary          set by the serving canary: running | passed | rolled_back (then the gate holds it too)

Transitions (promote, reject, rollback, refused approvals) are made by the Governance resource
under a lock, and each is appended to the audit log.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

# Gate outcomes that mean "this version passed the gate at some point".
PASSED_GATE = {"promoted", "passed", "already champion"}


def rolled_back_hold(version: str, tags: dict[str, str]) -> str | None:
    """Why the gate must not offer `version` again, if it was rolled back: by a person, and nobody brought it back
    since; or by its serving canary's guardrails. A run that trains it again (the same inputs: a cache hit) would
    otherwise pass it against the champion once more: for a low-risk model, promote it with nobody asked; for a
    higher tier, ask for a sign-off that check_approval refuses."""
    demoted = tags.get("demoted_at")
    if demoted is not None and tags.get("promoted_at", "") < demoted:  # both ISO times in UTC: they sort as text
        return (f"v{version} was rolled back by {tags.get('demoted_by', 'someone')} at {demoted} "
                f"({tags.get('demotion_reason') or 'no reason given'}): the gate does not put it live again; "
                f"a person can, with `ml-platform rollback --to {version}`")
    if tags.get("canary") == "rolled_back":
        return (f"v{version}'s canary was rolled back by its guardrails (tag canary_evidence says why): the gate does "
                "not offer it again; train a better version")
    return None


@dataclass(frozen=True)
class ApprovalVerdict:
    ok: bool
    reason: str


def evidence_fingerprint(tags: dict[str, str], evaluation_report: bytes) -> str:
    """SHA-256 over what a reviewer approves: the gate decision and reasons, the data and code it was
    trained from, and the evaluation report's bytes. Recorded at gate time, re-checked at approval."""
    fields = ("gate_decision", "gate_reasons", "data_snapshot_sha256", "feature_code_version", "config_sha256",
              "training_run_id")
    payload = {k: tags.get(k, "") for k in fields}
    payload["evaluation_report_sha256"] = hashlib.sha256(evaluation_report).hexdigest()
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# The tag gate_compared_to of a version gated when there was no champion.
NO_CHAMPION = "none (first model)"
# The tags a reviewer sets to sign off (in the MLflow UI, or `ml-platform approve`).
SIGN_OFF_TAGS = ("approval", "approver")


def check_approval(*, tags: dict[str, str], approvers: list[str], current_evidence: str,
                   champion_now: str | None) -> ApprovalVerdict:
    """Whether a sign-off recorded in `tags` may promote the version, the champion being `champion_now`."""
    approver = tags.get("approver", "").strip()
    if tags.get("approval", "").strip().lower() != "approved":
        return ApprovalVerdict(False, f"tag approval is {tags.get('approval')!r}, not 'approved'")
    if not approver:
        return ApprovalVerdict(False, "no approver named: set the tag `approver` to your name with `approval`")
    if approver not in approvers:
        return ApprovalVerdict(False, f"approver '{approver}' is not on the allowlist (governance.approvers: "
                                      f"{', '.join(approvers) or 'empty'})")
    if tags.get("gate_decision") not in PASSED_GATE:
        return ApprovalVerdict(False, f"the version did not pass the gate (gate_decision: "
                                      f"{tags.get('gate_decision', 'not gated')})")
    if tags.get("canary") == "rolled_back":
        return ApprovalVerdict(False, "the version's canary was rolled back by its guardrails (tag canary_evidence "
                                      "says why): it may not become champion")
    recorded = tags.get("evidence_sha256")
    if not recorded:
        return ApprovalVerdict(False, "no evidence was recorded at gate time (tag evidence_sha256 is missing)")
    if recorded != current_evidence:
        return ApprovalVerdict(False, "the evidence changed since the gate decided (evaluation report or gate "
                                      "tags differ from what was recorded): re-run the gate")
    # The gate judged the version against the champion of its day. A sign-off given after another version took
    # the alias (a sign-off of an older challenger, a rollback) would promote a version never compared with it.
    compared_to = tags.get("gate_compared_to")  # missing on versions gated before this tag existed
    if compared_to is not None and compared_to != (champion_now or NO_CHAMPION):
        then = "no champion" if compared_to == NO_CHAMPION else f"the champion v{compared_to}"
        now = f"v{champion_now}" if champion_now else "none"
        return ApprovalVerdict(False, f"the champion changed since the gate decided: the gate compared this version "
                                      f"with {then}, and the champion is now {now}; to have the gate compare them, "
                                      f"run `ml-platform run` (the champion moved, so the gate decides again; with "
                                      f"no new data it gates this version, not retrained), then sign off again")
    return ApprovalVerdict(True, f"approved by {approver}")


def sign_off_instructions(approvers: list[str]) -> str:
    return (f"To sign off, add two tags to the version: `approval` = `approved` and `approver` = your name "
            f"(one of: {', '.join(approvers) or 'nobody yet: set governance.approvers'}).")


def model_description(*, description: str, owner: str, risk_tier: str, approvers: list[str]) -> str:
    """What the MLflow UI shows at the top of the registered model's page: what it is, and how a version goes live."""
    if risk_tier == "low":
        how = "A version that passes the promotion gate becomes champion (risk tier low: no sign-off)."
    else:
        how = (f"A version that passes the promotion gate becomes `challenger` and waits for a sign-off (risk tier "
               f"{risk_tier}). {sign_off_instructions(approvers)}")
    return (f"{description}\n\nOwner: {owner}. The live version holds the alias `champion`. {how} Every promotion, "
            f"rejection, sign-off and rollback is in the audit log (`ml-platform history`).")


def version_description(*, outcome: str, metric: str, challenger_value: float, champion_value: float | None,
                        compared_to: str | None, failures: list[str], risk_tier: str, approvers: list[str]) -> str:
    """What the MLflow UI shows for a version after the gate: the decision in a sentence, and what to do next."""
    against = (f"against the champion v{compared_to}'s {champion_value:.4f} on the same holdout"
               if champion_value is not None and compared_to else "against the floor and a trivial baseline (first model)")
    score = f"{metric} {challenger_value:.4f} {against}"
    if outcome == "promoted":
        return f"Promotion gate: promoted to champion; {score}. Each rule and its evidence: the `gate_*` tags."
    if outcome == "passed":
        return (f"Promotion gate: passed; {score}. Awaits a sign-off (risk tier {risk_tier}) to become champion. "
                f"{sign_off_instructions(approvers)}")
    if outcome == "rejected":
        return f"Promotion gate: rejected, the champion is unchanged; {score}. Failed: {'; '.join(failures)}."
    return f"Promotion gate: {outcome}; {score}."
