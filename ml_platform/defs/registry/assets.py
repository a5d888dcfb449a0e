"""Registry: the champion/challenger promotion gate. The champion is the MLflow alias `champion`.

Low risk tier: a version that passes the gate becomes champion (a compare-and-set, audited).
Medium and high: it becomes `challenger` with approval_state=pending, and waits for a sign-off in the
MLflow UI (see approvals.py).
"""

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from ml_platform.config import ProjectConfig
from ml_platform.defs.evaluation.assets import evaluate_on_holdout
from ml_platform.defs.registry.cards import publish_model_card
from ml_platform.defs.sources import observe_as_read
from ml_platform.lib.gate import GateDecision, decide_promotion
from ml_platform.lib.governance import (
    NO_CHAMPION,
    SIGN_OFF_TAGS,
    evidence_fingerprint,
    rolled_back_hold,
    sign_off_instructions,
    version_description,
)
from ml_platform.lib.modeling import split_training_data
from ml_platform.lib.snapshots import read_snapshot
from ml_platform.resources import Governance, ModelRegistry, ProjectResource, Warehouse
from ml_platform.resources.alerts import Alerts, dagster_run_url
from ml_platform.resources.registry import CHALLENGER


@dg.asset(
    group_name="registry",
    kinds={"mlflow"},
    deps=["champion_alias"],
    description="The live model: the MLflow alias `champion`. A new version takes it only if it beats the "
    "current champion on the same holdout by the configured margin and breaks no guardrail "
    "(the first model must beat a trivial baseline and the floor); from risk tier medium up it also "
    "needs a sign-off in the MLflow UI. Every decision is recorded on the version and in the audit log. "
    "Stale when the champion moved since (a sign-off, a rollback): the next run gates the newest version again, "
    "against the champion of the day.",
)
def champion_model(context: dg.AssetExecutionContext, project: ProjectResource, registry: ModelRegistry,
                   governance: Governance, alerts: Alerts, warehouse: Warehouse, model_evaluation: dict) -> dict:
    result = _gate(context, project.config(), registry, governance, alerts, model_evaluation)
    # The decision is about the champion as it is now, after this gate's own promotion: recorded as what the step
    # read, so that only a later move of the alias (a sign-off, a rollback) makes the gate stale.
    observe_as_read(context, project, warehouse, "champion_alias")
    return result


def _gate(context: dg.AssetExecutionContext, cfg: ProjectConfig, registry: ModelRegistry, governance: Governance,
          alerts: Alerts, model_evaluation: dict) -> dict:
    name, challenger = cfg.model.name, model_evaluation["version"]
    current = registry.champion_version(name)
    champion_metrics = None
    if current is not None and current != challenger:
        # Re-score the champion on the challenger's holdout: the comparison must be on the same rows.
        data = model_evaluation["training_data"]
        split = split_training_data(read_snapshot(Path(data["path"]), data["sha256"]), cfg)
        champion_metrics = evaluate_on_holdout(registry.load_model(name, current), split, cfg, latency_rows=20).metrics
    decision = decide_promotion(gate=cfg.gate, challenger=model_evaluation["metrics"], champion=champion_metrics,
                                baseline=model_evaluation["baseline"])
    held = rolled_back_hold(challenger, registry.version(name, challenger).tags) if current != challenger else None
    if current == challenger:
        outcome = "already champion"
    elif held:
        # Rolled back (by a person, or by its canary): the gate does not offer it again. Its tags keep the decision
        # of its day.
        outcome = "held"
        decision = dataclasses.replace(decision, reasons=[held, *decision.reasons])
    elif not decision.promote:
        outcome = "rejected"
    else:
        outcome = "passed" if cfg.needs_approval else "promoted"
    if outcome in ("rejected", "passed") and registry.version(name, challenger).tags.get("approval_state") != "approved":
        # A new decision on a version gated before (the champion changed since): a sign-off given on the old
        # evidence does not carry over to the new one (the approval sensor would apply it unseen).
        registry.untag_version(name, challenger, list(SIGN_OFF_TAGS))
    if outcome == "held":
        governance.record(name, "hold", version=challenger, actor="promotion gate", reason=held,
                          evidence={"gate_decision": outcome, "reasons": decision.reasons,
                                    "report": model_evaluation["report_uri"], "dagster_run_id": context.run.run_id})
        _alert_gate_outcome(alerts, outcome, cfg, registry, decision, model_evaluation, current,
                            run_id=context.run.run_id)
        return _gate_result(context, cfg, registry, decision, outcome, challenger, current, current)
    registry.tag_version(name, challenger, {
        "gate_decision": outcome,
        "gate_reasons": json.dumps(decision.reasons, ensure_ascii=False),  # the UI shows "≥" as it is
        "gate_compared_to": current or NO_CHAMPION,
        "gate_evidence": model_evaluation["report_uri"],
        "gate_decided_at": datetime.now(UTC).isoformat(),
        "gate_dagster_run_id": context.run.run_id,
        "risk_tier": cfg.model.risk_tier,
    })
    # What a reviewer signs off: fixed now, re-checked when the approval arrives.
    tags = registry.version(name, challenger).tags
    evidence_sha = evidence_fingerprint(tags, Path(model_evaluation["report_json_path"]).read_bytes())
    registry.tag_version(name, challenger, {"evidence_sha256": evidence_sha})
    registry.describe(name, version_description(
        outcome=outcome, metric=decision.metric, challenger_value=decision.challenger_value,
        champion_value=decision.champion_value, compared_to=current, failures=decision.failures,
        risk_tier=cfg.model.risk_tier, approvers=cfg.governance.approvers), version=challenger)
    evidence = {"gate_decision": outcome, "reasons": decision.reasons, "report": model_evaluation["report_uri"],
                "evidence_sha256": evidence_sha, "dagster_run_id": context.run.run_id}

    champion = current
    if outcome == "rejected":
        registry.tag_version(name, challenger, {"approval_state": "not required (rejected by the gate)"})
        governance.record(name, "reject", version=challenger, actor="promotion gate",
                          reason="; ".join(decision.failures), evidence=evidence)
    elif outcome == "passed":
        registry.set_alias(name, CHALLENGER, challenger)
        registry.tag_version(name, challenger, {"approval_state": "pending"})
        governance.record(name, "await_approval", version=challenger, actor="promotion gate",
                          reason=f"passed the gate; risk tier {cfg.model.risk_tier} needs a sign-off by one of "
                                 f"{', '.join(cfg.governance.approvers)}", evidence=evidence)
    elif outcome == "promoted":
        registry.tag_version(name, challenger, {"approval_state": f"not required (risk tier {cfg.model.risk_tier})"})
        # Compare-and-set: if a rollback or another promotion moved the champion since we read it, stop.
        governance.promote(name, challenger, actor="promotion gate", reason="passed the gate", evidence=evidence,
                           expected_champion=current)
        champion = challenger
    if outcome in ("rejected", "promoted", "passed"):
        _alert_gate_outcome(alerts, outcome, cfg, registry, decision, model_evaluation, current,
                            run_id=context.run.run_id)

    return _gate_result(context, cfg, registry, decision, outcome, challenger, champion, current)


