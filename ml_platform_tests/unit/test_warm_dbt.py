"""The warm dbt process (ml_platform/warm_dbt.py): runs one dbt command as dbt itself would, with the real dbt."""

import json
import os
import subprocess

import pytest

from ml_platform import settings, warm_dbt
from ml_platform.defs.features.resources import FeatureDbtCli


@pytest.fixture
def dbt_env(tmp_path, monkeypatch):
    """What the feature step gives dbt: the profile reads the target and the warehouse from the environment."""
    monkeypatch.setenv("ML_PLATFORM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ML_PLATFORM_DBT_TARGET", "duckdb")
    (tmp_path / "home").mkdir()
    return tmp_path


def dbt_args(tmp_path, *command: str) -> list[str]:
    project = str(settings.dbt_project_dir())
    return [*command, "--project-dir", project, "--profiles-dir", project, "--target-path", str(tmp_path / "target"),
            "--log-path", str(tmp_path / "logs"), "--log-format", "json"]


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_the_launcher_runs_the_command_in_the_warm_dbt_process(dbt_env):
    warm = warm_dbt.start(settings.dbt_executable(), "duckdb")
    assert warm is not None
    try:
        done = subprocess.run([str(warm.launcher), *dbt_args(dbt_env, "ls", "--resource-type", "model")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        logged = events(done.stdout)
        assert {e["info"]["pid"] for e in logged} == {warm.process.pid}  # dbt ran in the warm process
        listed = {e["info"]["msg"] for e in logged if e["info"]["name"] == "PrintEvent"}
        assert "ml_platform_features.features.churn_features" in listed
        assert warm.process.wait(timeout=30) == 0  # one command, then it ends
    finally:
        warm.close()
    assert not warm.workdir.exists()


def test_a_failing_command_gives_dbts_own_exit_status_and_message(dbt_env):
    args = dbt_args(dbt_env, "build", "--no-such-flag")
    itself = subprocess.run([settings.dbt_executable(), *args], capture_output=True, text=True, timeout=120)
    with warm_dbt.warm_dbt(settings.dbt_executable(), "duckdb") as warm:
        through_warm = subprocess.run([str(warm.launcher), *args], capture_output=True, text=True, timeout=120)
    assert itself.returncode == through_warm.returncode == 2
    assert "No such option '--no-such-flag'" in through_warm.stdout + through_warm.stderr


def test_without_its_warm_process_the_launcher_runs_dbt_itself(dbt_env):
    warm = warm_dbt.start(settings.dbt_executable(), "duckdb")
    assert warm is not None
    try:
        warm.process.kill()
        warm.process.wait()
        done = subprocess.run([str(warm.launcher), *dbt_args(dbt_env, "ls", "--resource-type", "model")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        pids = {e["info"]["pid"] for e in events(done.stdout)}
        assert len(pids) == 1 and warm.process.pid not in pids
    finally:
        warm.close()


def test_an_unused_warm_dbt_ends_with_the_block_and_is_forgotten(dbt_env):
    with warm_dbt.warm_dbt(settings.dbt_executable(), "duckdb") as warm:
        assert warm_dbt.current_launcher() == str(warm.launcher)
    assert warm.process.poll() is not None
    assert not warm.workdir.exists()
    assert warm_dbt.LAUNCHER_ENV not in os.environ and warm_dbt.current_launcher() is None


def test_only_dbt_cores_own_console_script_is_run_warm(tmp_path):
    assert warm_dbt.interpreter_of(settings.dbt_executable())
    wrapper = tmp_path / "dbt"
    wrapper.write_text("#!/usr/bin/env python3\nimport subprocess, sys\nsys.exit(subprocess.call(['dbt', *sys.argv[1:]]))\n")
    assert warm_dbt.interpreter_of(str(wrapper)) is None
    assert warm_dbt.start(str(wrapper), "duckdb") is None
    assert warm_dbt.interpreter_of(str(tmp_path / "missing")) is None


def test_the_feature_resource_runs_dbt_through_the_warm_process_and_keeps_its_version(dbt_env):
    resource = FeatureDbtCli(project_dir=str(settings.dbt_project_dir()), dbt_executable=settings.dbt_executable())
    with warm_dbt.warm_dbt(settings.dbt_executable(), "duckdb") as warm:
        invocation = resource.cli(["ls", "--resource-type", "model"], target_path=dbt_env / "target")
        pids = {event.raw_event["info"]["pid"] for event in invocation.stream_raw_events()}
        assert invocation.is_successful()
    assert pids == {warm.process.pid}
    assert invocation.process.args[0] == str(warm.launcher)
    assert str(resource._cli_version) == warm_dbt_version()


def warm_dbt_version() -> str:
    from ml_platform.defs.features.resources import installed_dbt_core_version

    return installed_dbt_core_version(settings.dbt_executable())
