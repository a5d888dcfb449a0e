"""Helpers for the serving tests: start the real service as a process, register extra model versions.

`SlowStep` is a real scikit-learn step that sleeps in `transform`, or fails when the environment variable
it names is set (an injected fault, e.g. for the serving process only): a challenger built with it
breaches the canary's latency (or error) guardrail the way a too-heavy or broken model would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sklearn.base import BaseEstimator, TransformerMixin

from ml_platform.settings import PROJECT_ROOT

SLOW_STEP_TYPE = "ml_platform_tests.serving_support.SlowStep"


class SlowStep(TransformerMixin, BaseEstimator):
    def __init__(self, seconds: float = 0.0, fail_if_env: str | None = None):
        self.seconds = seconds
        self.fail_if_env = fail_if_env

    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def transform(self, X):
        if self.fail_if_env and os.environ.get(self.fail_if_env):
            raise RuntimeError(f"SlowStep fails while {self.fail_if_env} is set")
        time.sleep(self.seconds)
        return X


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_service(config: Path, home: Path, *, env: dict[str, str] | None = None,
                    token: str | None = None) -> Iterator[Service]:
    """`ml-platform serve` on a free loopback port; stopped with SIGTERM (a clean shutdown) on exit."""
    port = free_port()
    log_path = home / f"serve-{port}.log"
    environment = {**os.environ, "ML_PLATFORM_HOME": str(home), "ML_PLATFORM_CONFIG": str(config), **(env or {})}
    if token:
        environment["ML_PLATFORM_SERVING_TOKEN"] = token
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ml_platform.cli", "serve", "--port", str(port)],
            cwd=PROJECT_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
        )
    service = Service(f"http://127.0.0.1:{port}", process, log_path, token)
    try:
        service.wait_ready()
        yield service
    finally:
        service.stop()


class Service:
    def __init__(self, url: str, process: subprocess.Popen, log_path: Path, token: str | None):
        self.url, self.process, self.log_path = url, process, log_path
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=url, headers=headers, timeout=30)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited ({self.process.returncode}):\n{self.log()}")
            try:
                if self.client.get("/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the service was not ready in {timeout} s:\n{self.log()}")

    def wait_for(self, predicate, timeout: float = 30, what: str = "condition") -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"{what} not reached in {timeout} s; /version: {self.client.get('/version').text}")

    def version(self) -> dict:
        return self.client.get("/version").json()

    def stop(self) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


FAIL_ENV = "SLOWSTEP_FAIL"  # set it in a service's environment to make a fail=True version raise


def register_version(config_file: Path, *, slow_seconds: float | None = None, fail: bool = False,
                     max_iter: int = 60) -> str:
    """Train a pipeline on the warehouse feature table with the platform's own modeling code, log and
    register it in the real MLflow registry (no alias). With `slow_seconds`/`fail`, a SlowStep runs
    before the model."""
    from ml_platform.config import load_config
    from ml_platform.lib.modeling import build_pipeline, split_training_data, trusted_types
    from ml_platform.resources import ModelRegistry, Warehouse

    config = load_config(config_file)
    frame = Warehouse().query(f"select * from features.{config.features.dbt_model}")
    split = split_training_data(frame, config)
    pipeline = build_pipeline(config, split.X_train)
    pipeline.set_params(model__max_iter=max_iter)
    if slow_seconds is not None or fail:
        pipeline.steps.insert(0, ("slow", SlowStep(seconds=slow_seconds or 0.0,
                                                   fail_if_env=FAIL_ENV if fail else None)))
    pipeline.fit(split.X_train, split.y_train)
    registry = ModelRegistry()
    _, version = registry.log_and_register(
        model_name=config.model.name, experiment=config.model.name, pipeline=pipeline,
        X_train=split.X_train, training_frame=frame, dataset_source="warehouse", dataset_digest="0" * 64,
        target=config.data.target, params={"max_iter": max_iter}, tags={"registered_by": "serving test"},
        trusted_types=[*trusted_types(config), SLOW_STEP_TYPE], pip_requirements=["scikit-learn"],
    )
    record_artifact_digest(config.model.name, version)
    return version


def record_artifact_digest(model_name: str, version: str) -> str:
    """Record the version's artifact digest as evaluation does (the service serves only evaluated bytes)."""
    import tempfile

    from ml_platform.lib.artifacts import DIGEST_TAG
    from ml_platform.resources import ModelRegistry

    registry = ModelRegistry()
    with tempfile.TemporaryDirectory() as tmp:
        _, digest = registry.fetch_model(model_name, version, Path(tmp))
    registry.tag_version(model_name, version, {DIGEST_TAG: digest})
    return digest
