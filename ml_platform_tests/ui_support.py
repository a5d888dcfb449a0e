"""`ml-platform ui` (what `make ui` runs) as a real subprocess on free loopback ports, for the tests that look at it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ml_platform.settings import PROJECT_ROOT
from ml_platform_tests.serving_support import free_port


@dataclass(frozen=True)
class RunningUI:
    dagster_url: str
    mlflow_url: str
    log: Path
    proc: subprocess.Popen


def ui_ports() -> tuple[int, int]:
    """Two free loopback ports: Dagster's and MLflow's."""
    return free_port(), free_port()


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Until `url` answers; fails with the process's log if the process exits or `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer:\n{log.read_text()}")


@contextmanager
def running_ui(config: Path, log: Path, *, ports: tuple[int, int] | None = None) -> Iterator[RunningUI]:
    """`ml-platform --config CONFIG ui` on the current ML_PLATFORM_HOME, until both UIs answer; stopped on exit
    with SIGTERM (SIGINT may be ignored by a process started in the background, as CI shells do)."""
    dagster_port, mlflow_port = ports or ui_ports()
    ui = subprocess.Popen([sys.executable, "-m", "ml_platform.cli", "--config", str(config), "ui",
                           "--dagster-port", str(dagster_port), "--mlflow-port", str(mlflow_port)],
                          cwd=PROJECT_ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{mlflow_port}/health", ui, log)
        wait_for(f"http://127.0.0.1:{dagster_port}/server_info", ui, log)
        yield RunningUI(f"http://127.0.0.1:{dagster_port}", f"http://127.0.0.1:{mlflow_port}", log, ui)
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
