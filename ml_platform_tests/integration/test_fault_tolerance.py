"""Faults mid-run, each on the real thing: a run SIGKILLed while it trains, the MLflow tracking server down,
PostgreSQL restarted. In every case nothing is half-written, the champion moves only through the gate, the
run's state is the truth, and the next run completes; two trainings at once train once. (A Celery worker killed
mid-step: test_distributed.py; duplicate triggers at the sensors: unit/test_performance_sensor.py and
unit/test_drift_sensor.py.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ml_platform.resources import ModelRegistry, Warehouse
from ml_platform.runner import dagster_instance, run_lifecycle
from ml_platform.settings import AUDIT_TABLE, PROJECT_ROOT
from ml_platform_tests.conftest import on_postgres, restarts_postgres, write_config

pytestmark = pytest.mark.slow

# What every registered version carries from the moment it exists (one registry call writes them with it).
LINEAGE = ("training_key", "data_snapshot_sha256", "feature_code_version", "config_sha256", "git_commit", "seed",
           "training_run_id")


def assert_registry_consistent(champion: str | None = None) -> None:
    """Every version is whole, and the champion is a version the gate passed (and `champion`, if given)."""
    registry = ModelRegistry()
    for version in registry.versions("churn"):
        missing = [t for t in LINEAGE if not version.tags.get(t)]
        assert not missing, f"version {version.version} is half-registered: no {missing}"
    live = registry.champion_version("churn")
    if champion is not None:
        assert live == champion
    if live is not None:
        assert registry.version("churn", live).tags.get("gate_decision") == "promoted"


def _existing_runs() -> set[str]:
    with dagster_instance() as instance:
        return {run.run_id for run in instance.get_runs()}


def _new_run_step_started(step: str, known: set[str], timeout: float = 300):
    """Wait until a run not in `known` starts `step`; returns (run id, pid of the process running it)."""
    import dagster as dg

    deadline = time.monotonic() + timeout
    with dagster_instance() as instance:
        while time.monotonic() < deadline:
            for run in instance.get_runs(limit=1):
                if run.run_id in known:
                    continue
                for record in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_START).records:
                    if record.event_log_entry.step_key == step:
                        return run.run_id, record.event_log_entry.dagster_event.pid
            time.sleep(0.05)
    raise AssertionError(f"no run started {step} within {timeout} s")


def _step_succeeded(run_id: str, step: str) -> bool:
    import dagster as dg

    with dagster_instance() as instance:
        return any(r.event_log_entry.step_key == step for r in instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.STEP_SUCCESS).records)


def _run_status(run_id: str) -> str:
    with dagster_instance() as instance:
        return instance.get_run_by_id(run_id).status.value


def test_a_run_killed_mid_training_leaves_no_half_registered_version_and_a_rerun_completes(platform_env, tmp_path):
    # A fit long enough (a few seconds) to be killed in the middle of. 600 trees answer a row in ~100-200 ms on a
    # busy 2-core machine: the latency guardrail is raised so that the first model's promotion does not hinge on it.
    config = write_config(tmp_path, {"data": {"source": {"demo": {"rows_per_batch": 20000}}},
                                     "training": {"estimator": {"params": {"max_iter": 600, "early_stopping": False}}},
                                     "gate": {"max_latency_p99_ms": 2000}})
    first = run_lifecycle(config_file=config)
    assert first.success, first.errors
    assert_registry_consistent(champion="1")

    known = _existing_runs()
    cli = subprocess.Popen([sys.executable, "-m", "ml_platform.cli", "--config", str(config), "run", "--batch", "2"],
                           cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        run_id, pid = _new_run_step_started("trained_model", known)
        assert pid == cli.pid, "the in-process executor runs the step in the CLI's own process"
        time.sleep(1.0)  # into the fit
        os.killpg(cli.pid, signal.SIGKILL)
        cli.wait(timeout=30)
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
    assert not _step_succeeded(run_id, "trained_model"), "the kill should land mid-training"
    assert _run_status(run_id) == "STARTED", "nobody has noticed yet: its process is just gone"
    assert_registry_consistent(champion="1")
    assert [str(v.version) for v in ModelRegistry().versions("churn")] == ["1"]

    rerun = run_lifecycle(config_file=config, batch="2")
    assert rerun.success, rerun.errors
    assert _run_status(run_id) == "FAILURE", "the next run marks the dead run failed (and frees its training slot)"
    assert rerun.assets["raw_batch"] == "unchanged" and rerun.assets["trained_model"] == "materialized"
    assert rerun.outputs["trained_model"]["version"] == "2"
    assert_registry_consistent()
    killed_training = ModelRegistry().client().search_runs(
        [e.experiment_id for e in ModelRegistry().client().search_experiments()], f"tags.dagster_run_id = '{run_id}'")
    assert all(r.info.status == "FAILED" for r in killed_training), "the killed run's MLflow run is ended, not left running"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TrackingServer:
    """A real `mlflow server` on loopback (SQLite behind it), stopped and started at will."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.proc = folder, _free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        mlflow = Path(sys.executable).with_name("mlflow")
        self.proc = subprocess.Popen(
            [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
             "--default-artifact-root", str(self.folder / "artifacts")],
            stdout=open(self.folder / "server.log", "a"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                assert self.proc.poll() is None, (self.folder / "server.log").read_text()
                time.sleep(0.3)
        raise AssertionError("mlflow server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def test_mlflow_tracking_server_down_steps_retry_then_fail_clearly_and_nothing_is_half_written(platform_env, tmp_path):
    folder = tmp_path / "tracking"
    folder.mkdir()
    server = TrackingServer(folder)
    os.environ["ML_PLATFORM_MLFLOW_TRACKING_URI"] = server.url  # restored by platform_env
    config = write_config(tmp_path)
    server.start()
    try:
        first = run_lifecycle(config_file=config)
        assert first.success, first.errors
        assert_registry_consistent(champion="1")

        server.stop()
        down = run_lifecycle(config_file=config, batch="2")
        assert not down.success
        assert down.assets["trained_model"] == "failed"
        message = next(e for e in down.errors if e.startswith("trained_model"))
        assert f"the MLflow tracking server at {server.url} is not reachable" in message
        assert "Nothing was written to the registry" in message
        import dagster as dg

        with dagster_instance() as instance:
            retries = [r for r in instance.get_records_for_run(down.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY).records
                       if r.event_log_entry.step_key == "trained_model"]
        assert len(retries) == 3, "RetryPolicy: three retries with backoff before the step fails"

        server.start()
        assert_registry_consistent(champion="1")
        assert [str(v.version) for v in ModelRegistry().versions("churn")] == ["1"]
        rerun = run_lifecycle(config_file=config, batch="2")
        assert rerun.success, rerun.errors
        assert rerun.assets["raw_batch"] == "unchanged" and rerun.outputs["trained_model"]["version"] == "2"
        assert_registry_consistent()
    finally:
        server.stop()


def _postgres_cluster() -> tuple[str, str] | None:
    """(version, name) of the local PostgreSQL cluster, if this process may restart it."""
    if os.geteuid() != 0 or not shutil.which("pg_ctlcluster") or not Path("/etc/postgresql").is_dir():
        return None
    versions = sorted(os.listdir("/etc/postgresql"))
    return (versions[-1], "main") if versions else None


@restarts_postgres
@pytest.mark.skipif(_postgres_cluster() is None, reason="restarting PostgreSQL needs root and pg_ctlcluster")
def test_postgresql_restarted_during_a_run_leaves_consistent_storage_and_the_next_run_succeeds(postgres_profile, tmp_path):
    version, cluster = _postgres_cluster()
    config = write_config(tmp_path, {"data": {"source": {"demo": {"rows_per_batch": 20000}}}})
    first = run_lifecycle(config_file=config)
    assert first.success, first.errors

    outcome: dict = {}
    known = _existing_runs()
    runner = threading.Thread(target=lambda: outcome.update(run=run_lifecycle(config_file=config, batch="2")))
    runner.start()
    run_id, _ = _new_run_step_started("trained_model", known)
    restarted = subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "restart"],
                               capture_output=True, text=True, timeout=120)
    assert restarted.returncode == 0, restarted.stderr
    runner.join(timeout=600)
    assert not runner.is_alive(), "the run neither finished nor failed"
    during = outcome["run"]
    # Resumed (steps retried once the server was back) or failed cleanly: either way the record says which.
    assert _run_status(run_id) == ("SUCCESS" if during.success else "FAILURE")
    assert_registry_consistent()
    _assert_audit_chain_unbroken()

    after = run_lifecycle(config_file=config)
    assert after.success, after.errors
    assert_registry_consistent()
    _assert_audit_chain_unbroken()
    # Dagster ends its `tail -F` of each step's compute log with SIGTERM, also for the run in a thread: none is left
    # (it was, in a suite started in the background: conftest.py).
    assert _processes_reading(tmp_path) == []


def _processes_reading(folder: Path) -> list[str]:
    """Command lines of this machine's processes that name a file under `folder`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:  # ended meanwhile
            continue
        if any(arg.startswith(str(folder)) for arg in argv[1:]):
            found.append(" ".join(argv))
    return found


def _assert_audit_chain_unbroken() -> None:
    """The audit log: gap-free, every champion change starting where the previous one ended, ending at the live
    champion."""
    records = Warehouse().query(f"select seq, from_version, to_version, action from {AUDIT_TABLE} order by seq")
    assert records["seq"].tolist() == list(range(1, len(records) + 1))
    moves = records[records["from_version"].fillna("") != records["to_version"].fillna("")]
    for previous, current in zip(moves.itertuples(), list(moves.itertuples())[1:], strict=False):
        assert current.from_version == previous.to_version, records
    if len(moves):
        assert moves.iloc[-1]["to_version"] == ModelRegistry().champion_version("churn")


@on_postgres
def test_two_trainings_started_at_once_train_one_model_once(postgres_profile, tmp_path):
    """Two triggers at the same moment (two sensors, a double tick, a person and a sensor): the second training
    waits for the first, then reuses the version it registered - one fit, one new version."""
    config = write_config(tmp_path, {"data": {"source": {"demo": {"rows_per_batch": 20000}}}})
    first = run_lifecycle(config_file=config)
    assert first.success, first.errors
    retrain = write_config(tmp_path, {"data": {"source": {"demo": {"rows_per_batch": 20000}}},
                                      "training": {"estimator": {"params": {"max_iter": 120}}}})
    script = ("import json, sys\nfrom ml_platform.runner import run_lifecycle\n"
              "r = run_lifecycle(config_file=sys.argv[1], selection=['trained_model'])\n"
              "print(json.dumps({'success': r.success, 'errors': r.errors, **r.outputs.get('trained_model', {})},"
              " default=str))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(retrain)], cwd=PROJECT_ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for _ in range(2)]
    outcomes = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
    assert all(o["success"] for o in outcomes), outcomes
    assert sorted(o["cache_hit"] for o in outcomes) == [False, True], "one fit; the other reuses its version"
    assert {o["version"] for o in outcomes} == {"2"}
    assert [str(v.version) for v in ModelRegistry().versions("churn")] == ["1", "2"]
    assert_registry_consistent()
