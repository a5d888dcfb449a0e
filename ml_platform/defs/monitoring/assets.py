"""Monitoring: data drift of each new batch and of the served traffic against the champion's training
rows (Evidently's tests, computed on every row), and prediction drift of the champion's scores.

Each report fails its asset check when it finds drift and alerts the team channel; the drift sensor
(sensors.py) turns a drifted report into one gated retraining run.
"""


import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from ml_platform.defs.features import (
    assets as features,  # the module, so the loader finds feature_models once
)
from ml_platform.defs.sources import observe_as_read
from ml_platform.lib.drift import detect_drift, score_drift
from ml_platform.lib.modeling import holdout_mask, positive_scores, split_training_data
from ml_platform.lib.snapshots import SnapshotIntegrityError, read_snapshot
from ml_platform.resources import ModelRegistry, ProjectResource, Warehouse
from ml_platform.resources.alerts import Alerts, dagster_run_url
from ml_platform.settings import PREDICTION_LOG_TABLE, PREDICTIONS_TABLE, mlflow_ui_url

MIN_SCORES_TO_JUDGE = 100  # prediction drift: below this many scores on either side, PSI is not judged

TRAFFIC_WINDOW = timedelta(hours=24)  # served traffic compared by the traffic drift report
MIN_TRAFFIC_ROWS = 100  # fewer logged requests than this say nothing about drift


class DriftReferenceMissing(RuntimeError):
    """The champion's training snapshot (the drift reference) is gone or altered."""


@dataclass(frozen=True)
class Champion:
    version: str
    tags: dict[str, str]
    features: list[str]


def live_champion(cfg: Any, registry: ModelRegistry) -> Champion | None:
    """The champion as the registry has it now (not as the gate left it: a sign-off or rollback may have
    moved it since), with the columns it was trained on."""
    version = registry.champion_version(cfg.model.name)
    if version is None:
        return None
    mv = registry.version(cfg.model.name, version)
    columns = registry.run(mv.run_id).data.params.get("features", "")
    return Champion(str(version), dict(mv.tags), [c for c in columns.split(",") if c])


def training_reference(cfg: Any, champion: Champion) -> pd.DataFrame:
    """The rows the champion was fitted on (its training split), read from the verified snapshot."""
    path, sha = champion.tags.get("data_snapshot_path"), champion.tags.get("data_snapshot_sha256")
    if not path or not sha:
        raise DriftReferenceMissing(f"{cfg.model.name} v{champion.version} records no training snapshot "
                                    "(tags data_snapshot_path / data_snapshot_sha256): no drift reference")
    try:
        frame = read_snapshot(Path(path), sha)
    except (FileNotFoundError, SnapshotIntegrityError) as exc:
        raise DriftReferenceMissing(
            f"drift reference missing: {cfg.model.name} v{champion.version} was trained on snapshot {path} "
            f"({exc}). Restore the file from backup, or retrain (the retraining job) and promote a version "
            "whose snapshot exists; nothing was compared") from None
    return frame[~holdout_mask(frame, cfg)]


def _no_champion(context: Any, cfg: Any, what: str) -> None:
    context.log.warning(f"no {what}: model '{cfg.model.name}' has no champion yet (none promoted, or the newest "
                        "version awaits a sign-off), so there is no reference")


def _compare(cfg: Any, reference: pd.DataFrame, current: pd.DataFrame, champion: Champion) -> Any:
    columns = [c for c in champion.features if c in current.columns]
    categorical = [c for c in columns
                   if not pd.api.types.is_numeric_dtype(reference[c]) or reference[c].dtype == bool]
    return detect_drift(
        reference, current, columns=columns, categorical=categorical,
        share_threshold=cfg.drift.drifted_share_threshold, method=cfg.drift.method, threshold=cfg.drift.threshold,
        per_feature={name: rule.model_dump() for name, rule in cfg.drift.features.items()},
        report_rows=cfg.drift.sample_rows, seed=cfg.training.seed,
    )


