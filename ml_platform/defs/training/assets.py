"""Training: snapshot the feature table, fit the configured Pipeline, log and register it in MLflow."""

import hashlib
import json
import time
from pathlib import Path

import dagster as dg

from ml_platform.defs.features import (
    assets as features,  # the module, so the loader finds feature_models once
)
from ml_platform.defs.features.project import feature_project
from ml_platform.lib.feature_version import feature_code_version
from ml_platform.lib.governance import model_description
from ml_platform.lib.lineage import git_commit, package_versions
from ml_platform.lib.modeling import build_pipeline, split_training_data, trusted_types
from ml_platform.lib.snapshots import read_snapshot, write_snapshot
from ml_platform.locks import exclusive
from ml_platform.resources import ModelRegistry, ProjectResource, Warehouse
from ml_platform.settings import PROJECT_ROOT
from ml_platform.sql import quote_identifier


@dg.asset(
    group_name="training",
    kinds={"parquet"},
    deps=[features.feature_models],
    description="The feature table as an immutable snapshot (SHA-256 named) with the feature code version "
    "(dbt manifest checksums) it was built by: what a model version is trained and reproduced from.",
)
def training_data(project: ProjectResource, warehouse: Warehouse) -> dg.Output[dict]:
    cfg = project.config()
    table = f"features.{cfg.features.dbt_model}"
    if not warehouse.table_exists(table):
        raise RuntimeError(f"feature table {table} does not exist: did the dbt model {cfg.features.dbt_model} build?")
    order = quote_identifier(cfg.data.id_column) if cfg.data.id_column else "all"
    where, window = training_window(cfg, table)
    # A fixed row order makes the snapshot bytes, and so its hash, a function of the content.
    frame = warehouse.query(f"select * from {table}{where} order by {order}")
    left_out = 0
    if where:
        left_out = int(warehouse.query(f"select count(*) as n from {table}")["n"].iloc[0]) - len(frame)
        if frame.empty:
            raise RuntimeError(f"training.window_days: no row of {table} has a {cfg.data.timestamp_column}, so the "
                               "window selects nothing")
        import pandas as pd

        stamps = pd.to_datetime(frame[cfg.data.timestamp_column], errors="coerce")
        window += f": {stamps.min():%Y-%m-%d} to {stamps.max():%Y-%m-%d}, {left_out} other row(s) left out"
    snapshot = write_snapshot(frame, project.paths().snapshots / "training")
    version, models = feature_code_version(feature_project().manifest_path, cfg.features.dbt_model)
    return dg.Output(
        {"sha256": snapshot.sha256, "path": str(snapshot.path), "rows": snapshot.rows,
         "feature_code_version": version, "feature_table": table, "window": window},
        data_version=dg.DataVersion(snapshot.sha256),
        metadata={
            "rows": snapshot.rows,
            "window": window,
            "rows_left_out": left_out,
            "snapshot_sha256": snapshot.sha256,
            "snapshot_path": dg.MetadataValue.path(str(snapshot.path)),
            "feature_code_version": version,
            "dbt_models": ", ".join(models),
            "batches": int(frame["snapshot_hash"].nunique()) if "snapshot_hash" in frame else 0,
            "dagster/row_count": snapshot.rows,
        },
    )


def training_window(cfg, table: str) -> tuple[str, str]:
    """The SQL condition that keeps the rows of the last `training.window_days` days of event time, counted back
    from the newest row of the table (not from today: the same rows give the same window), and its description.
    Rows without a timestamp are outside every window. Runs unchanged on DuckDB and PostgreSQL."""
    days = cfg.training.window_days
    if not days:
        return "", "all rows"
    stamp = f"cast({quote_identifier(cfg.data.timestamp_column)} as timestamp)"
    return (f" where {stamp} > (select max({stamp}) from {table}) - interval '{int(days)} days'",
            f"the last {days} day(s) of {cfg.data.timestamp_column}")


