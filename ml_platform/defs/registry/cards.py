"""Publishing a version's model card from what the registry recorded (tags, metrics, evaluation report)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ml_platform.config import ProjectConfig
from ml_platform.lib.model_card import build_model_card, render_markdown, write_model_card
from ml_platform.resources import ModelRegistry


def publish_model_card(cfg: ProjectConfig, registry: ModelRegistry, version: str) -> tuple[str, str]:
    """Render the card (Markdown + HTML), attach it to the version's run and tag the version with its URI.
    Called when the gate decides and again when a sign-off lands, so the approval record is current.
    Returns (the card's artifact URI, its Markdown)."""
    mv = registry.version(cfg.model.name, version)
    tags = mv.tags
    run_id = tags["training_run_id"]
    mlflow = registry.mlflow()
    with tempfile.TemporaryDirectory() as tmp:
        report = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation/evaluation.json",
                                                     dst_path=tmp)
        evaluation = json.loads(Path(report).read_text())
        card = build_model_card(
            cfg,
            version=str(version),
            training_data={"sha256": tags.get("data_snapshot_sha256"), "path": tags.get("data_snapshot_path"),
                           "feature_code_version": tags.get("feature_code_version"),
                           "feature_table": tags.get("feature_table"),
                           "rows": registry.run(run_id).data.params.get("train_rows")},
            lineage={"mlflow_run_id": run_id, "git_commit": tags.get("git_commit"),
                     "config_sha256": tags.get("config_sha256"), "seed": tags.get("seed"),
                     "packages": tags.get("packages")},
            evaluation=evaluation,
            gate={"decision": tags.get("gate_decision"), "reasons": tags.get("gate_reasons", "[]"),
                  "compared_to": tags.get("gate_compared_to"), "decided_at": tags.get("gate_decided_at")},
            approval={"state": tags.get("approval_state"), "approver": tags.get("approved_by"),
                      "approved_at": tags.get("approved_at"), "reason": tags.get("approval_refused_reason")},
        )
        md, html = write_model_card(card, Path(tmp) / "model_card")
        registry.log_to_run(run_id, files=[md, html], artifact_dir="model_card")
    uri = registry.artifact_uri(run_id, "model_card/model_card.html")
    registry.tag_version(cfg.model.name, version, {"model_card": uri})
    return uri, render_markdown(card)
