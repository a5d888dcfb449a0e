import re
from functools import cache, cached_property
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from ml_platform import settings, warm_dbt
from ml_platform.defs.features.project import feature_project


@cache
def installed_dbt_core_version(dbt_executable: str) -> str | None:
    """dbt-core's version from the package metadata beside `dbt_executable` (a virtualenv's bin/dbt), or None."""
    venv = Path(dbt_executable).resolve().parent.parent
    found = sorted(venv.glob("lib/python*/site-packages/dbt_core-*.dist-info"))
    match = re.match(r"dbt_core-(\d+\.\d+\.\d+)", found[-1].name) if found else None
    return match.group(1) if match else None


class FeatureDbtCli(DbtCliResource):
    """dagster-dbt's dbt CLI resource, reading dbt's version from its package metadata: dagster-dbt otherwise
    runs `dbt --version` before every build (a second dbt process, ~1.5 s per run)."""

    @cached_property
    def _cli_version(self):
        from packaging import version

        known = installed_dbt_core_version(self.dbt_executable)
        return version.parse(known) if known else super()._cli_version

    def cli(self, args, **kwargs):
        """dbt's command, run by the warm dbt process when the run started one (ml_platform/warm_dbt.py)."""
        launcher = warm_dbt.current_launcher()
        if launcher is None:
            return super().cli(args, **kwargs)
        # The version comes from this dbt (asking the launcher would spend the warm process on `--version`).
        known = self._cli_version
        warm = self.model_copy(update={"dbt_executable": launcher})
        warm.__dict__["_cli_version"] = known
        return DbtCliResource.cli(warm, args, **kwargs)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={
        "dbt": FeatureDbtCli(project_dir=feature_project(), dbt_executable=settings.dbt_executable()),
    })
