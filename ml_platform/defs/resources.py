"""Resources shared by every stage. Each resolves its location from ML_PLATFORM_HOME at run time."""

import dagster as dg

from ml_platform.resources import ModelRegistry, ProjectResource, Warehouse


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={
        "project": ProjectResource(),
        "warehouse": Warehouse(),
        "registry": ModelRegistry(),
    })
