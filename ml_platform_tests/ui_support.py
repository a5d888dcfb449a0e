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


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children, theirs, ...), from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
        except OSError:
            continue  # ended meanwhile
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""  # ended meanwhile


def alive(pids: set[int]) -> set[int]:
    """Those of `pids` still running (a zombie, ended but not yet reaped, is not)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running


@contextmanager
def running_ui(config: Path, log: Path, *, ports: tuple[int, int] | None = None) -> Iterator[RunningUI]:
    """`ml-platform --config CONFIG ui` on the current ML_PLATFORM_HOME, until both UIs answer. It starts as a
    background job does (`make ui &`, a CI shell): with SIGINT ignored. On exit it gets SIGTERM, as from a process
    manager, and must stop cleanly: exit status 0 (`dagster dev` shut its services down itself, not killed after
    the grace period) and no process it started left running."""
    dagster_port, mlflow_port = ports or ui_ports()

    def as_a_background_job() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    ui = subprocess.Popen([sys.executable, "-m", "ml_platform.cli", "--config", str(config), "ui",
                           "--dagster-port", str(dagster_port), "--mlflow-port", str(mlflow_port)],
                          cwd=PROJECT_ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
                          preexec_fn=as_a_background_job)
    started: set[int] = set()
    try:
        wait_for(f"http://127.0.0.1:{mlflow_port}/health", ui, log)
        wait_for(f"http://127.0.0.1:{dagster_port}/server_info", ui, log)
        yield RunningUI(f"http://127.0.0.1:{dagster_port}", f"http://127.0.0.1:{mlflow_port}", log, ui)
        started = descendants(ui.pid)
        # MLflow's job runner is off: its huey consumers cost 1.9 GB, and its jobs escape the server's process group.
        job_runners = {pid: cmd for pid in started if "huey" in (cmd := command_line(pid)) or "_job_runner" in cmd}
        assert not job_runners, job_runners
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)  # and the exit status below says so
    assert ui.returncode == 0, f"ml-platform ui exited with {ui.returncode}, not 0:\n{log.read_text()}"
    assert "Shutting down Dagster services" in log.read_text(), log.read_text()
    assert not alive(started), f"left running after ml-platform ui stopped: {sorted(alive(started))}"