def training_key(training_data: dict, code_version: str | None) -> str:
    """What a fit is a function of: the training snapshot, the feature code and the asset's code version (its
    source and the config it reads: estimator, params, seed, split, target). Equal keys, equal models."""
    blob = json.dumps({"snapshot": training_data["sha256"], "features": training_data["feature_code_version"],
                       "code": code_version}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dg.asset(
    group_name="training",
    kinds={"sklearn", "mlflow"},
    description="The configured scikit-learn Pipeline fitted on the training split, logged to MLflow with its "
    "full lineage and registered as a new version of the registered model. A version already trained from "
    "the same snapshot, feature code, code and config is reused (a cache hit), not trained again.",
)
def trained_model(context: dg.AssetExecutionContext, project: ProjectResource, registry: ModelRegistry,
                  warehouse: Warehouse, training_data: dict) -> dict:
    cfg = project.config()
    key = training_key(training_data, context.assets_def.specs_by_key[context.asset_key].code_version)
    # One training of a model at a time, whichever run, sensor, person or executor started it: a second one
    # waits here, then finds the version the first registered if its inputs are the same. The lock dies with
    # its holder (a killed run never leaves it taken); a Dagster concurrency pool does not (its slot stays
    # claimed and a Celery run waiting on it never ends).
    database = warehouse.location() if warehouse.engine == "postgres" else None
    with exclusive(f"training-{cfg.model.name}", database_url=database, lock_dir=project.paths().home / "locks"):
        reused = registry.version_trained_from(cfg.model.name, key)
        if reused is not None:
            return _reuse(context, registry, warehouse, cfg, reused, training_data)
        return _train(context, cfg, project, registry, warehouse, training_data, key)


def _train(context: dg.AssetExecutionContext, cfg, project: ProjectResource, registry: ModelRegistry,
           warehouse: Warehouse, training_data: dict, key: str) -> dict:
    frame = read_snapshot(Path(training_data["path"]), training_data["sha256"])
    split = split_training_data(frame, cfg)
    pipeline = build_pipeline(cfg, split.X_train)
    started = time.perf_counter()
    pipeline.fit(split.X_train, split.y_train)
    fit_seconds = time.perf_counter() - started

    versions = package_versions()
    lineage = {
        "data_snapshot_sha256": training_data["sha256"],
        "data_snapshot_path": training_data["path"],
        "feature_code_version": training_data["feature_code_version"],
        "feature_table": training_data["feature_table"],
        "config_sha256": cfg.fingerprint(),
        "config_file": str(cfg.source_file),
        "git_commit": git_commit(PROJECT_ROOT),
        "seed": str(cfg.training.seed),
        "holdout_fraction": str(cfg.training.holdout_fraction),
        "split_rule": f"hash({cfg.data.id_column})" if cfg.data.id_column else f"seeded shuffle ({cfg.training.seed})",
        "training_window": training_data.get("window", "all rows"),
        "dagster_run_id": context.run.run_id,
        "python": versions["python"],
        "sklearn": versions["scikit-learn"],
        "training_key": key,
    }
    spec = cfg.training.estimator
    params = {"estimator": spec.class_ or spec.pipeline, **{f"estimator.{k}": v for k, v in spec.params.items()},
              "train_rows": len(split.X_train), "holdout_rows": len(split.X_holdout),
              "features": ",".join(split.feature_columns)}
    run_id, version = registry.log_and_register(
        model_name=cfg.model.name,
        experiment=cfg.model.name,
        pipeline=pipeline,
        X_train=split.X_train,
        training_frame=frame,
        dataset_source=training_data["path"],
        dataset_digest=training_data["sha256"],
        target=cfg.data.target,
        params=params,
        tags={**lineage, "packages": ", ".join(f"{k}=={v}" for k, v in versions.items())},
        trusted_types=trusted_types(cfg),
        pip_requirements=[f"scikit-learn=={versions['scikit-learn']}", f"pandas=={versions['pandas']}",
                          f"numpy=={versions['numpy']}", f"skops=={versions['skops']}"],
    )
    config_json = project_config_json(cfg)
    config_file = project.paths().reports / "configs" / f"{cfg.fingerprint()}.json"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(config_json)
    registry.tag_model(cfg.model.name, {"owner": cfg.model.owner, "risk_tier": cfg.model.risk_tier,
                                        "description": cfg.model.description})
    registry.describe(cfg.model.name, model_description(description=cfg.model.description, owner=cfg.model.owner,
                                                        risk_tier=cfg.model.risk_tier,
                                                        approvers=cfg.governance.approvers))
    registry.log_to_run(run_id, metrics={"fit_seconds": fit_seconds, "train_rows": len(split.X_train)},
                        files=[config_file], artifact_dir="config")
    # The lineage again in the warehouse: `ml-platform lineage` answers from one local query.
    _record_lineage(warehouse, cfg.model.name, version, run_id, lineage, config_json)
    context.add_output_metadata({
        "cache_hit": False,
        "model_version": version,
        "mlflow_run_id": run_id,
        "mlflow_run": dg.MetadataValue.url(registry.run_ui_url(run_id)),
        "mlflow_version": dg.MetadataValue.url(registry.version_ui_url(cfg.model.name, version)),
        "fit_seconds": round(fit_seconds, 3),
        "train_rows": len(split.X_train),
        "holdout_rows": len(split.X_holdout),
        **{k: lineage[k] for k in ("data_snapshot_sha256", "feature_code_version", "git_commit", "seed")},
    })
    return {"model_name": cfg.model.name, "version": version, "run_id": run_id,
            "training_data": training_data, "fit_seconds": fit_seconds, "cache_hit": False}


def _reuse(context: dg.AssetExecutionContext, registry: ModelRegistry, warehouse: Warehouse, cfg, reused,
           training_data: dict) -> dict:
    """The version already trained from these inputs: no fit, no new version. Its lineage row is written if a
    crash came between registration and the warehouse write."""
    version, run_id, tags = str(reused.version), reused.run_id, reused.tags
    context.log.info(f"cache hit: version {version} was trained from the same snapshot, feature code, code "
                     f"and config (training_key {tags['training_key'][:12]}); reusing it")
    if not warehouse.model_version_recorded(cfg.model.name, version):
        _record_lineage(warehouse, cfg.model.name, version, run_id, tags, project_config_json(cfg))
    fit_seconds = float(registry.run(run_id).data.metrics.get("fit_seconds", 0.0))
    context.add_output_metadata({
        "cache_hit": True,
        "model_version": version,
        "mlflow_run_id": run_id,
        "mlflow_version": dg.MetadataValue.url(registry.version_ui_url(cfg.model.name, version)),
        "training_key": tags["training_key"],
        **{k: tags.get(k, "") for k in ("data_snapshot_sha256", "feature_code_version", "git_commit", "seed")},
    })
    return {"model_name": cfg.model.name, "version": version, "run_id": run_id, "training_data": training_data,
            "fit_seconds": fit_seconds, "cache_hit": True}


def project_config_json(cfg) -> str:
    return cfg.model_dump_json(by_alias=True, indent=2)


def _record_lineage(warehouse: Warehouse, model_name: str, version: str, run_id: str, lineage: dict,
                    config_json: str) -> None:
    # The lineage again in the warehouse: `ml-platform lineage` answers from one local query.
    warehouse.record_model_version({
        "model_name": model_name, "version": version, "run_id": run_id,
        **{k: lineage[k] for k in ("data_snapshot_sha256", "data_snapshot_path", "feature_code_version",
                                   "feature_table", "config_sha256", "git_commit", "seed", "split_rule")},
        "config_json": config_json,
    })
