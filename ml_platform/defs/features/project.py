"""The dbt feature project, prepared once: its manifest must exist before the dbt assets can be defined."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

from dagster_dbt import DbtProject

from ml_platform import settings


def _sources_newer_than(manifest: Path) -> bool:
    built = manifest.stat().st_mtime
    return any(
        p.stat().st_mtime > built
        for pattern in ("**/*.sql", "**/*.yml")
        for p in manifest.parent.parent.glob(pattern)
        if "target" not in p.parts and "logs" not in p.parts
    )


def prepare_manifest(project_dir: Path) -> Path:
    """Run `dbt parse` (in dbt's own environment) when the manifest is missing or older than the SQL."""
    manifest = project_dir / "target" / "manifest.json"
    if manifest.exists() and not _sources_newer_than(manifest):
        return manifest
    env = {**os.environ, "ML_PLATFORM_HOME": str(settings.platform_home())}
    result = subprocess.run(
        [settings.dbt_executable(), "parse", "--quiet", "--project-dir", str(project_dir), "--profiles-dir", str(project_dir)],
        capture_output=True, text=True, env=env, cwd=project_dir,
    )
    if result.returncode != 0:
        raise RuntimeError(f"`dbt parse` failed for {project_dir}:\n{result.stdout}\n{result.stderr}")
    return manifest


@cache
def feature_project() -> DbtProject:
    project_dir = settings.dbt_project_dir()
    prepare_manifest(project_dir)
    return DbtProject(
        project_dir=project_dir,
        profiles_dir=project_dir,
        target=None,  # profiles.yml picks it from ML_PLATFORM_DBT_TARGET, which the profile sets (storage.py)
    )
