"""Resources shared by every stage. Each resolves its location from ML_PLATFORM_HOME at run time."""

import dagster as dg

from ml_platform.resources import Governance, ModelRegistry, ProjectResource, Warehouse
from ml_platform.resources.alerts import Alerts


@dg.definitions
def resources() -> dg.Definitions:
    registry, warehouse = ModelRegistry(), Warehouse()
    alerts = Alerts(warehouse=warehouse)
    return dg.Definitions(resources={
        # Asset outputs (small dicts: paths, hashes, versions) kept under DAGSTER_HOME/storage, so that a run
        # that recomputes only what changed finds the outputs of what did not.
        "io_manager": dg.FilesystemIOManager(),
        "project": ProjectResource(),
        "warehouse": warehouse,
        "registry": registry,
        "governance": Governance(registry=registry, warehouse=warehouse, alerts=alerts),
        "alerts": alerts,
    })
