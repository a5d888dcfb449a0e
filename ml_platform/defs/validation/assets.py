"""Validation: a batch that passed its checks joins the warehouse table the features are built from."""

from pathlib import Path

import dagster as dg

from ml_platform.prefetch import append_tasks, while_waiting
from ml_platform.resources import ProjectResource, Warehouse
from ml_platform.resources.alerts import Alerts, dagster_run_url


@dg.asset(
    group_name="validation",
    kinds={"duckdb"},
    description="All validated batches, appended once each to the warehouse table raw.<model>_batches "
    "(the dbt source). Runs only after raw_batch passed its blocking contract checks.",
)
def validated_batches(context: dg.AssetExecutionContext, project: ProjectResource, warehouse: Warehouse,
                      alerts: Alerts, raw_batch: dict) -> dict:
    cfg = project.config()
    # DuckDB appends outside Python: training's first imports happen meanwhile (prefetch.py).
    with while_waiting(append_tasks()):
        counts = warehouse.append_batch(cfg.raw_table, Path(raw_batch["path"]), raw_batch["sha256"],
                                        raw_batch["batch_id"], list(cfg.data.columns))
    not_stored = counts.pop("columns_not_stored")
    if not_stored:
        # Not bad input (the contract's columns are all there), but a changed schema a team wants to hear of, from
        # a scheduled run too: the columns reach no feature and no model until the contract declares them.
        context.log.warning(f"columns not in the contract, kept in the snapshot only: {', '.join(not_stored)} "
                            "(declare them under data.columns to store and use them)")
        alerts.send(
            "schema_change", f"{cfg.model.name}: batch {raw_batch['batch_id']} has columns the contract does not "
                             f"declare: {', '.join(not_stored)}",
            {"columns": not_stored, "batch": raw_batch["batch_id"],
             "kept": f"in the batch's snapshot only ({raw_batch['path']}); the warehouse table, the features and "
                     "the model do not see them",
             "to use them": "declare them under data.columns in the project config (and use them in the feature SQL)"},
            links={"dagster_run": dagster_run_url(context.run.run_id)},
            group_key=f"schema_change:{cfg.model.name}:{','.join(sorted(not_stored))}",  # every batch has them
        )
    context.add_output_metadata({
        "table": cfg.raw_table,
        "batch_id": raw_batch["batch_id"],
        **counts,
        "columns_not_in_contract": ", ".join(not_stored) or "none",
        "dagster/row_count": counts["total_rows"],
    })
    return {"table": cfg.raw_table, "newest_sha256": raw_batch["sha256"], **counts, "columns_not_in_contract": not_stored}
