"""Work prepared on a thread while a step waits (ml_platform/prefetch.py), and dbt's version without a dbt process."""

from __future__ import annotations

import subprocess
import threading

import pytest

from ml_platform import prefetch, settings
from ml_platform.defs.features.resources import FeatureDbtCli, installed_dbt_core_version


def test_tasks_run_on_another_thread_and_are_done_when_the_block_ends(monkeypatch):
    monkeypatch.delenv("ML_PLATFORM_EXECUTOR", raising=False)
    ran: list[str] = []
    inside = threading.Event()

    def task() -> None:
        inside.wait(5)  # starts only once the block is running: it overlaps the block
        ran.append(threading.current_thread().name)

    with prefetch.while_waiting([task]):
        inside.set()
    assert ran == ["ml-platform-prefetch"]


def test_a_failing_task_changes_nothing_and_the_next_one_still_runs(monkeypatch):
    monkeypatch.delenv("ML_PLATFORM_EXECUTOR", raising=False)
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("tracking server down")

    with prefetch.while_waiting([broken, lambda: ran.append("second")]):
        pass
    assert ran == ["second"]


def test_nothing_is_prefetched_when_steps_run_in_other_processes(monkeypatch):
    # multiprocess and celery need the PostgreSQL profile; the next step runs in another process.
    monkeypatch.setenv("ML_PLATFORM_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/unused")
    monkeypatch.setenv("ML_PLATFORM_EXECUTOR", "multiprocess")
    ran: list[str] = []
    with prefetch.while_waiting([lambda: ran.append("task")]):
        pass
    assert ran == []


def test_training_tasks_import_the_configured_estimator_module_but_not_a_pipeline_factory():
    opened: list[bool] = []
    tasks = prefetch.training_tasks("sklearn.ensemble.HistGradientBoostingClassifier", lambda: opened.append(True))
    assert len(tasks) == len(prefetch.TRAINING_MODULES) + 2
    assert len(prefetch.training_tasks(None, lambda: None)) == len(prefetch.TRAINING_MODULES) + 1
    tasks[-1]()
    assert opened == [True]


def test_dbt_core_version_is_read_from_the_metadata_dbt_itself_reports():
    executable = settings.dbt_executable()
    reported = subprocess.run([executable, "--version"], capture_output=True, text=True, check=True).stdout
    known = installed_dbt_core_version(executable)
    assert known is not None and f"installed: {known}" in reported, reported
    resource = FeatureDbtCli(project_dir=str(settings.dbt_project_dir()), dbt_executable=executable)
    assert str(resource._cli_version) == known


def test_a_dbt_without_metadata_beside_it_is_asked_for_its_version(tmp_path):
    fake = tmp_path / "bin" / "dbt"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Core:\n  - installed: 1.10.3'\n")
    fake.chmod(0o755)
    assert installed_dbt_core_version(str(fake)) is None
    resource = FeatureDbtCli(project_dir=str(settings.dbt_project_dir()), dbt_executable=str(fake))
    assert str(resource._cli_version) == "1.10.3"


@pytest.fixture(autouse=True)
def _fresh_version_cache():
    installed_dbt_core_version.cache_clear()
    yield
    installed_dbt_core_version.cache_clear()


def test_append_tasks_import_the_model_files_and_the_plots_modules():
    import sys

    for task in prefetch.append_tasks():
        task()
    assert {"skops.io", "matplotlib.figure"} <= set(sys.modules)
    assert not set(prefetch.APPEND_MODULES) & set(prefetch.TRAINING_MODULES)  # each imported in one place
