"""Distributed execution on Celery (dagster-celery): the executor the jobs use when
ML_PLATFORM_EXECUTOR=celery, and the `ml-platform worker` process that runs their steps.

A run's steps are queued on the broker (ML_PLATFORM_CELERY_BROKER: RabbitMQ by default, or Redis); any
worker, on any machine with the same code, environment and shared ML_PLATFORM_HOME, takes the next one.
If the process running a step dies (killed, out of memory), Celery reports the step lost: the step and the
run fail at once, and the next `ml-platform run` recomputes from there. A step is acknowledged when a worker
takes it (Celery's default), so it never runs twice; if a whole worker disappears with a step in hand, that
run waits until Dagster's run monitoring ends it (run_monitoring.max_runtime_seconds in dagster.yaml).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ml_platform import settings

# Settings of the Celery app on both sides: the launching process (executor) and the workers.
CELERY_SETTINGS = {
    "worker_prefetch_multiplier": 1,     # a worker holds one step at a time: the others stay free to take
    "broker_connection_retry_on_startup": True,
}


def executor_definition() -> Any:
    from dagster_celery import celery_executor

    return celery_executor.configured({
        "broker": settings.celery_broker(),
        "backend": settings.celery_result_backend(),
        "config_source": {**CELERY_SETTINGS, "task_default_queue": settings.celery_queue()},
    }, name="celery")


def worker_argv(*, name: str, concurrency: int) -> list[str]:
    """The command line of one worker process (run by `ml-platform worker`)."""
    return [sys.executable, "-m", "celery", "-A", "dagster_celery.app", "worker", "--loglevel=INFO",
            "-n", f"{name}@%h", f"--concurrency={concurrency}", "--prefetch-multiplier=1", "-Q", settings.celery_queue()]


def worker_environment(home: Path) -> dict[str, str]:
    """The environment a worker runs in: this one, plus the Celery settings (dagster_celery reads them from a
    module named dagster_celery_config on the path) and the project on the path."""
    folder = home / "celery"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"broker_url = {settings.celery_broker()!r}", f"result_backend = {settings.celery_result_backend()!r}"]
    lines += [f"{key} = {value!r}" for key, value in CELERY_SETTINGS.items()]
    config = folder / "dagster_celery_config.py"
    text = "# Written by ml-platform worker (ml_platform/workers.py).\n" + "\n".join(lines) + "\n"
    if not config.exists() or config.read_text() != text:
        config.write_text(text)
    path = os.pathsep.join(p for p in (str(folder), str(settings.PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}
