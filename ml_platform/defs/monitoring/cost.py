"""Cost drift: what the live model costs to run, as time series (one point per materialization).

Each number is asset metadata, so the Dagster UI plots it across materializations, and a row of
monitoring.cost_metrics in the warehouse, for queries over months.
"""


import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd

from ml_platform.defs.monitoring.sensors import AUTOMATIC_TRIGGERS
from ml_platform.defs.sources import observe_as_read
from ml_platform.resources import ModelRegistry, ProjectResource, Warehouse
from ml_platform.settings import COST_TABLE, PREDICTION_LOG_TABLE, PREDICTIONS_TABLE


@dg.asset(
    group_name="monitoring",
    kinds={"duckdb"},
    deps=["batch_predictions", "prediction_log", "champion_alias"],
    description="Cost drift of the live model: request latency p99 and predictions in the last 24 h, the "
    "champion's training time and size, and how often the model was retrained; plotted over time.",
)
def cost_report(context: dg.AssetExecutionContext, project: ProjectResource, registry: ModelRegistry,
                warehouse: Warehouse) -> dg.Output[dict]:
    cfg = project.config()
    observe_as_read(context, project, warehouse, "prediction_log", "champion_alias")
    name = cfg.model.name
    now = datetime.now(UTC).replace(tzinfo=None)
    since = now - timedelta(days=1)
    metrics: dict[str, float] = {}

    served = pd.DataFrame()
    if warehouse.table_exists(PREDICTION_LOG_TABLE):
        served = warehouse.query(f"select latency_ms from {PREDICTION_LOG_TABLE} where model_name = ? and "
                                 "variant <> 'check' and logged_at >= ?", [name, since])
    if len(served):
        metrics["latency_p99_ms"] = float(served["latency_ms"].quantile(0.99))
    batch = 0
    if warehouse.table_exists(PREDICTIONS_TABLE):
        batch = int(warehouse.query(f"select count(*) as n from {PREDICTIONS_TABLE} where model_name = ? and "
                                    "scored_at >= ?", [name, since])["n"].iloc[0])
    metrics["predictions_24h"] = float(batch + len(served))
    metrics["online_predictions_24h"] = float(len(served))

    versions = registry.versions(name)
    week_ago_ms = (datetime.now(UTC) - timedelta(days=7)).timestamp() * 1000
    metrics["versions_registered_7d"] = float(sum(v.creation_timestamp >= week_ago_ms for v in versions))
    metrics["automatic_retrainings_24h"] = float(sum(
        len(context.instance.get_runs(filters=dg.RunsFilter(tags={"ml_platform/trigger": t},
                                                           created_after=datetime.now(UTC) - timedelta(days=1))))
        for t in AUTOMATIC_TRIGGERS))
    champion = registry.champion_version(name)
    if champion is not None:
        run = registry.run(registry.version(name, champion).run_id)
        if "fit_seconds" in run.data.metrics:
            metrics["champion_training_seconds"] = float(run.data.metrics["fit_seconds"])
        metrics["champion_size_mb"] = _model_size_mb(registry, name, champion)

    with warehouse.connect() as con:
        con.execute("create schema if not exists monitoring")
        con.execute(f"""create table if not exists {COST_TABLE} (
            recorded_at timestamp, model_name varchar, champion_version varchar, metric varchar, value double precision)""")
        con.executemany(f"insert into {COST_TABLE} values (?, ?, ?, ?, ?)",
                        [[now, name, champion, k, v] for k, v in metrics.items()])
    return dg.Output(
        {"recorded_at": now.isoformat(), "champion_version": champion, **metrics},
        metadata={**{k: dg.MetadataValue.float(v) for k, v in metrics.items()},
                  "champion_version": champion or "none", "table": COST_TABLE},
    )


def _model_size_mb(registry: ModelRegistry, name: str, version: str) -> float:
    """Bytes of the version's model artifacts, as a client downloads them (any artifact store)."""
    mlflow = registry.mlflow()
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=tmp))
        return sum(p.stat().st_size for p in local.rglob("*") if p.is_file()) / 1e6
