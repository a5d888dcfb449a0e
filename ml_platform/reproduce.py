"""`ml-platform reproduce`: retrain a registered version from its recorded lineage and compare.

The recorded lineage (registry.model_versions) gives the immutable training snapshot and its SHA-256,
the resolved config (and so the seed and split rule); the platform's own split, pipeline and holdout
evaluation do the rest. Each attempt is an MLflow run in the scratch experiment `<model>-reproduce`
(a failed attempt too, with the reason); no model version is registered and no alias is touched.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ml_platform import settings
from ml_platform.lineage import lineage_for_version

# Wall-clock timings: they differ from run to run, so they are reported beside the comparison, not in it.
EXCLUDED_METRICS = {"latency_p99_ms": "wall-clock time per row: differs from run to run and machine to machine"}


class ReproductionError(RuntimeError):
    """The version cannot be reproduced: unknown, or its training snapshot is missing or altered."""


# What a reproduction does, in order: the steps its progress reports count.
STEPS = ("read the training snapshot", "compare the environment", "fit", "evaluate on the holdout")


def reproduce_version(model_name: str, version: str, progress: Callable[[Any], None] | None = None) -> dict:
    """Retrain `model_name` version `version` from its recorded snapshot, config, split and seed; evaluate
    it on the holdout as the platform does, and compare with the registered run's `holdout_*` metrics.
    `progress` is called with a runner.RunProgress (job `reproduce`, the MLflow run) as each of STEPS starts."""
    from ml_platform.resources import ModelRegistry
    from ml_platform.resources.registry import RegistryError
    from ml_platform.runner import RunProgress

    version = str(version)
    # An unknown version is bad input: LineageError (a LookupError) goes up as it is; the CLI exits 2.
    lineage = lineage_for_version(model_name, version)

    registry = ModelRegistry()
    client = registry.client()
    try:
        registered = registry.require_version(model_name, version)
    except RegistryError as exc:
        raise ReproductionError(f"cannot reproduce {model_name} v{version}: the warehouse records it but the "
                                f"MLflow registry does not ({exc})") from None
    registered_run = registry.run(lineage["run_id"])
    snapshot_path = Path(lineage["data_snapshot"]["path"])
    snapshot_sha = lineage["data_snapshot"]["sha256"]

    run = client.create_run(
        registry.experiment_id(f"{model_name}-reproduce"),
        run_name=f"reproduce-{model_name}-v{version}",
        tags={"reproduces_model": model_name, "reproduces_version": version,
              "reproduces_run_id": lineage["run_id"], "data_snapshot_sha256": snapshot_sha,
              "data_snapshot_path": str(snapshot_path), "config_sha256": lineage["config_sha256"]},
    )
    run_id = run.info.run_id

    def step(done: int, *, failed: bool = False) -> None:
        if progress is not None:
            progress(RunProgress(run_id, "reproduce", done=done, total=len(STEPS), failed=int(failed),
                                 current=STEPS[done] if done < len(STEPS) else None,
                                 finished=failed or done == len(STEPS)))

    done = 0
    try:
        step(done)
        config = recorded_config(lineage, registered.tags.get("config_file"))
        frame = _read_training_snapshot(snapshot_path, snapshot_sha)
        step(done := 1)
        warnings, current_commit = _environment_warnings(lineage, registered.tags, config)
        if config.fingerprint() != lineage["config_sha256"]:
            warnings.append(
                f"the recorded config re-validates to fingerprint {config.fingerprint()[:12]}…, not the recorded "
                f"{lineage['config_sha256'][:12]}…: the config schema changed since training"
            )
        step(done := 2)
        split, pipeline = _retrain(frame, config)
        step(done := 3)
        reproduced = _evaluate(split, pipeline, config)
        result = _compare(model_name, version, registered_run.data.metrics, reproduced, warnings)
        result.update(reproduction_run_id=run_id, registered_run_id=lineage["run_id"], snapshot_sha256=snapshot_sha)
    except Exception as exc:
        step(done, failed=True)
        client.set_tag(run_id, "failure_reason", str(exc)[:5000])
        client.set_terminated(run_id, status="FAILED")
        raise
    step(len(STEPS))

    registry.log_to_run(run_id, metrics={f"holdout_{k}": v for k, v in reproduced.items()})
    for key, value in {"match": str(result["match"]).lower(), "differences": ",".join(result["differences"]),
                       "git_commit": current_commit}.items():
        client.set_tag(run_id, key, value)
    client.log_text(run_id, json.dumps(result, indent=2), "reproduction.json")
    client.set_terminated(run_id, status="FINISHED")
    return result


def recorded_config(lineage: dict, config_file: str | None) -> Any:
    """The config the version was trained with, as recorded; `source_file` is the file it was read from then."""
    from pydantic import ValidationError

    from ml_platform.config import ProjectConfig

    if not lineage["config"]:
        raise ReproductionError(f"{lineage['model']} v{lineage['version']} has no recorded config")
    try:
        return ProjectConfig.model_validate(
            {**lineage["config"], "source_file": config_file or str(settings.config_path())})
    except ValidationError as exc:
        raise ReproductionError(
            f"the config recorded for {lineage['model']} v{lineage['version']} no longer validates against the "
            f"current config schema: {exc}"
        ) from None


def _read_training_snapshot(path: Path, sha256: str) -> Any:
    from ml_platform.lib.snapshots import SnapshotIntegrityError, read_snapshot

    try:
        return read_snapshot(path, sha256)
    except FileNotFoundError:
        raise ReproductionError(
            f"training snapshot {path} is missing: version trained on data {sha256[:12]}… cannot be reproduced "
            "(restore the file from a backup of the platform home)"
        ) from None
    except SnapshotIntegrityError as exc:
        raise ReproductionError(f"training {exc}; the version cannot be reproduced from it") from None


def _retrain(frame: Any, config: Any) -> tuple[Any, Any]:
    from ml_platform.lib.modeling import build_pipeline, split_training_data

    split = split_training_data(frame, config)
    pipeline = build_pipeline(config, split.X_train)
    pipeline.fit(split.X_train, split.y_train)
    return split, pipeline


def _evaluate(split: Any, pipeline: Any, config: Any) -> dict[str, float]:
    from ml_platform.defs.evaluation.assets import evaluate_on_holdout

    return dict(evaluate_on_holdout(pipeline, split, config).metrics)


def _compare(model_name: str, version: str, run_metrics: dict[str, float], reproduced: dict[str, float],
             warnings: list[str]) -> dict:
    registered = {k.removeprefix("holdout_"): v for k, v in run_metrics.items() if k.startswith("holdout_")}
    compared: dict[str, dict] = {}
    excluded: dict[str, dict] = {}
    for metric in sorted(registered.keys() | reproduced.keys()):
        if metric not in registered or metric not in reproduced:
            side = "the registered run" if metric not in registered else "the reproduction"
            warnings.append(f"metric {metric} is missing from {side}: not compared")
            continue
        pair = {"registered": _plain(registered[metric]), "reproduced": _plain(reproduced[metric])}
        if metric in EXCLUDED_METRICS:
            excluded[metric] = {**pair, "reason": EXCLUDED_METRICS[metric]}
        else:
            compared[metric] = {**pair, "equal": _same(registered[metric], reproduced[metric])}
    if not compared:
        warnings.append(f"the registered run of {model_name} v{version} has no holdout_* metrics: nothing to compare "
                        "(was the version evaluated?)")
    differences = [m for m, c in compared.items() if not c["equal"]]
    return {"model": model_name, "version": version, "match": bool(compared) and not differences,
            "compared": compared, "differences": differences, "excluded": excluded, "warnings": warnings}


def _same(a: float, b: float) -> bool:
    # Exact: a deterministic estimator on the same bytes, split and seed gives the same floats. NaN (e.g. a
    # fairness gap with fewer than two scorable groups) equals NaN here.
    return a == b or (math.isnan(a) and math.isnan(b))


def _environment_warnings(lineage: dict, tags: dict[str, str], config: Any) -> tuple[list[str], str]:
    """What differs between the training environment and this one: not errors, but reasons a mismatch may
    have. Returns (warnings, the current git commit)."""
    from ml_platform.lib.lineage import git_commit, package_versions

    warnings = []
    recorded_commit = lineage["git_commit"]
    current_commit = git_commit(settings.PROJECT_ROOT)
    if current_commit != recorded_commit:
        warnings.append(f"git commit differs: trained at {recorded_commit}, reproducing at {current_commit}")
    if recorded_commit.endswith("-dirty"):
        warnings.append(f"the version was trained from a work tree with uncommitted changes ({recorded_commit}): "
                        "the exact code cannot be checked out again")

    try:
        from ml_platform.defs.features.project import prepare_manifest
        from ml_platform.lib.feature_version import feature_code_version

        current_features, _ = feature_code_version(prepare_manifest(settings.dbt_project_dir()),
                                                   config.features.dbt_model)
    except Exception as exc:  # a warning, not a failure: the snapshot already holds the features
        warnings.append(f"could not compute the current feature code version: {exc}")
    else:
        if current_features != lineage["feature_code_version"]:
            warnings.append(
                f"feature code version differs: trained with {lineage['feature_code_version'][:12]}…, the dbt "
                f"models now give {current_features[:12]}… (the snapshot holds the features as they were)"
            )

    recorded_packages = dict(p.split("==", 1) for p in tags.get("packages", "").split(", ") if "==" in p)
    changed = [f"{name} {recorded_packages[name]} -> {now}" for name, now in package_versions().items()
               if name in recorded_packages and recorded_packages[name] != now]
    if changed:
        warnings.append(f"package versions differ from training: {', '.join(changed)}")
    elif not recorded_packages:
        warnings.append("the version has no 'packages' tag: package versions not compared")
    return warnings, current_commit


def _plain(value: float) -> float | None:
    """A metric as JSON allows it: NaN and infinities become None."""
    return float(value) if math.isfinite(value) else None
