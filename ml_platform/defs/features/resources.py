import dagster as dg
from dagster_dbt import DbtCliResource

from ml_platform import settings
from ml_platform.defs.features.project import feature_project


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={
        "dbt": DbtCliResource(project_dir=feature_project(), dbt_executable=settings.dbt_executable()),
    })