def _publish_drift(context: Any, *, kind: str, subject: str, result: Any, champion: Champion, cfg: Any,
                   project: ProjectResource, registry: ModelRegistry, alerts: Alerts, extra: dict) -> dg.Output:
    """Write the HTML and JSON report, log them to MLflow, alert on drift; the summary as the asset's output."""
    out = project.paths().reports / kind
    out.mkdir(parents=True, exist_ok=True)
    html_path = out / f"{cfg.model.name}-{subject}.html"
    if result.html is not None:
        html_path.write_text(result.html)
    summary = {**extra, "champion_version": champion.version, "report_path": str(html_path), **result.to_json()}
    json_path = html_path.with_suffix(".json")
    json_path.write_text(json.dumps(summary, indent=2, default=float))

    mlflow = registry.mlflow()
    with mlflow.start_run(experiment_id=registry.experiment_id(f"{cfg.model.name}-monitoring"),
                          run_name=f"{kind}-{subject}") as run:
        mlflow.set_tags({"kind": kind, "champion_version": champion.version,
                         **{k: str(v) for k, v in extra.items()}})
        mlflow.log_metrics({"drifted_share": result.drifted_share, "dataset_drift": float(result.dataset_drift)})
        mlflow.log_artifact(str(html_path), kind)
        mlflow.log_artifact(str(json_path), kind)
    summary["mlflow_run_id"] = run.info.run_id

    drifted = [c for c, v in result.columns.items() if v["drifted"]]
    if result.dataset_drift:
        alerts.send(
            "drift_detected",
            f"{cfg.model.name}: data drift in {kind.replace('_', ' ')} {subject}",
            {"drifted share": f"{result.drifted_share:.0%} of {len(result.columns)} features "
                              f"(threshold {result.share_threshold:.0%})",
             "drifted features": ", ".join(f"{c} ({result.columns[c]['method']} {result.columns[c]['score']:.3g}"
                                           f" vs {result.columns[c]['threshold']:.3g})" for c in drifted),
             "rows compared": f"{result.current_rows} vs {result.reference_rows} training rows",
             "champion": f"v{champion.version}",
             "next": "the drift sensor requests one gated retraining for this report"},
            links={"dagster_run": dagster_run_url(context.run.run_id), "report": str(html_path),
                   "mlflow_run": f"{mlflow_ui_url()}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"},
            group_key=f"drift_detected:{cfg.model.name}:{kind}",
        )
    scores = pd.DataFrame([
        {"feature": c, "score": v["score"], "method": v["method"], "threshold": v["threshold"], "drifted": v["drifted"]}
        for c, v in result.columns.items()
    ]).sort_values("drifted", ascending=False)
    return dg.Output(summary, metadata={
        "dataset_drift": result.dataset_drift,
        "drifted_share": float(result.drifted_share),
        "drifted_features": ", ".join(drifted) or "none",
        "share_threshold": result.share_threshold,
        "reference_rows": result.reference_rows,
        "current_rows": result.current_rows,
        "report_rows": result.report_rows,
        "champion_version": champion.version,
        "report_html": dg.MetadataValue.path(str(html_path)),
        "mlflow_run_id": run.info.run_id,
        "per_feature": dg.MetadataValue.md(markdown_table(scores)),
        **{f"score/{c}": float(v["score"]) for c, v in result.columns.items()},  # one plot per feature over time
    })


def _drift_check(report: dict) -> dg.AssetCheckResult:
    drifted = [c for c, v in report["columns"].items() if v["drifted"]]
    return dg.AssetCheckResult(
        passed=not report["dataset_drift"], severity=dg.AssetCheckSeverity.WARN,
        metadata={"drifted_share": float(report["drifted_share"]), "share_threshold": report["share_threshold"],
                  "drifted_features": ", ".join(drifted) or "none"},
    )


_CHECK_DESCRIPTION = "Fails when the share of drifted features reaches drift.drifted_share_threshold."


