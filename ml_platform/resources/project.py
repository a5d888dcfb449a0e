"""The project config and the platform's local state, as a resource."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import dagster as dg

from ml_platform import settings, storage
from ml_platform.config import ProjectConfig, load_config


@lru_cache(maxsize=16)
def _load(path: str, mtime_ns: int) -> ProjectConfig:
    # Keyed on mtime: an edited config is re-read and re-validated, an unchanged one is not.
    return load_config(path)


class ProjectResource(dg.ConfigurableResource):
    """Which config the run uses and where the platform keeps its state (both default from the environment)."""

    config_file: str | None = None
    home: str | None = None

    def config_path(self) -> Path:
        return Path(self.config_file).resolve() if self.config_file else settings.config_path()

    def config(self) -> ProjectConfig:
        path = self.config_path()
        mtime = path.stat().st_mtime_ns if path.exists() else 0
        return _load(str(path), mtime)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Once per run (per step process with a multiprocess executor), in the run's log that the UI shows. Not for
        # a sensor's tick: it has no run, and its daemon is started on the platform's instance (`make ui`).
        if context.run is None or context.instance is None or context.log is None:
            return
        warning = storage.foreign_instance_warning(context.instance.root_directory, self._paths())
        if warning:
            context.log.warning(warning)

    def paths(self) -> settings.PlatformPaths:
        return self._paths().ensure()

    def _paths(self) -> settings.PlatformPaths:
        return settings.PlatformPaths(Path(self.home).resolve() if self.home else settings.platform_home())
