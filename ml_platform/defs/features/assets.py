"""Features: the dbt project builds the feature table from the validated batches; dbt tests are asset checks."""

import logging
import os
import shutil
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from ml_platform import keys
from ml_platform.defs.features.project import feature_project
from ml_platform.resources import ProjectResource
from ml_platform.storage import dbt_environment


class _NoAdapterHandleWarning(logging.Filter):
    """dagster-dbt tries to open a dbt-core adapter in this process to fetch extra column metadata; dbt
    runs from its own virtualenv here (see pyproject's `dbt` extra), so that attempt always fails.
    The build itself is unaffected: hide the traceback it logs on every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "creating a handle to the dbt adapter" not in str(record.msg)


logging.getLogger("dagster.builtin").addFilter(_NoAdapterHandleWarning())


class FeatureTranslator(DagsterDbtTranslator):
    """All dbt key, group and owner decisions live here."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: Any) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if unique_id.startswith("source."):
            # The dbt source raw.<model>_batches is the table the validation stage writes.
            return spec.replace_attributes(key=keys.key("validated_batches"))
        return spec.replace_attributes(key=keys.key(spec.key.to_user_string()), group_name="features")


@dbt_assets(
    manifest=feature_project().manifest_path,
    project=feature_project(),
    dagster_dbt_translator=FeatureTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
)
def feature_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, project: ProjectResource):
    paths = project.paths()
    os.environ.update(dbt_environment())  # dbt's profile reads the target and warehouse from the environment
    # dbt's per-run build files go under the home, and are removed once the build succeeded (a failed
    # build keeps them for debugging); otherwise each run leaves ~2 MB in dbt_project/target.
    target = paths.home / "dbt" / context.run.run_id
    yield from dbt.cli(["build"], context=context, target_path=target).stream()
    shutil.rmtree(target, ignore_errors=True)