def _gate_result(context: dg.AssetExecutionContext, cfg: ProjectConfig, registry: ModelRegistry,
                 decision: GateDecision, outcome: str, challenger: str, champion: str | None,
                 current: str | None) -> dict:
    """The gate's output and the metadata the asset shows, whatever the outcome."""
    name = cfg.model.name
    card_uri, card_markdown = publish_model_card(cfg, registry, challenger)
    context.add_output_metadata({
        "decision": outcome,
        "challenger_version": challenger,
        "champion_version": champion or "none",
        "previous_champion": current or "none",
        f"challenger_{decision.metric}": round(decision.challenger_value, 4),
        # The first model has no champion to compare with: the row says so instead of showing an empty value.
        **({f"champion_{decision.metric}": round(decision.champion_value, 4)} if decision.champion_value is not None
           else {"compared_with": "the floor and a trivial baseline (no champion yet)"}),
        "mlflow_version": dg.MetadataValue.url(registry.version_ui_url(name, challenger)),
        "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in decision.reasons)),
        "model_card": dg.MetadataValue.md(card_markdown),
        "model_card_uri": card_uri,
    })
    if champion is None:
        context.log.warning(f"no champion yet: version {challenger} is {outcome}")
    return {"champion_version": champion, "previous_champion": current, "challenger_version": challenger,
            "decision": outcome, "reasons": decision.reasons, "metric": decision.metric,
            "challenger_value": decision.challenger_value, "champion_value": decision.champion_value,
            "approvers": cfg.governance.approvers if outcome == "passed" else []}


def _alert_gate_outcome(alerts: Alerts, outcome: str, cfg: ProjectConfig, registry: ModelRegistry,
                        decision: GateDecision, model_evaluation: dict, current: str | None, *, run_id: str) -> None:
    """A rejection (the champion stays), a promotion without sign-off (risk tier low), a version waiting for
    a sign-off (the approvers learn of it here) or a rolled-back version held, to the team channel."""
    name, version = cfg.model.name, model_evaluation["version"]
    metrics, value = model_evaluation["metrics"], f"{decision.challenger_value:.4f}"
    evidence = {
        decision.metric: f"{value} (first model: against the floor and a trivial baseline)"
        if decision.champion_value is None else f"{value} vs champion {decision.champion_value:.4f} on the same holdout",
        **{label: metrics[key] for key, label in (("ece", "calibration error"), ("latency_p99_ms", "latency p99 ms"),
                                                  ("fairness_gap", "fairness gap")) if key in metrics},
    }
    links = {"dagster_run": dagster_run_url(run_id), "mlflow_version": registry.version_ui_url(name, version),
             "mlflow_run": registry.run_ui_url(model_evaluation["run_id"]), "report": model_evaluation["report_path"]}
    if outcome == "rejected":
        alerts.send("gate_rejection", f"{name} v{version} rejected by the promotion gate",
                    {"failed": decision.failures, **evidence,
                     "champion": f"v{current} unchanged" if current else "none yet"}, links=links)
    elif outcome == "passed":
        alerts.send("approval_requested", f"{name} v{version} passed the gate and waits for a sign-off (risk tier "
                                          f"{cfg.model.risk_tier})",
                    {**evidence, "champion": f"v{current} until signed off" if current else "none yet",
                     "passed": decision.reasons, "approvers": cfg.governance.approvers,
                     "to sign off": f"{sign_off_instructions(cfg.governance.approvers)} Or run `ml-platform approve "
                                    f"--version {version} --as <name>`."},
                    severity="info", links=links)
    elif outcome == "held":
        alerts.send("rolled_back_held", f"{name} v{version} was trained again and held by the promotion gate: it was "
                                        "rolled back", {"why": decision.reasons[0], **evidence,
                                                        "champion": f"v{current} unchanged",
                                                        "to bring it back": f"ml-platform rollback --to {version} "
                                                                            "--reason <why> --as <name>"},
                    severity="info", links=links)
    else:
        alerts.send("promotion", f"{name} v{version} is champion (promoted by the gate, risk tier "
                                 f"{cfg.model.risk_tier}: no sign-off needed)",
                    {"previous champion": f"v{current}" if current else "none", **evidence,
                     "passed": decision.reasons}, severity="info", links=links)
