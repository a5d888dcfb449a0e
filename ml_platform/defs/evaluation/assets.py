"""Evaluation: the registered model version, scored on the frozen holdout; report and plots for people."""

import json
from pathlib import Path

import dagster as dg

from ml_platform.lib import regression_set
from ml_platform.lib.artifacts import DIGEST_TAG
from ml_platform.lib.evaluation import (
    baseline_metrics,
    evaluate_classifier,
    evaluate_regressor,
    png_markdown,
    regression_baseline_metrics,
    render_report_html,
)
from ml_platform.lib.modeling import model_inputs, split_training_data
from ml_platform.lib.snapshots import read_snapshot
from ml_platform.resources import ModelRegistry, ProjectResource


def evaluate_on_holdout(model, split, cfg, latency_rows: int = 100):
    """Evaluate any registered model on this split's holdout, using the inputs the model was trained on."""
    columns = list(getattr(model, "feature_names_in_", split.feature_columns))
    sensitive = cfg.data.sensitive_column
    if cfg.model.task == "regression":
        return evaluate_regressor(
            model,
            model_inputs(split.holdout, columns),
            split.y_holdout.reset_index(drop=True),
            sensitive=split.holdout[sensitive] if sensitive else None,
            latency_rows=latency_rows,
        )
    return evaluate_classifier(
        model,
        model_inputs(split.holdout, columns),
        split.y_holdout.reset_index(drop=True),
        positive_label=cfg.data.positive_label,
        sensitive=split.holdout[sensitive] if sensitive else None,
        latency_rows=latency_rows,
    )


def trivial_baseline(split, cfg) -> dict:
    """The holdout metrics of the trivial model the first version must beat: the training prior (a classifier)
    or the training mean (a regressor)."""
    if cfg.model.task == "regression":
        return regression_baseline_metrics(split.y_train, split.y_holdout)
    return baseline_metrics(split.y_train, split.y_holdout, cfg.data.positive_label)


