"""Monitoring: an Evidently data-drift report of the newest batch against the champion's training data."""

import json
from pathlib import Path

import dagster as dg
import pandas as pd

from ml_platform.defs.features import (
    assets as features,  # the module, so the loader finds feature_models once
)
from ml_platform.lib.drift import detect_drift
from ml_platform.lib.modeling import holdout_mask
from ml_platform.lib.snapshots import read_snapshot
from ml_platform.resources import ModelRegistry, ProjectResource, Warehouse


@dg.asset(
    group_name="monitoring",
    kinds={"evidently"},
    deps=[features.feature_models],
    output_required=False,  # no champion yet (e.g. awaiting sign-off): nothing to do, and the run goes on
    description="Evidently 0.7 data-drift report: the newest batch's features against the champion's training "
    "rows (seeded samples of drift.sample_rows per side). Per-feature scores and the drifted share as metadata.",
)
def drift_report(context: dg.AssetExecutionContext, project: ProjectResource, registry: ModelRegistry,
                 warehouse: Warehouse, raw_batch: dict, champion_model: dict):
    cfg = project.config()
    version = champion_model["champion_version"]
    if version is None:
        context.log.warning(f"no drift report: model '{cfg.model.name}' has no champion yet, so there is no "
                            f"training reference (version {champion_model['challenger_version']} is "
                            f"{champion_model['decision']})")
        return
    tags = registry.version(cfg.model.name, version).tags
    reference_all = read_snapshot(Path(tags["data_snapshot_path"]), tags["data_snapshot_sha256"])
    reference = reference_all[~holdout_mask(reference_all, cfg)]
    current = warehouse.query(f"select * from features.{cfg.features.dbt_model} where snapshot_hash = ?",
                              [raw_batch["sha256"]])
    model_columns = registry.load_model(cfg.model.name, version).feature_names_in_
    columns = [c for c in model_columns if c in current.columns]
    categorical = [c for c in columns if not pd.api.types.is_numeric_dtype(reference[c]) or reference[c].dtype == bool]
    result = detect_drift(reference, current, columns=columns, categorical=categorical,
                          share_threshold=cfg.drift.drifted_share_threshold, sample_rows=cfg.drift.sample_rows,
                          seed=cfg.training.seed)

    out = project.paths().reports / "drift"
    out.mkdir(parents=True, exist_ok=True)
    html_path = out / f"{cfg.model.name}-{raw_batch['batch_id']}-{raw_batch['sha256'][:12]}.html"
    html_path.write_text(result.html)
    summary = {"batch_id": raw_batch["batch_id"], "snapshot_sha256": raw_batch["sha256"],
               "champion_version": version, **result.to_json()}
    json_path = html_path.with_suffix(".json")
    json_path.write_text(json.dumps(summary, indent=2, default=float))

    mlflow = registry.mlflow()
    with mlflow.start_run(experiment_id=registry.experiment_id(f"{cfg.model.name}-monitoring"),
                          run_name=f"drift-{raw_batch['batch_id']}") as run:
        mlflow.set_tags({"kind": "drift_report", "batch_id": raw_batch["batch_id"], "champion_version": version,
                         "snapshot_sha256": raw_batch["sha256"]})
        mlflow.log_metrics({"drifted_share": result.drifted_share, "dataset_drift": float(result.dataset_drift)})
        mlflow.log_artifact(str(html_path), "drift")
        mlflow.log_artifact(str(json_path), "drift")

    scores = pd.DataFrame([
        {"feature": c, "score": v["score"], "method": v["method"], "threshold": v["threshold"], "drifted": v["drifted"]}
        for c, v in result.columns.items()
    ]).sort_values("drifted", ascending=False)
    context.add_output_metadata({
        "dataset_drift": result.dataset_drift,
        "drifted_share": float(result.drifted_share),
        "drifted_features": ", ".join(c for c, v in result.columns.items() if v["drifted"]) or "none",
        "share_threshold": result.share_threshold,
        "reference_rows": result.reference_rows,
        "current_rows": result.current_rows,
        "sampled": result.sampled,
        "report_html": dg.MetadataValue.path(str(html_path)),
        "mlflow_run_id": run.info.run_id,
        "per_feature": dg.MetadataValue.md(_markdown_table(scores)),
    })
    yield dg.Output({"report_path": str(html_path), "mlflow_run_id": run.info.run_id, **summary})


def _markdown_table(frame: pd.DataFrame) -> str:
    rows = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    for record in frame.itertuples(index=False):
        rows.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in record) + " |")
    return "\n".join(rows)
