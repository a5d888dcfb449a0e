"""The lifecycle job: every asset, in one process (DuckDB takes one writing process at a time)."""

import dagster as dg

lifecycle_job = dg.define_asset_job(
    "lifecycle",
    selection=dg.AssetSelection.all(),  # every asset; the approval job (registry/approvals.py) has no assets
    executor_def=dg.in_process_executor,
    description="ingest → validate → features → train → evaluate → register → gate → score → drift; "
    "online features are published once the features are built",
)


@dg.definitions
def jobs() -> dg.Definitions:
    return dg.Definitions(jobs=[lifecycle_job])
