"""docs/tutorial.md, executed: every ```bash block, as written and in order, in one shell, in a copy of the
repository (so `init` writes its dbt model into the copy's dbt_project/, not this checkout's). The copy
uses this checkout's virtualenvs; PYTHONPATH makes its `ml-platform` run the copy's code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from ml_platform.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow

TUTORIAL = PROJECT_ROOT / "docs" / "tutorial.md"


def bash_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.S | re.M)


def copy_of_the_repository(dest):
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=PROJECT_ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        source = PROJECT_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)  # mtimes kept: `make setup` sees the virtualenvs up to date
    for venv in (".venv", ".dbt-venv"):
        (dest / venv).symlink_to(PROJECT_ROOT / venv)


def test_the_tutorial_runs_as_written(tmp_path):
    for venv in (".venv", ".dbt-venv"):
        # The copy's `make setup` would try to rebuild a stale virtualenv, which is this checkout's (a symlink).
        installed, project = PROJECT_ROOT / venv / ".installed", PROJECT_ROOT / "pyproject.toml"
        if not installed.exists() or installed.stat().st_mtime < project.stat().st_mtime:
            pytest.fail(f"{venv} is older than pyproject.toml: run `make setup` first (`make test` does)")
    blocks = bash_blocks(TUTORIAL.read_text())
    assert len(blocks) >= 8, "the tutorial's steps are ```bash blocks"
    repo = tmp_path / "repo"
    copy_of_the_repository(repo)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ML_PLATFORM_", "DAGSTER_"))}
    env.update(PYTHONPATH=str(repo), NO_COLOR="1")
    script = "set -euo pipefail\n" + "\n".join(f"echo '### step {i}'\n{block}" for i, block in enumerate(blocks))
    done = subprocess.run(["bash", "-c", script], cwd=repo, env=env, capture_output=True, text=True, timeout=1200)
    output = done.stdout + done.stderr
    (tmp_path / "tutorial.log").write_text(output)
    assert done.returncode == 0, output[-6000:]

    assert "holdout ROC AUC" in output                                         # the notebook ran
    assert (repo / "dbt_project" / "models" / "features" / "tumours_features.sql").exists()
    assert "location_name: tumours" in (repo / "workspace.yaml").read_text()  # a code location of its own
    assert "gate: version 1 passed" in output
    assert "promoted: version 1 is champion (approved by alice@example.com)" in output
    assert '"entity_id":"p-0003"' in output and '"model_version":"1"' in output  # served by the champion
    assert "gate: version 2 passed" in output
    assert "promoted: version 2 is champion" in output
    assert "drift: DETECTED" in output                                         # day 3's recalibrated instrument
    assert "gate: version 3 rejected; champion is 2" in output
    assert "rolled back: champion 2 → 1" in output
    assert "rollback" in output.split("### step")[-1]                          # history shows it
    assert not (PROJECT_ROOT / "dbt_project" / "models" / "features" / "tumours_features.sql").exists()
    assert "tumours" not in (PROJECT_ROOT / "workspace.yaml").read_text()
