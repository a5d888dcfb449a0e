""""What is live?": the registered model, its champion with lineage, and the last challenger."""

from __future__ import annotations

import json
from typing import Any

from ml_platform import settings
from ml_platform.config import load_config
from ml_platform.resources import ModelRegistry

LINEAGE_TAGS = ("data_snapshot_sha256", "data_snapshot_path", "feature_code_version", "config_sha256", "git_commit",
                "seed", "split_rule", "training_run_id", "evaluation_report", "gate_decision", "gate_decided_at",
                "promoted_at", "promoted_by", "promoted_from")


def _version_record(registry: ModelRegistry, version: Any) -> dict:
    metrics = registry.run(version.run_id).data.metrics if version.run_id else {}
    return {
        "version": str(version.version),
        "run_id": version.run_id,
        "aliases": list(version.aliases),
        "metrics": {k.removeprefix("holdout_"): v for k, v in metrics.items() if k.startswith("holdout_")},
        "lineage": {k: version.tags[k] for k in LINEAGE_TAGS if k in version.tags},
        "gate_decision": version.tags.get("gate_decision", "not gated"),
        "gate_reasons": json.loads(version.tags.get("gate_reasons", "[]")),
    }


def model_status() -> dict:
    config = load_config(settings.config_path(), check_imports=False)
    paths = settings.platform_paths()
    registry = ModelRegistry()
    status: dict[str, Any] = {"model": config.model.name, "tracking_uri": paths.tracking_uri, "registered": False,
                              "champion": None, "challenger": None, "versions": 0}
    if not (paths.mlflow_dir / "mlflow.db").exists():
        return status
    versions = registry.versions(config.model.name)
    if not versions:
        return status
    status["registered"] = True
    status["versions"] = len(versions)
    champion = registry.champion(config.model.name)
    if champion is not None:
        status["champion"] = _version_record(registry, champion)
    newest = versions[-1]
    if champion is None or str(newest.version) != str(champion.version):
        status["challenger"] = _version_record(registry, newest)
    return status