@dg.asset(
    group_name="evaluation",
    kinds={"mlflow"},
    description="Holdout metrics of the newly registered version (a classifier: ROC AUC, F1, log loss, Brier, "
    "calibration error; a regressor: RMSE, MAE, R²; both: per-row latency p99, fairness gap), plots (ROC and "
    "calibration; predicted vs actual and residuals), and a JSON + HTML report. A reused "
    "version (a training cache hit) keeps the evaluation it already has.",
)
def model_evaluation(context: dg.AssetExecutionContext, project: ProjectResource, registry: ModelRegistry,
                     trained_model: dict) -> dict:
    cfg = project.config()
    data = trained_model["training_data"]
    if trained_model.get("cache_hit"):
        recorded = _recorded_evaluation(project, registry, cfg.model.name, trained_model)
        if recorded is not None:
            context.add_output_metadata({"cache_hit": True, "model_version": trained_model["version"],
                                         **{k: dg.MetadataValue.float(float(v)) for k, v in recorded["metrics"].items()},
                                         "report_mlflow_uri": recorded["report_uri"]})
            return recorded
    split = split_training_data(read_snapshot(Path(data["path"]), data["sha256"]), cfg)
    # Evaluate what the registry holds, not the object in memory: that is what will be served. The digest of
    # exactly these files is recorded: serving and `ml-platform check` refuse any other bytes for this version.
    model, digest = registry.load_model_with_digest(cfg.model.name, trained_model["version"])
    evaluation = evaluate_on_holdout(model, split, cfg)
    baseline = trivial_baseline(split, cfg)
    baseline_name = "training mean" if cfg.model.task == "regression" else "prior only"

    out = project.paths().reports / "evaluation" / f"{cfg.model.name}-v{trained_model['version']}"
    out.mkdir(parents=True, exist_ok=True)
    report = {"model": cfg.model.name, "version": trained_model["version"], "run_id": trained_model["run_id"],
              **evaluation.to_json(), "baseline": baseline}
    (out / "evaluation.json").write_text(json.dumps(report, indent=2, default=float))
    (out / "evaluation.html").write_text(render_report_html(
        f"{cfg.model.name} v{trained_model['version']} — holdout evaluation", evaluation,
        extra={f"baseline ({baseline_name})": baseline, "training data": data["sha256"][:12]},
    ))
    figures = evaluation.figures()
    for name, _, png in figures:
        (out / name).write_bytes(png)
    registry.log_to_run(
        trained_model["run_id"],
        metrics={f"holdout_{k}": v for k, v in evaluation.metrics.items()},
        files=[out / name for name in ("evaluation.json", "evaluation.html", *(f[0] for f in figures))],
        artifact_dir="evaluation",
    )
    # The rows `ml-platform check` replays against a running endpoint, with the scores this version gave.
    regression = regression_set.record_regression_set(
        model, split.holdout, list(getattr(model, "feature_names_in_", split.feature_columns)),
        model_name=cfg.model.name, version=trained_model["version"], artifact_sha256=digest,
        positive_label=cfg.data.positive_label, id_column=cfg.data.id_column, rows=cfg.checks.regression.rows,
    ).write(out / regression_set.ARTIFACT_FILE)
    registry.log_to_run(trained_model["run_id"], files=[regression], artifact_dir=regression_set.ARTIFACT_DIR)
    report_uri = registry.artifact_uri(trained_model["run_id"], "evaluation/evaluation.html")
    registry.tag_version(cfg.model.name, trained_model["version"], {
        "evaluation_report": report_uri, DIGEST_TAG: digest,
        regression_set.REGRESSION_SET_TAG: registry.artifact_uri(trained_model["run_id"], regression_set.ARTIFACT_PATH)})

    context.add_output_metadata({
        "cache_hit": False,
        **{k: dg.MetadataValue.float(float(v)) for k, v in evaluation.metrics.items()},
        **{f"baseline_{k}": float(v) for k, v in baseline.items() if k in ("roc_auc", "rmse", "mae", "r2")},
        "model_version": trained_model["version"],
        "artifact_sha256": digest,
        "report_html": dg.MetadataValue.path(str(out / "evaluation.html")),
        "report_mlflow_uri": report_uri,
        "mlflow_run": dg.MetadataValue.url(registry.run_ui_url(trained_model["run_id"])),
        "plots": dg.MetadataValue.md("\n\n".join(png_markdown(png, title) for _, title, png in figures)),
    })
    return {"version": trained_model["version"], "run_id": trained_model["run_id"], "metrics": evaluation.metrics,
            "by_group": evaluation.by_group, "baseline": baseline, "report_path": str(out / "evaluation.html"),
            "report_json_path": str(out / "evaluation.json"),
            "report_uri": report_uri, "training_data": data}


def _recorded_evaluation(project: ProjectResource, registry: ModelRegistry, model_name: str,
                         trained_model: dict) -> dict | None:
    """The evaluation a version already has (its evaluation.json artifact), in this asset's output shape; None
    when it has none (it was registered, then the run stopped before evaluation)."""
    version, run_id = trained_model["version"], trained_model["run_id"]
    tags = registry.find_version(model_name, version).tags
    report_uri = tags.get("evaluation_report")
    if not report_uri or not tags.get(DIGEST_TAG):  # evaluated before digests were recorded: evaluate again
        return None
    out = project.paths().reports / "evaluation" / f"{model_name}-v{version}"
    report_json = out / "evaluation.json"
    if not report_json.exists():
        registry.download_artifacts(run_id, "evaluation", out.parent / f"{out.name}.download")
        (out.parent / f"{out.name}.download" / "evaluation").replace(out)
    report = json.loads(report_json.read_text())

    def floats(values: dict) -> dict:  # the JSON wrote NaN as null
        return {k: float("nan") if v is None else v for k, v in values.items()}

    return {"version": version, "run_id": run_id, "metrics": floats(report["metrics"]),
            "by_group": {g: floats(m) for g, m in report["by_group"].items()},
            "baseline": report["baseline"], "report_path": str(out / "evaluation.html"),
            "report_json_path": str(report_json), "report_uri": report_uri,
            "training_data": trained_model["training_data"]}
