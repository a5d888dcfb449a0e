"""Sign-off in the MLflow UI: a reviewer sets `approval = approved` and `approver = <name>` on a version.

The approval sensor polls the registry for such tags on versions awaiting sign-off and requests one
`apply_approval` run per distinct sign-off (run_key), which checks the approver against the
allowlist, that the version passed the gate and that its evidence is unchanged, then promotes it
(compare-and-set) or refuses: recorded on the version and in the audit log, and alerted.
"""

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from ml_platform.defs.registry.cards import publish_model_card
from ml_platform.lib.governance import check_approval, evidence_fingerprint
from ml_platform.resources import Governance, ModelRegistry, ProjectResource
from ml_platform.resources.alerts import Alerts, dagster_run_url
from ml_platform.resources.registry import CHALLENGER


class ApprovalRequest(dg.Config):
    version: str


@dg.op(description="Check one sign-off and promote the version, or refuse it (recorded and alerted).")
def apply_approval(context: dg.OpExecutionContext, config: ApprovalRequest, project: ProjectResource,
                   registry: ModelRegistry, governance: Governance, alerts: Alerts) -> dict:
    cfg = project.config()
    name, version = cfg.model.name, config.version
    mv = registry.find_version(name, version)
    if mv is None:
        raise dg.Failure(f"model '{name}' has no version {version}")
    tags = mv.tags
    champion_now = registry.champion_version(name)
    if champion_now == version:
        # Nothing to apply, and nothing to refuse: e.g. a second run of one sign-off (the daemon's sensor and
        # `ml-platform approve` at the same moment), which, judged again, was refused against the champion it had
        # just become, and tagged so.
        how = f"approved by {tags['approved_by']}; " if tags.get("approval_state") == "approved" else ""
        return {"version": version, "promoted": True, "reason": f"{how}it is champion already: nothing to apply"}
    with tempfile.TemporaryDirectory() as tmp:
        report = registry.mlflow().artifacts.download_artifacts(
            run_id=tags["training_run_id"], artifact_path="evaluation/evaluation.json", dst_path=tmp)
        evidence_now = evidence_fingerprint(tags, Path(report).read_bytes())
    verdict = check_approval(tags=tags, approvers=cfg.governance.approvers, current_evidence=evidence_now,
                             champion_now=champion_now)
    approver = tags.get("approver", "").strip() or "unknown"
    now = datetime.now(UTC).isoformat()
    evidence = {"approval": tags.get("approval"), "approver": approver, "gate_decision": tags.get("gate_decision"),
                "evidence_recorded": tags.get("evidence_sha256"), "evidence_now": evidence_now,
                "report": tags.get("gate_evidence"), "dagster_run_id": context.run.run_id}
    if not verdict.ok:
        registry.tag_version(name, version, {"approval_state": "refused", "approval_refused_reason": verdict.reason,
                                             "approval_refused_at": now})
        registry.describe(name, f"{mv.description or ''}\n\nSign-off by {approver} refused ({now}): {verdict.reason}."
                          .strip(), version=version)
        governance.record(name, "approval_refused", version=version, actor=approver, reason=verdict.reason,
                          evidence=evidence)
        alerts.send("approval_refused", f"{name} v{version}: sign-off by {approver} refused",
                    {"reason": verdict.reason, "approver": approver, "approvers allowed": cfg.governance.approvers,
                     "gate decision": tags.get("gate_decision", "none"), "champion": "unchanged"},
                    links={"dagster_run": dagster_run_url(context.run.run_id),
                           "mlflow_version": registry.version_ui_url(name, version)})
        context.log.error(f"{name} v{version}: sign-off by {approver} refused: {verdict.reason}")
        publish_model_card(cfg, registry, version)
        return {"version": version, "promoted": False, "reason": verdict.reason}
    # Compare-and-set on the champion the verdict was checked against: a rollback meanwhile stops it.
    record = governance.promote(name, version, actor=approver, reason=verdict.reason, evidence=evidence,
                                action="promote_approved", expected_champion=champion_now)
    registry.tag_version(name, version, {"approval_state": "approved", "approved_by": approver, "approved_at": now})
    registry.describe(name, f"{mv.description or ''}\n\nSigned off by {approver} ({now}): promoted to champion."
                      .strip(), version=version)
    if registry.alias_version(name, CHALLENGER) == version:
        registry.delete_alias(name, CHALLENGER)
    alerts.send("promotion", f"{name} v{version} is champion (approved by {approver})",
                {"approved by": approver, "previous champion": record["from_version"] or "none",
                 "gate decision": tags.get("gate_decision"),
                 "gate reasons": json.loads(tags.get("gate_reasons", "[]")),
                 "risk tier": tags.get("risk_tier", cfg.model.risk_tier)},
                severity="info",
                links={"dagster_run": dagster_run_url(context.run.run_id),
                       "mlflow_version": registry.version_ui_url(name, version)})
    publish_model_card(cfg, registry, version)
    return {"version": version, "promoted": True, "reason": verdict.reason, "previous": record["from_version"]}


@dg.job(description="Apply one sign-off from the MLflow UI (requested by approval_sensor).")
def approval_job():
    apply_approval()


@dg.sensor(job=approval_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Watches the MLflow registry for sign-offs (tags approval/approver) on versions "
                       "awaiting approval; one run per distinct sign-off.")
def approval_sensor(context: dg.SensorEvaluationContext, project: ProjectResource, registry: ModelRegistry):
    cfg = project.config()
    requests = []
    for mv in registry.versions(cfg.model.name):
        tags = mv.tags
        # Any sign-off not yet applied: on a version awaiting approval, a refused one being corrected, or one
        # the gate rejected (which is refused, on the record). The run key makes each sign-off count once.
        if tags.get("approval") and tags.get("approval_state") != "approved":
            sign_off = f"{tags.get('approval')}|{tags.get('approver', '')}|{tags.get('evidence_sha256', '')}"
            requests.append(dg.RunRequest(
                run_key=f"{cfg.model.name}:v{mv.version}:{sign_off}",
                run_config={"ops": {"apply_approval": {"config": {"version": str(mv.version)}}}},
                tags={"ml_platform/model": cfg.model.name, "ml_platform/version": str(mv.version)},
            ))
    if not requests:
        return dg.SkipReason("no new sign-offs")
    return requests


@dg.definitions
def approvals() -> dg.Definitions:
    return dg.Definitions(jobs=[approval_job], sensors=[approval_sensor])
