"""`ml-platform ui` (what `make ui` runs): the MLflow UI and the Dagster UI (webserver and daemon) on the
profile's stores - SQLite and local files by default, PostgreSQL with ML_PLATFORM_DATABASE_URL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ml_platform import keys, settings


def commands(*, host: str, dagster_port: int, mlflow_port: int) -> dict[str, list[str]]:
    """The two processes: an MLflow tracking server on the profile's backend store (unless the profile points at
    a tracking server of its own, ML_PLATFORM_MLFLOW_TRACKING_URI) and `dagster dev` on the profile's instance."""
    paths, bin_dir = settings.platform_paths(), Path(sys.executable).parent
    procs = {"dagster": [str(bin_dir / "dagster"), "dev", "-w", str(settings.PROJECT_ROOT / "workspace.yaml"),
                         "-h", host, "-p", str(dagster_port)]}
    if not paths.tracking_uri.startswith(("http://", "https://")):
        # The backend store (with the PostgreSQL password, if any) goes by the environment, MLFLOW_BACKEND_STORE_URI
        # (see _environment): a command line is readable by every user of the machine (`ps`).
        procs["mlflow"] = [str(bin_dir / "mlflow"), "server", "--host", host, "--port", str(mlflow_port),
                           "--workers", "1", "--default-artifact-root", paths.artifact_root]
    return procs


# The settings that say where the platform's state is (settings.py): a different value means other stores.
STATE_SETTINGS = ("DAGSTER_HOME", "ML_PLATFORM_HOME", "ML_PLATFORM_CONFIG", "ML_PLATFORM_DATABASE_URL",
                  "ML_PLATFORM_DAGSTER_DATABASE_URL", "ML_PLATFORM_MLFLOW_TRACKING_URI", "ML_PLATFORM_ARTIFACT_ROOT")


def env_file_overrides(folder: Path, env: dict[str, str]) -> list[str]:
    """The STATE_SETTINGS that `folder`/.env would change for the Dagster UI, as `NAME=value`.

    Dagster's commands (`dagster dev` among them) read a `.env` file in the folder they start in and apply it over
    the environment they were given: a DAGSTER_HOME there (a common way to pin a Dagster instance) would put the
    Dagster UI on another instance than the one the platform's runs use, and ML_PLATFORM_HOME or a database URL
    would give the UI's code other stores than the MLflow UI beside it. Other variables are the team's affair."""
    path = folder / ".env"
    if not path.is_file():
        return []
    from dotenv import dotenv_values  # python-dotenv, what Dagster reads the file with

    def same(name: str, value: str) -> bool:
        if name not in env:
            return False
        return Path(value).resolve() == Path(env[name]).resolve() if name.endswith("_HOME") else value == env[name]

    return [f"{name}={settings.redacted(value)}" for name, value in dotenv_values(path).items()
            if value is not None and name in STATE_SETTINGS and not same(name, value)]


def run(*, host: str = "127.0.0.1", dagster_port: int = 3000, mlflow_port: int = 5000, as_json: bool = False) -> int:
    """Start both, print where they are, and stop both on Ctrl-C or SIGTERM (or when either exits)."""
    environment = _environment(host, dagster_port, mlflow_port)
    if overrides := env_file_overrides(settings.PROJECT_ROOT, environment):
        raise ValueError(
            f"{settings.PROJECT_ROOT / '.env'} sets {', '.join(overrides)}. Dagster's commands apply that file over "
            f"the platform's settings, so the Dagster UI would not show the platform's instance "
            f"({environment.get('DAGSTER_HOME')}, home {environment.get('ML_PLATFORM_HOME')}). Remove those lines, or start "
            "ml-platform with the same settings")
    if threading.current_thread() is threading.main_thread():
        # What a process manager (systemd, docker stop, a test) sends: stop both UIs as Ctrl-C does, instead of
        # dying at once and leaving them running in their own sessions.
        signal.signal(signal.SIGTERM, _interrupt)
        # A process started in the background (`make ui &`, nohup, a CI shell) inherits SIGINT ignored, and so
        # would the UIs. `dagster dev` maps SIGTERM to its SIGINT handler: with SIGINT ignored it ignored SIGTERM
        # too, and every stop waited 30 s for the SIGKILL below. A handled signal is reset to the default in a
        # child, so the UIs start with SIGINT (and so SIGTERM) working.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    procs = {name: subprocess.Popen(argv, cwd=settings.PROJECT_ROOT, env=environment, start_new_session=True)
             for name, argv in commands(host=host, dagster_port=dagster_port, mlflow_port=mlflow_port).items()}
    tracking = settings.platform_paths().tracking_uri
    mlflow_url = f"http://{host}:{mlflow_port}" if "mlflow" in procs else tracking
    if as_json:
        print(json.dumps({"dagster_url": f"http://{host}:{dagster_port}", "mlflow_url": mlflow_url,
                          "profile": settings.profile()}), flush=True)
    else:
        print(f"Dagster UI: http://{host}:{dagster_port}   MLflow UI: {mlflow_url}   "
              f"(profile {settings.profile()}; Ctrl-C stops both)", flush=True)
    try:
        while all(p.poll() is None for p in procs.values()):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        _stop(procs)
    failed = [name for name, p in procs.items() if p.returncode not in (0, -signal.SIGTERM, None)]
    return 1 if failed else 0


def _stop(procs: dict[str, subprocess.Popen], grace_seconds: float = 30) -> None:
    """SIGTERM to each UI's process group (`dagster dev` with its webserver, daemon and code servers; the MLflow
    server with its workers), then up to `grace_seconds` for them to shut down. A second Ctrl-C or SIGTERM, or
    the time running out, kills whatever is left in those groups: a stop never leaves a UI running."""
    for proc in procs.values():
        _signal_group(proc, signal.SIGTERM)
    try:
        deadline = time.monotonic() + grace_seconds
        for proc in procs.values():
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        pass
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):  # nothing may interrupt the last step
            signal.signal(signum, signal.SIG_IGN)
    for proc in procs.values():  # also a group whose leader exited but left children behind
        _signal_group(proc, signal.SIGKILL)
        proc.wait()


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)  # each UI leads a session of its own (start_new_session)
    except ProcessLookupError:
        pass


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _environment(host: str, dagster_port: int, mlflow_port: int) -> dict[str, str]:
    env = dict(os.environ)
    if keys.prefix():
        # A model with prefixed keys has a code location of its own (its definitions.py in workspace.yaml); the
        # workspace's first location keeps the project config, instead of loading this model a second time.
        env.pop("ML_PLATFORM_CONFIG", None)
    # Links in Dagster metadata and alerts point at these UIs.
    env = {**env, "ML_PLATFORM_MLFLOW_UI_URL": os.environ.get("ML_PLATFORM_MLFLOW_UI_URL", f"http://{host}:{mlflow_port}"),
           "ML_PLATFORM_DAGSTER_UI_URL": os.environ.get("ML_PLATFORM_DAGSTER_UI_URL", f"http://{host}:{dagster_port}")}
    # MLflow's server otherwise runs a job runner with seven huey consumers (1.9 GB of memory here) for its GenAI
    # jobs, which the platform does not use; their jobs start in sessions of their own, which stopping the server's
    # process group does not reach.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # `dagster dev` would print a SupersessionWarning ("use dg dev") on every start: it is what `ml-platform ui` runs.
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), "ignore:Function `dev_command`"]))
    tracking = settings.platform_paths().tracking_uri
    if not tracking.startswith(("http://", "https://")):
        env["MLFLOW_BACKEND_STORE_URI"] = tracking  # the tracking server's store (commands() says why not argv)
    return env
