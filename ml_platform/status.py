""""What is live?": the registered model, its champion with lineage and approval, and the challenger."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ml_platform import keys, settings
from ml_platform.config import load_config
from ml_platform.lib.governance import NO_CHAMPION, rolled_back_hold
from ml_platform.resources import ModelRegistry
from ml_platform.resources.governance import PREVIOUS_CHAMPION
from ml_platform.resources.registry import CHALLENGER

LINEAGE_TAGS = ("data_snapshot_sha256", "data_snapshot_path", "training_window", "feature_code_version",
                "config_sha256", "git_commit", "seed", "split_rule", "training_run_id", "evaluation_report",
                "model_card", "gate_decision", "gate_decided_at", "promoted_at", "promoted_by", "promoted_from",
                "promotion_reason")


def _version_record(registry: ModelRegistry, version: Any) -> dict:
    tags = version.tags
    metrics = registry.run(version.run_id).data.metrics if version.run_id else {}
    return {
        "version": str(version.version),
        "run_id": version.run_id,
        "aliases": list(version.aliases),
        "metrics": {k.removeprefix("holdout_"): v for k, v in metrics.items() if k.startswith("holdout_")},
        "lineage": {k: tags[k] for k in LINEAGE_TAGS if k in tags},
        "gate_decision": tags.get("gate_decision", "not gated"),
        "gate_reasons": json.loads(tags.get("gate_reasons", "[]")),
        "gate_compared_to": tags.get("gate_compared_to"),
        "approval_state": tags.get("approval_state", "-"),
        "approver": tags.get("approved_by") or tags.get("approver") or "-",
        "approved_at": tags.get("approved_at", "-"),
        "promoted_at": tags.get("promoted_at", "-"),
        "promoted_by": tags.get("promoted_by", "-"),
        "held": rolled_back_hold(str(version.version), tags),  # rolled back: the gate keeps it out (None if not)
    }


def model_status() -> dict:
    config = load_config(settings.config_path(), check_imports=False)
    paths = settings.platform_paths()
    registry = ModelRegistry()
    name = config.model.name
    status: dict[str, Any] = {"model": name, "risk_tier": config.model.risk_tier, "tracking_uri": paths.tracking_uri,
                              "registered": False, "champion": None, "previous_champion": None,
                              "challenger": None, "versions": 0}
    uri = paths.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return status  # nothing registered yet; asking would create an empty store
    versions = registry.versions(name)
    if not versions:
        return status
    status["registered"] = True
    status["versions"] = len(versions)
    champion = registry.champion_version(name)
    if champion is not None:
        status["champion"] = _version_record(registry, registry.version(name, champion))
    status["previous_champion"] = registry.alias_version(name, PREVIOUS_CHAMPION)
    # The challenger: the version awaiting sign-off if there is one, else the newest one if it is not champion.
    newest = str(versions[-1].version)
    candidate = registry.alias_version(name, CHALLENGER) or (newest if newest != champion else None)
    if candidate:
        status["challenger"] = challenger = _version_record(registry, registry.version(name, candidate))
        # A sign-off of this version would be refused (lib/governance.py): say so before someone gives it.
        compared = challenger["gate_compared_to"]
        challenger["gate_outdated"] = (challenger["gate_decision"] == "passed" and challenger["approval_state"] != "approved"
                                       and compared is not None and compared != (champion or NO_CHAMPION))
    return status


def monitoring_status() -> dict:
    """The latest drift, prediction drift, live-performance SLO and freshness state, as the newest
    materializations in Dagster's storage recorded them (nothing is recomputed)."""

    from ml_platform.defs.monitoring.freshness import freshness_states
    from ml_platform.runner import dagster_instance

    config = load_config(settings.config_path(), check_imports=False)
    now = datetime.now(UTC)
    wanted = {"drift": ("drift_report", ("dataset_drift", "drifted_share", "drifted_features", "champion_version")),
              "traffic_drift": ("traffic_drift_report", ("dataset_drift", "drifted_share", "drifted_features")),
              "prediction_drift": ("prediction_drift", ("drifted", "psi", "psi_threshold", "batch_id")),
              "live_performance": ("live_performance", ("metric", "rolling_metric", "floor", "streak", "sustained_breach",
                                                        "breach_started", "labelled_rows", "skipped",
                                                        "window_days", "min_labels")),
              "cost": ("cost_report", ("latency_p99_ms", "predictions_24h", "champion_size_mb",
                                       "champion_training_seconds", "automatic_retrainings_24h"))}
    out: dict[str, Any] = {}
    with dagster_instance() as instance:
        for name, (asset, fields) in wanted.items():
            event = instance.get_latest_materialization_event(keys.key(asset))
            if event is None or event.asset_materialization is None:
                out[name] = None
                continue
            metadata = event.asset_materialization.metadata
            out[name] = {"at": datetime.fromtimestamp(event.timestamp, UTC).isoformat(timespec="seconds"),
                         "run_id": event.run_id,
                         **{f: getattr(metadata[f], "value", metadata[f]) for f in fields if f in metadata}}
        out["freshness"] = [s.to_json(now) for s in freshness_states(instance, config)]
    return out
