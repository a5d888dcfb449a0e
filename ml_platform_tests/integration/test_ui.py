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


def test_a_dotenv_that_would_put_the_dagster_ui_on_another_instance_is_refused(platform_env, tmp_path, monkeypatch,
                                                                              capsys):
    # `dagster dev` applies the .env of the folder it starts in (the project root) over the environment it is given:
    # a DAGSTER_HOME there would show another instance than the platform's, with no word of it.
    from ml_platform import cli, settings, ui

    project = tmp_path / "project"
    project.mkdir()
    env = {"DAGSTER_HOME": str(platform_env / "dagster"), "ML_PLATFORM_HOME": str(platform_env)}
    assert ui.env_file_overrides(project, env) == []  # no .env
    (project / ".env").write_text(f"DAGSTER_HOME={platform_env}/../home/dagster/\nSLACK_TOKEN=x\n"
                                  "ML_PLATFORM_MLFLOW_UI_URL=https://mlflow.example.com\n")
    assert ui.env_file_overrides(project, env) == []  # the same instance, spelt otherwise; other names are the team's
    (project / ".env").write_text("DAGSTER_HOME=/srv/dagster\nML_PLATFORM_DATABASE_URL=postgresql://ml:secret@db/ml\n")
    assert ui.env_file_overrides(project, env) == ["DAGSTER_HOME=/srv/dagster",
                                                   "ML_PLATFORM_DATABASE_URL=postgresql://ml:***@db/ml"]

    monkeypatch.setattr(settings, "PROJECT_ROOT", project)  # where `ml-platform ui` starts `dagster dev`
    code = cli.main(["--config", str(write_config(tmp_path)), "ui", "--dagster-port", "1", "--mlflow-port", "1"])
    error = capsys.readouterr().err
    assert code == 2
    assert f"{project / '.env'} sets DAGSTER_HOME=/srv/dagster, ML_PLATFORM_DATABASE_URL=" in error
    assert f"platform's instance ({platform_env / 'dagster'}" in error
    assert "secret" not in error
