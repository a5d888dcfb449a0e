"""Dagster's own commands on the project (`dg launch`, as a Dagster user runs it), next to `ml-platform`'s."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from ml_platform.settings import PROJECT_ROOT, PlatformPaths
from ml_platform.storage import foreign_instance_warning

DG = Path(sys.executable).parent / "dg"
WARNING = "not the platform's"


def dg_launch(home: Path, *, cwd: Path, dagster_home: Path | None) -> subprocess.CompletedProcess:
    """`dg launch` of the project, started in `cwd`: not the project's own folder, where dg would leave its
    temporary instance, and where a developer's `.env` (which Dagster's commands read) could set DAGSTER_HOME."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update({"ML_PLATFORM_HOME": str(home), "VIRTUAL_ENV": str(DG.parent.parent)})
    if dagster_home:
        env["DAGSTER_HOME"] = str(dagster_home)
    result = subprocess.run([str(DG), "launch", "--assets", "raw_batch", "--target-path", str(PROJECT_ROOT)],
                            capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_a_run_on_another_dagster_instance_than_the_platforms_says_so(tmp_path):
    home = tmp_path / "home"
    # Without DAGSTER_HOME, dg (like `dagster dev`) runs on a temporary instance of its own: the asset is
    # materialized into the platform's home, but its history is not the platform's, and the run's log says so.
    started_in = tmp_path / "shell"
    started_in.mkdir()
    alone = dg_launch(home, cwd=started_in, dagster_home=None)
    output = alone.stdout + alone.stderr
    assert WARNING in output and f"DAGSTER_HOME={home / 'dagster'}" in output, output[-3000:]
    assert list((home / "snapshots" / "raw").glob("*.parquet"))

    # With DAGSTER_HOME pointed at the platform's instance (written by any ml-platform command), the run is part
    # of the platform's history: no warning, and the materialization is in the instance `ml-platform run` reads.
    subprocess.run([str(DG.parent / "ml-platform"), "--home", str(home), "status"], check=True, capture_output=True,
                   cwd=PROJECT_ROOT, timeout=120)
    shared = dg_launch(home, cwd=started_in, dagster_home=home / "dagster")
    assert WARNING not in shared.stdout + shared.stderr
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        assert instance.get_latest_materialization_event(dg.AssetKey("raw_batch")) is not None


def test_the_instance_check_compares_resolved_paths(tmp_path):
    paths = PlatformPaths(tmp_path / "home")
    assert foreign_instance_warning(tmp_path / "home" / "dagster", paths) is None
    assert foreign_instance_warning(f"{tmp_path}/home/../home/dagster", paths) is None
    assert foreign_instance_warning(None, paths) is None  # no instance to compare (resources built outside a run)
    assert WARNING in foreign_instance_warning(tmp_path / ".tmp_dagster_home_x", paths)