@dg.asset(
    group_name="monitoring",
    kinds={"evidently"},
    deps=[features.feature_models, "champion_model", "champion_alias"],
    output_required=False,  # no champion yet (e.g. awaiting sign-off): nothing to do, and the run goes on
    description="Data drift of the newest batch's features against the champion's training rows: "
    "Evidently's test per column (drift.method, per-feature overrides), decided on every row; the HTML "
    "report is Evidently's own (on a seeded sample of drift.sample_rows per side when larger).",
)
def drift_report(context: dg.AssetExecutionContext, project: ProjectResource, registry: ModelRegistry,
                 warehouse: Warehouse, alerts: Alerts, raw_batch: dict):
    cfg = project.config()
    observe_as_read(context, project, warehouse, "champion_alias")
    champion = live_champion(cfg, registry)
    if champion is None:
        return _no_champion(context, cfg, "drift report")
    reference = training_reference(cfg, champion)
    current = warehouse.query(f"select * from features.{cfg.features.dbt_model} where snapshot_hash = ?",
                              [raw_batch["sha256"]])
    if current.empty:
        raise RuntimeError(f"drift report: batch {raw_batch['batch_id']} has no rows in features."
                           f"{cfg.features.dbt_model} (0 rows): did the dbt build include it?")
    result = _compare(cfg, reference, current, champion)
    yield _publish_drift(
        context, kind="drift", subject=f"{raw_batch['batch_id']}-{raw_batch['sha256'][:12]}", result=result,
        champion=champion, cfg=cfg, project=project, registry=registry, alerts=alerts,
        extra={"batch_id": raw_batch["batch_id"], "snapshot_sha256": raw_batch["sha256"]})


# Checks beside their reports; each runs only when its report was made (it takes the report as input).
@dg.asset_check(asset=drift_report, description=_CHECK_DESCRIPTION)
def no_dataset_drift(drift_report: dict) -> dg.AssetCheckResult:
    return _drift_check(drift_report)


@dg.asset(
    group_name="monitoring",
    kinds={"evidently"},
    deps=["champion_model", "champion_alias", "prediction_log"],
    output_required=False,  # no champion or too little served traffic: nothing to compare
    description=f"Data drift of the served traffic (the online prediction log, last {TRAFFIC_WINDOW}) against "
    "the champion's training rows, with the same tests as drift_report.",
)
def traffic_drift_report(context: dg.AssetExecutionContext, project: ProjectResource, registry: ModelRegistry,
                         warehouse: Warehouse, alerts: Alerts):
    cfg = project.config()
    observe_as_read(context, project, warehouse, "champion_alias", "prediction_log")
    champion = live_champion(cfg, registry)
    if champion is None:
        return _no_champion(context, cfg, "traffic drift report")
    since = datetime.now(UTC).replace(tzinfo=None) - TRAFFIC_WINDOW
    logged = pd.DataFrame()
    if warehouse.table_exists(PREDICTION_LOG_TABLE):
        logged = warehouse.query(f"select features from {PREDICTION_LOG_TABLE} where model_name = ? and "
                                 "variant = 'champion' and logged_at >= ?", [cfg.model.name, since])
    if len(logged) < MIN_TRAFFIC_ROWS:
        context.log.info(f"no traffic drift report: {len(logged)} champion requests logged since {since:%Y-%m-%d %H:%M}"
                         f" UTC (at least {MIN_TRAFFIC_ROWS} needed)")
        return
    current = pd.DataFrame.from_records([json.loads(f) for f in logged["features"]])
    reference = training_reference(cfg, champion)
    for column in champion.features:  # JSON has no dates or categories: give each column the reference's type
        if column in current and pd.api.types.is_numeric_dtype(reference[column]):
            current[column] = pd.to_numeric(current[column], errors="coerce")
    result = _compare(cfg, reference, current, champion)
    yield _publish_drift(
        context, kind="traffic_drift", subject=f"{datetime.now(UTC):%Y%m%dT%H%M%S}", result=result,
        champion=champion, cfg=cfg, project=project, registry=registry, alerts=alerts,
        extra={"window_start": since.isoformat(), "requests": len(current)})


@dg.asset_check(asset=traffic_drift_report, description=_CHECK_DESCRIPTION)
def no_traffic_drift(traffic_drift_report: dict) -> dg.AssetCheckResult:
    return _drift_check(traffic_drift_report)


