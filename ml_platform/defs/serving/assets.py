"""Batch scoring: the newest batch, scored by the champion (`models:/<name>@champion`)."""

from datetime import UTC, datetime

import dagster as dg
import numpy as np
import pandas as pd

from ml_platform.defs.features import (
    assets as features,  # the module, so the loader finds feature_models once
)
from ml_platform.lib.modeling import model_inputs, positive_scores
from ml_platform.resources import ModelRegistry, ProjectResource, Warehouse
from ml_platform.resources.warehouse import PREDICTIONS_TABLE

CHUNK_ROWS = 100_000  # bounded memory: score and write the batch in chunks


@dg.asset(
    group_name="serving",
    kinds={"duckdb", "mlflow"},
    deps=[features.feature_models],
    output_required=False,  # no champion yet (e.g. awaiting sign-off): nothing to do, and the run goes on
    description=f"Scores of the newest batch by the champion, appended to {PREDICTIONS_TABLE} "
    "(prediction id, entity id, model version, score, timestamp).",
)
def batch_predictions(context: dg.AssetExecutionContext, project: ProjectResource, registry: ModelRegistry,
                      warehouse: Warehouse, raw_batch: dict, champion_model: dict):
    cfg = project.config()
    version = champion_model["champion_version"]
    if version is None:
        context.log.warning(f"not scored: model '{cfg.model.name}' has no champion yet (version "
                            f"{champion_model['challenger_version']} is {champion_model['decision']})")
        return
    model = registry.mlflow().sklearn.load_model(f"models:/{cfg.model.name}@champion")
    frame = warehouse.query(f"select * from features.{cfg.features.dbt_model} where snapshot_hash = ?",
                            [raw_batch["sha256"]])
    if frame.empty:
        raise RuntimeError(f"batch {raw_batch['batch_id']} has no rows in features.{cfg.features.dbt_model}")
    columns = list(model.feature_names_in_)
    id_col = cfg.data.id_column
    scored_at = datetime.now(UTC).replace(tzinfo=None)
    prefix = f"{cfg.model.name}-v{version}-"

    def scored_chunks():
        for start in range(0, len(frame), CHUNK_ROWS):
            chunk = frame.iloc[start:start + CHUNK_ROWS]
            entity = chunk[id_col].astype(str) if id_col else pd.Series(chunk.index.astype(str), index=chunk.index)
            # Deterministic ids: the same entity, batch and version always get the same prediction id.
            key = pd.util.hash_pandas_object(entity + f"|{raw_batch['sha256']}", index=False).to_numpy()
            yield pd.DataFrame({
                "prediction_id": np.char.add(prefix, np.char.zfill(np.char.mod("%x", key), 16)),
                "entity_id": entity.to_numpy(),
                "model_name": cfg.model.name,
                "model_version": str(version),
                "snapshot_hash": raw_batch["sha256"],
                "score": positive_scores(model, model_inputs(chunk, columns), cfg.data.positive_label),
                "scored_at": scored_at,
            })

    written = warehouse.write_predictions(scored_chunks())
    context.add_output_metadata({
        "model_version": str(version),
        "batch_id": raw_batch["batch_id"],
        "rows_scored": len(frame),
        "rows_written": written,
        "table": PREDICTIONS_TABLE,
        "dagster/row_count": len(frame),
    })
    yield dg.Output({"model_version": str(version), "rows": len(frame), "written": written,
                     "batch_id": raw_batch["batch_id"]})
