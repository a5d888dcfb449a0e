"""The lifecycle on Celery: two real `ml-platform worker` processes take its steps from the local RabbitMQ,
on the PostgreSQL profile; a worker process killed mid-step fails the run (and it is seen failed), and a
rerun completes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from ml_platform.resources import ModelRegistry
from ml_platform.runner import dagster_instance, run_lifecycle, use_environment
from ml_platform.settings import PROJECT_ROOT
from ml_platform_tests.conftest import on_postgres, write_config

pytestmark = [pytest.mark.slow, on_postgres]


class Workers:
    """`ml-platform worker` processes, each in its own process group, with their logs."""

    def __init__(self, logs: Path):
        self.logs, self.procs = logs, {}

    def start(self, name: str) -> None:
        log = open(self.logs / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "ml_platform.cli", "worker", "--name", name], cwd=PROJECT_ROOT,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            while "ready." not in (self.logs / f"{name}.log").read_text():
                assert proc.poll() is None, f"worker {name} exited:\n{(self.logs / f'{name}.log').read_text()}"
                assert time.monotonic() < deadline, f"worker {name} not ready:\n{(self.logs / f'{name}.log').read_text()}"
                time.sleep(0.5)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def celery_workers(postgres_profile, platform_env, tmp_path):
    """Two workers on a queue of this test's own (other sessions on the broker never take its steps)."""
    # A training step of several seconds (no early stopping), to be killed in the middle of.
    config = write_config(tmp_path, {"data": {"source": {"demo": {"rows_per_batch": 20000}}},
                                     "training": {"estimator": {"params": {"max_iter": 600, "early_stopping": False}}}})
    os.environ.update({"ML_PLATFORM_EXECUTOR": "celery", "ML_PLATFORM_CELERY_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
                       "ML_PLATFORM_CONFIG": str(config)})  # restored by platform_env
    use_environment()  # the databases exist before the workers connect
    workers = Workers(tmp_path)
    for name in ("w1", "w2"):
        workers.start(name)
    try:
        workers.wait_ready()
        yield config, workers
    finally:
        workers.stop()


def _step_events(run_id: str, kind: str) -> list:
    with dagster_instance() as instance:
        return [r.event_log_entry for r in instance.get_records_for_run(run_id, of_type=_event_type(kind), limit=1000).records]


def test_the_lifecycle_runs_on_two_celery_workers_and_a_killed_worker_fails_the_run(celery_workers):
    config, workers = celery_workers
    first = run_lifecycle(config_file=config)
    assert first.success, first.errors
    assert first.outputs["champion_model"]["champion_version"] == "1"
    starts = _step_events(first.run_id, "STEP_START")
    worker_pids = {e.dagster_event.pid for e in starts}
    assert os.getpid() not in worker_pids, "steps ran in the workers, not in the launching process"
    assert len(worker_pids) >= 2, f"the steps should spread over both workers, ran in {worker_pids}"

    # Day two: the process running the training step is SIGKILLed mid-step.
    result: dict = {}
    with dagster_instance() as instance:
        known = {run.run_id for run in instance.get_runs()}
    runner = threading.Thread(target=lambda: result.update(run=run_lifecycle(config_file=config, batch="2")))
    runner.start()
    killed = None
    with dagster_instance() as instance:
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and runner.is_alive():
            for run in [r for r in instance.get_runs(limit=1) if r.run_id not in known]:
                for record in instance.get_records_for_run(run.run_id, of_type=_event_type("STEP_START")).records:
                    entry = record.event_log_entry
                    if entry.step_key == "trained_model":
                        # Well into the step: a child killed in the instant between taking a task and Celery's
                        # parent process seeing it start can leave the task unaccounted for (see deployment.md).
                        time.sleep(1.0)
                        os.kill(entry.dagster_event.pid, signal.SIGKILL)
                        killed = (run.run_id, entry.dagster_event.pid)
            time.sleep(0.1)
    runner.join(timeout=300)
    assert killed, "the training step never started"
    second = result["run"]
    assert second.assets.get("trained_model") != "materialized", "the kill should land mid-training"
    assert not second.success
    assert second.assets["trained_model"] == "failed" or any("trained_model" in e for e in second.errors), second.errors
    with dagster_instance() as instance:
        assert instance.get_run_by_id(killed[0]).status.value == "FAILURE"
    registry = ModelRegistry()
    assert [str(v.version) for v in registry.versions("churn")] == ["1"], "no half-registered version"
    assert registry.champion_version("churn") == "1"

    # The worker lives on (Celery replaced its process); a rerun completes what the killed run did not.
    rerun = run_lifecycle(config_file=config, batch="2")
    assert rerun.success, rerun.errors
    assert rerun.assets["trained_model"] == "materialized" and rerun.assets["raw_batch"] == "unchanged"
    assert rerun.outputs["champion_model"]["challenger_version"] == "2"


def _event_type(name: str):
    import dagster as dg

    return getattr(dg.DagsterEventType, name)


def test_a_model_added_with_init_runs_on_workers_started_for_another_model(postgres_profile, platform_env, tmp_path):
    """Workers serve every model of the project. Before, a step of an `init`-made model was rebuilt on the worker
    from the project's module with the worker's own config (another model's): 'For selected asset
    ["tumours", "trained_model"], did you mean ["trained_model"]', and the run failed."""
    dbt = tmp_path / "dbt_project"
    shutil.copytree(PROJECT_ROOT / "dbt_project", dbt, ignore=shutil.ignore_patterns("target", "logs"))
    shutil.copy(PROJECT_ROOT / "workspace.yaml", tmp_path / "workspace.yaml")  # init adds the model's location
    (tmp_path / "tumours").mkdir()
    shutil.copy(PROJECT_ROOT / "docs" / "tutorial" / "tumour_model.py", tmp_path / "tumours")
    subprocess.run([sys.executable, str(PROJECT_ROOT / "docs" / "tutorial" / "make_data.py"), "1",
                    str(tmp_path / "tumours" / "patients.csv")], check=True, capture_output=True)
    os.environ.update({"ML_PLATFORM_DBT_PROJECT_DIR": str(dbt), "ML_PLATFORM_EXECUTOR": "celery",
                       "ML_PLATFORM_CELERY_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
                       "ML_PLATFORM_CONFIG": str(write_config(tmp_path, name="churn.yaml"))})  # the workers' model
    try:
        init = subprocess.run([sys.executable, "-m", "ml_platform.cli", "init", "--data", "tumours/patients.csv",
                               "--target", "diagnosis", "--name", "tumours", "--pipeline", "tumour_model:build_pipeline",
                               "--output", "tumours/ml_platform.yaml"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
        assert init.returncode == 0, init.stdout + init.stderr
        use_environment()  # the databases exist before the worker connects
        workers = Workers(tmp_path)
        workers.start("w1")
        try:
            workers.wait_ready()
            run = run_lifecycle(config_file=tmp_path / "tumours" / "ml_platform.yaml")
        finally:
            workers.stop()
    finally:
        os.environ.pop("ML_PLATFORM_DBT_PROJECT_DIR")  # the others are restored by platform_env
    assert run.success, run.errors
    assert run.assets["trained_model"] == "materialized"
    assert os.getpid() not in {e.dagster_event.pid for e in _step_events(run.run_id, "STEP_START")}, \
        "the steps ran on the worker"
    assert ModelRegistry().versions("tumours") and not ModelRegistry().find_version("churn", "1")