@dg.asset(
    group_name="monitoring",
    kinds={"duckdb"},
    deps=["batch_predictions"],
    output_required=False,  # nothing scored (no champion yet): nothing to compare
    description="Prediction drift: the champion's score distribution on the newest batch against its score "
    "distribution on its own holdout (PSI, Wasserstein distance, means).",
)
def prediction_drift(context: dg.AssetExecutionContext, project: ProjectResource, registry: ModelRegistry,
                     warehouse: Warehouse, alerts: Alerts, raw_batch: dict):
    cfg = project.config()
    champion = live_champion(cfg, registry)
    if champion is None:
        return _no_champion(context, cfg, "prediction drift")
    current = warehouse.query(f"select score from {PREDICTIONS_TABLE} where snapshot_hash = ? and model_name = ? "
                              "and model_version = ?", [raw_batch["sha256"], cfg.model.name, champion.version])
    if current.empty:
        context.log.warning(f"no prediction drift: batch {raw_batch['batch_id']} has no scores by v{champion.version}")
        return
    reference = holdout_scores(cfg, registry, champion, project.paths().reports / "holdout_scores")
    result = score_drift(reference, current["score"].to_numpy(), psi_threshold=cfg.drift.prediction_psi_threshold)
    # A PSI over a few dozen scores is mostly noise: it is reported, not judged.
    result["judged"] = min(len(reference), len(current)) >= MIN_SCORES_TO_JUDGE
    result["drifted"] = result["drifted"] and result["judged"]
    if result["drifted"]:
        alerts.send(
            "prediction_drift", f"{cfg.model.name} v{champion.version}: score distribution changed on "
                                f"{raw_batch['batch_id']}",
            {"psi": f"{result['psi']:.3f} (threshold {cfg.drift.prediction_psi_threshold})",
             "mean score": f"{result['current_mean']:.3f} on the batch vs {result['reference_mean']:.3f} on the holdout",
             "rows": f"{len(current)} scored vs {len(reference)} holdout"},
            links={"dagster_run": dagster_run_url(context.run.run_id),
                   "mlflow_version": registry.version_ui_url(cfg.model.name, champion.version)},
            group_key=f"prediction_drift:{cfg.model.name}")
    yield dg.Output({"batch_id": raw_batch["batch_id"], "champion_version": champion.version, **result}, metadata={
        "psi": float(result["psi"]), "wasserstein": float(result["wasserstein"]),
        "current_mean_score": float(result["current_mean"]), "holdout_mean_score": float(result["reference_mean"]),
        "drifted": bool(result["drifted"]), "psi_threshold": cfg.drift.prediction_psi_threshold,
        "champion_version": champion.version, "batch_id": raw_batch["batch_id"], "rows": len(current),
        "holdout_rows": len(reference), "judged": result["judged"],
    })


@dg.asset_check(asset=prediction_drift, description="Fails when the PSI of the batch's scores against the "
                "holdout's reaches drift.prediction_psi_threshold.")
def score_distribution_stable(prediction_drift: dict) -> dg.AssetCheckResult:
    metadata = {"psi": float(prediction_drift["psi"])}
    if not prediction_drift.get("judged", True):
        metadata["not judged"] = f"fewer than {MIN_SCORES_TO_JUDGE} scores on one side: too few for a stable PSI"
    return dg.AssetCheckResult(passed=not prediction_drift["drifted"], severity=dg.AssetCheckSeverity.WARN,
                               metadata=metadata)


def holdout_scores(cfg: Any, registry: ModelRegistry, champion: Champion, cache: Path) -> Any:
    """The version's scores on its own holdout: computed once per version, then read from the cache."""
    import numpy as np

    path = cache / f"{cfg.model.name}-v{champion.version}.npy"
    if path.exists():
        return np.load(path)
    frame = read_snapshot(Path(champion.tags["data_snapshot_path"]), champion.tags["data_snapshot_sha256"])
    split = split_training_data(frame, cfg)
    model = registry.load_model(cfg.model.name, champion.version)
    scores = positive_scores(model, split.X_holdout, cfg.data.positive_label)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, scores)
    return scores


def markdown_table(frame: pd.DataFrame) -> str:
    rows = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    for record in frame.itertuples(index=False):
        rows.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in record) + " |")
    return "\n".join(rows)

