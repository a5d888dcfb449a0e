"""Batch scoring: the newest batch, scored by the champion (`models:/<name>@champion`)."""

import dagster as dg

from ml_platform.defs.features import (
    assets as features,  # the module, so the loader finds feature_models once
)
from ml_platform.defs.sources import observe_as_read
from ml_platform.lib.scoring import features_query, score_chunks
from ml_platform.resources import ModelRegistry, ProjectResource, Warehouse
from ml_platform.resources.warehouse import PREDICTIONS_TABLE

CHUNK_ROWS = 100_000  # bounded memory: score and write the batch in chunks


@dg.asset(
    group_name="serving",
    kinds={"duckdb", "mlflow"},
    # After the gate when both run, but the champion is read from the registry at run time: a sign-off
    # or a rollback since the gate ran (or a daily run with no training) scores with the live champion.
    deps=[features.feature_models, "champion_model", "champion_alias"],
    output_required=False,  # no champion yet (e.g. awaiting sign-off): nothing to do, and the run goes on
    description=f"Scores of the newest batch by the champion, appended to {PREDICTIONS_TABLE} "
    "(prediction id, entity id, model version, score, timestamp).",
)
def batch_predictions(context: dg.AssetExecutionContext, project: ProjectResource, registry: ModelRegistry,
                      warehouse: Warehouse, raw_batch: dict):
    cfg = project.config()
    observe_as_read(context, project, warehouse, "champion_alias")
    version = registry.champion_version(cfg.model.name)
    if version is None:
        context.log.warning(f"not scored: model '{cfg.model.name}' has no champion yet (none promoted, or the "
                            "newest version awaits a sign-off)")
        return
    # `models:/<name>@champion` resolved once, so the version recorded on each row is the one that scored it.
    model = registry.load_model(cfg.model.name, version)
    columns = list(model.feature_names_in_)
    id_col = cfg.data.id_column
    table = f"features.{cfg.features.dbt_model}"
    # Read chunk by chunk: memory holds one chunk, whatever the size of the batch.
    chunks = warehouse.iter_query(features_query(table, columns=columns, id_column=id_col), [raw_batch["sha256"]],
                                  chunk_rows=CHUNK_ROWS)
    scored = 0

    def counted(frames):
        nonlocal scored
        for frame in frames:
            scored += len(frame)
            yield frame

    written = warehouse.write_predictions(counted(score_chunks(
        model, chunks, columns=columns, positive_label=cfg.data.positive_label, id_column=id_col,
        model_name=cfg.model.name, model_version=str(version), snapshot_hash=raw_batch["sha256"],
    )))
    if not scored:
        raise RuntimeError(f"batch {raw_batch['batch_id']} has no rows in {table}")
    context.add_output_metadata({
        "model_version": str(version),
        "batch_id": raw_batch["batch_id"],
        "rows_scored": scored,
        "rows_written": written,
        "table": PREDICTIONS_TABLE,
        "dagster/row_count": scored,
    })
    yield dg.Output({"model_version": str(version), "rows": scored, "written": written,
                     "batch_id": raw_batch["batch_id"]})
