"""Stopping `ml-platform ui` (what `make ui` runs). A clean stop on one SIGTERM is checked by every test that
starts it (ui_support.running_ui); here, an impatient stop: a second signal during the shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from ml_platform.settings import PROJECT_ROOT
from ml_platform_tests.conftest import write_config
from ml_platform_tests.ui_support import alive, descendants, ui_ports, wait_for


def test_a_second_signal_during_the_shutdown_still_leaves_nothing_running(platform_env, tmp_path):
    # Started as a background job is (SIGINT ignored). Before, `dagster dev` then ignored SIGTERM as well, and a
    # second SIGTERM (or Ctrl-C) while ml-platform ui waited for it ended ml-platform ui at once: `dagster dev`
    # with its webserver, daemon and code servers kept running with nobody to stop them.
    dagster_port, mlflow_port = ui_ports()
    log = tmp_path / "ui.log"
    ui = subprocess.Popen([sys.executable, "-m", "ml_platform.cli", "--config", str(write_config(tmp_path)), "ui",
                           "--dagster-port", str(dagster_port), "--mlflow-port", str(mlflow_port)],
                          cwd=PROJECT_ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        wait_for(f"http://127.0.0.1:{mlflow_port}/health", ui, log)
        wait_for(f"http://127.0.0.1:{dagster_port}/server_info", ui, log)
        started = descendants(ui.pid)
        assert len(started) >= 4, started  # dagster dev, its webserver and daemon, the MLflow server
        ui.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the shutdown under way
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=120)
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10  # reaped by init after ml-platform ui ended: a moment, not a measurement
    while alive(started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(started), f"left running: {sorted(alive(started))}\n{log.read_text()}"
