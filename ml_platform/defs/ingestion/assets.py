"""Ingestion: load the source batch and store it as an immutable, content-addressed snapshot."""

import dagster as dg

from ml_platform.defs.sources import observe_as_read, table_version
from ml_platform.lib.snapshots import write_snapshot
from ml_platform.lib.sources import SourceError, load_batch
from ml_platform.prefetch import validation_tasks, while_waiting
from ml_platform.resources import ProjectResource, Warehouse
from ml_platform.settings import redacted


class IngestionConfig(dg.Config):
    batch: str | None = None  # demo source: the batch number to ingest (default: the next one)


@dg.asset(
    group_name="ingestion",
    kinds={"parquet"},
    deps=["source_data"],  # stale when the source delivers another batch (defs/sources.py)
    description="The newest source batch, stored as an immutable Parquet snapshot named by its SHA-256.",
)
def raw_batch(context: dg.AssetExecutionContext, config: IngestionConfig, project: ProjectResource,
              warehouse: Warehouse) -> dg.Output[dict]:
    cfg = project.config()
    paths = project.paths()
    # Reading and writing Parquet leaves Python free: the contract checks' import happens meanwhile (prefetch.py).
    with while_waiting(validation_tasks()):
        try:
            source = load_batch(
                cfg,
                batch=config.batch,
                ingested=warehouse.ingested_batch_ids(cfg.raw_table),
                read_table=lambda table: _read_source_table(warehouse, table),
            )
        except SourceError as exc:  # bad input: trying again reads the same broken file
            raise dg.Failure(str(exc), allow_retries=False) from None
        snapshot = write_snapshot(source.frame, paths.snapshots / "raw")
    # A table's version is a hash of its rows: the rows just read, not a second read of the table.
    observe_as_read(context, project, warehouse, "source_data", batch=config.batch,
                    version=table_version(source.frame) if cfg.data.source.kind == "table" else None)
    # The content hash is the data version: downstream assets see "unchanged" when the same data arrives again.
    return dg.Output(
        {"batch_id": source.batch_id, "sha256": snapshot.sha256, "path": str(snapshot.path), "rows": snapshot.rows},
        data_version=dg.DataVersion(snapshot.sha256),
        metadata={
            "batch_id": source.batch_id,
            "source": source.location,
            "rows": snapshot.rows,
            "columns": len(snapshot.columns),
            "snapshot_sha256": snapshot.sha256,
            "snapshot_path": dg.MetadataValue.path(str(snapshot.path)),
            "dagster/row_count": snapshot.rows,
        },
    )


def _read_source_table(warehouse: Warehouse, table: str):
    """A `kind: table` source; a table that is not there is bad input named as such, not a database error."""
    if not warehouse.table_exists(table):
        schema = table.split(".")[0]
        present = warehouse.tables_in(schema)
        raise SourceError(f"source table {table} does not exist in the warehouse ({redacted(warehouse.location())}): "
                          "create it, or fix data.source.table; "
                          + (f"schema {schema} holds: {', '.join(present)}" if present else f"there is no schema {schema}"))
    return warehouse.query(f"select * from {table}")
