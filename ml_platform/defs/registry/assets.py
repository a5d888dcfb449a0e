"""Registry: the champion/challenger promotion gate. The champion is the MLflow alias `champion`."""

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from ml_platform.defs.evaluation.assets import evaluate_on_holdout
from ml_platform.lib.gate import decide_promotion
from ml_platform.lib.modeling import split_training_data
from ml_platform.lib.snapshots import read_snapshot
from ml_platform.resources import ModelRegistry, ProjectResource


@dg.asset(
    group_name="registry",
    kinds={"mlflow"},
    owners=["team:ml-platform"],
    description="The live model: the MLflow alias `champion`. A new version takes it only if it beats the "
    "current champion on the same holdout by the configured margin and breaks no guardrail "
    "(the first model must beat a trivial baseline and the floor). The decision and its reasons are "
    "recorded on the version as tags.",
)
def champion_model(context: dg.AssetExecutionContext, project: ProjectResource, registry: ModelRegistry,
                   model_evaluation: dict) -> dict:
    cfg = project.config()
    name, challenger = cfg.model.name, model_evaluation["version"]
    current = registry.champion_version(name)
    champion_metrics = None
    if current is not None and current != challenger:
        # Re-score the champion on the challenger's holdout: the comparison must be on the same rows.
        data = model_evaluation["training_data"]
        split = split_training_data(read_snapshot(Path(data["path"]), data["sha256"]), cfg)
        champion_metrics = evaluate_on_holdout(registry.load_model(name, current), split, cfg,
                                               latency_rows=20).metrics
    decision = decide_promotion(gate=cfg.gate, challenger=model_evaluation["metrics"], champion=champion_metrics,
                                baseline=model_evaluation["baseline"])
    if current == challenger:
        decision_text = "already champion"
    else:
        decision_text = decision.verdict
    now = datetime.now(UTC).isoformat()
    registry.tag_version(name, challenger, {
        "gate_decision": decision_text,
        "gate_reasons": json.dumps(decision.reasons),
        "gate_compared_to": current or "none (first model)",
        "gate_evidence": model_evaluation["report_uri"],
        "gate_decided_at": now,
        "gate_dagster_run_id": context.run.run_id,
    })
    previous = current
    if decision.promote and previous != challenger:
        registry.set_champion(name, challenger)
        registry.tag_version(name, challenger, {
            "promoted_at": now, "promoted_by": "promotion gate", "promoted_from": previous or "none",
        })
    champion = challenger if decision.promote else previous
    context.add_output_metadata({
        "decision": decision_text,
        "challenger_version": challenger,
        "champion_version": champion or "none",
        "previous_champion": previous or "none",
        f"challenger_{decision.metric}": decision.challenger_value,
        f"champion_{decision.metric}": decision.champion_value if decision.champion_value is not None else float("nan"),
        "mlflow_version": dg.MetadataValue.url(registry.version_ui_url(name, champion or challenger)),
        "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in decision.reasons)),
    })
    if champion is None:
        context.log.warning(f"no champion: version {challenger} was rejected: {decision.failures}")
    return {"champion_version": champion, "previous_champion": previous, "challenger_version": challenger,
            "decision": decision_text, "reasons": decision.reasons, "metric": decision.metric,
            "challenger_value": decision.challenger_value, "champion_value": decision.champion_value}
