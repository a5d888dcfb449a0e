"""What a model version must remember about how it was made: code, environment, data."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

# Packages whose versions decide a model's behaviour; recorded on every training run.
TRACKED_PACKAGES = (
    "ml_platform", "scikit-learn", "pandas", "numpy", "mlflow", "dagster", "dagster-dbt",
    "great-expectations", "evidently", "duckdb", "pyarrow", "skops",
)


def git_commit(repo: Path) -> str:
    """The commit of `repo`, with '-dirty' when the work tree has uncommitted changes; 'unknown' outside git."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
