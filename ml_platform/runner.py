"""Running the lifecycle job on the platform's own Dagster instance, and reading back what happened.

Used by the CLI (`ml-platform run`, `ml-platform demo`), the tests and the benchmark, so that all of
them run exactly what `make ui` shows: runs land in the same Dagster storage under ML_PLATFORM_HOME.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ml_platform import settings, storage
from ml_platform.config import ProjectConfig, load_config

LIFECYCLE_JOB = "lifecycle"
DAILY_JOB = "daily"  # the lifecycle without training: what the daily schedule runs

@dataclass
class LifecycleResult:
    success: bool
    run_id: str
    job_name: str = LIFECYCLE_JOB
    assets: dict[str, str] = field(default_factory=dict)   # asset key -> materialized | skipped | failed
    checks: dict[str, dict] = field(default_factory=dict)  # "asset:check" -> {"passed": bool, "metadata": ...}
    errors: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)  # asset key -> the asset's returned value
    log_file: str | None = None  # with quiet=True: where the run's console output went

    def to_json(self) -> dict:
        return {"success": self.success, "run_id": self.run_id, "job": self.job_name, "assets": self.assets, "checks": self.checks,
                "errors": self.errors, "outputs": self.outputs, "log_file": self.log_file}


def use_environment(*, config_file: str | Path | None = None, home: str | Path | None = None,
                    check_imports: bool = True) -> ProjectConfig:
    """Point this process at a config and a home, validate the config, and prepare the home.
    `check_imports=False` skips importing the estimator (and so sklearn): for commands that only read."""
    if home is not None:
        os.environ["ML_PLATFORM_HOME"] = str(Path(home).resolve())
    if config_file is not None:
        os.environ["ML_PLATFORM_CONFIG"] = str(Path(config_file).resolve())
    config = load_config(settings.config_path(), check_imports=check_imports)
    storage.prepare(settings.platform_paths())
    return config


def dagster_instance() -> Any:
    import dagster as dg

    return dg.DagsterInstance.from_config(str(settings.platform_paths().dagster_home))


def load_definitions() -> Any:
    from ml_platform.definitions import defs

    return defs()


def run_lifecycle(
    *,
    config_file: str | Path | None = None,
    home: str | Path | None = None,
    batch: str | None = None,
    selection: list[str] | None = None,
    log_level: str = "WARNING",
    quiet: bool = False,
    job_name: str = LIFECYCLE_JOB,
) -> LifecycleResult:
    """Materialize the lifecycle (or `selection`, a list of asset keys; or another job's assets, e.g.
    DAILY_JOB) for one batch; never raises for a failed step: the result says which assets failed and
    why. `quiet` sends the run's console output (dbt's log, warnings) to a file under
    ML_PLATFORM_HOME/logs instead of the terminal."""
    import dagster as dg

    use_environment(config_file=config_file, home=home)
    definitions = load_definitions()
    job = definitions.resolve_job_def(job_name)
    run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if batch:
        run_config["ops"] = {"raw_batch": {"config": {"batch": batch}}}
    log_file = None
    with contextlib.ExitStack() as stack:
        if quiet:
            logs = settings.platform_paths().home / "logs"
            logs.mkdir(exist_ok=True)
            log_file = logs / f"run-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.log"
            sink = stack.enter_context(open(log_file, "w"))
            stack.enter_context(contextlib.redirect_stdout(sink))
            stack.enter_context(contextlib.redirect_stderr(sink))
        instance = stack.enter_context(dagster_instance())
        result = job.execute_in_process(
            run_config=run_config,
            instance=instance,
            raise_on_error=False,
            asset_selection=[dg.AssetKey.from_user_string(k) for k in selection] if selection else None,
        )
    summary = _summarize(result, job)
    summary.log_file = str(log_file) if log_file else None
    return summary


def _summarize(result: Any, job: Any) -> LifecycleResult:
    import dagster as dg

    summary = LifecycleResult(success=result.success, run_id=result.run_id, job_name=job.name)
    graph = job.asset_layer.asset_graph
    planned = {key.to_user_string() for key in graph.get_all_asset_keys()
               if graph.get(key).is_materializable}
    materialized: set[str] = set()
    failed_steps: dict[str, str] = {}
    for event in result.all_events:
        kind = event.event_type
        if kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialized.add(event.asset_key.to_user_string())
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.event_specific_data
            summary.checks[f"{data.asset_key.to_user_string()}:{data.check_name}"] = {
                "passed": data.passed,
                "metadata": {k: _plain(v) for k, v in data.metadata.items()},
            }
        elif kind == dg.DagsterEventType.STEP_FAILURE:
            error = event.event_specific_data.error
            message = _root_message(error)
            failed_steps[event.step_key] = message
            summary.errors.append(f"{event.step_key}: {message}")
    for key in sorted(planned):
        if key in materialized:
            summary.assets[key] = "materialized"
        else:
            summary.assets[key] = "skipped"
    for step in failed_steps:
        for key in _keys_of_step(job, step):
            summary.assets[key] = "failed"
    for key in materialized:
        node = key.split("/")[-1]
        try:
            summary.outputs[key] = result.output_for_node(node)
        except Exception:  # multi-asset nodes (dbt) have no single output; their tables are in the warehouse
            pass
    return summary


def _keys_of_step(job: Any, step_key: str) -> list[str]:
    for assets_def in job.asset_layer.asset_graph.assets_defs:
        if assets_def.is_executable and assets_def.node_def.name == step_key:
            return [k.to_user_string() for k in assets_def.keys]
    return []


def _root_message(error: Any) -> str:
    """The innermost error's message: the one that says what is actually wrong."""
    while error.cause is not None and "user code" in error.message.lower():
        error = error.cause
    while error.cause is not None:
        error = error.cause
    return error.message.strip() or error.cls_name


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def tick_sensor(sensor_name: str) -> list[Any]:
    """One tick of a sensor, and its requested runs executed here, as the Dagster daemon would under
    `make ui`: same sensor, same run keys, so a request is carried out once whoever runs it.
    Returns the executed runs' results."""
    import dagster as dg

    definitions = load_definitions()
    sensor = definitions.resolve_sensor_def(sensor_name)
    results = []
    with dagster_instance() as instance:
        with dg.build_sensor_context(instance=instance, definitions=definitions, resources=definitions.resources,
                                     sensor_name=sensor_name) as context:
            tick = sensor.evaluate_tick(context)
        for request in tick.run_requests or []:
            if instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": request.run_key}), limit=1):
                continue
            job = definitions.resolve_job_def(request.job_name or sensor.job_name)
            quiet_logs = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
            results.append(job.execute_in_process(
                run_config={**(request.run_config or {}), **quiet_logs}, instance=instance, raise_on_error=False,
                tags={**request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": sensor_name},
            ))
    return results


def process_approvals() -> list[dict]:
    """Apply every new sign-off now (the approval sensor's tick); one outcome per sign-off."""
    import dagster as dg

    outcomes = []
    for result in tick_sensor("approval_sensor"):
        if result.success:
            outcome = result.output_for_node("apply_approval")
        else:
            config = result.dagster_run.run_config["ops"]["apply_approval"]["config"]
            outcome = {"version": config["version"], "promoted": False, "reason": "; ".join(
                _root_message(e.event_specific_data.error) for e in result.all_events
                if e.event_type == dg.DagsterEventType.STEP_FAILURE)}
        outcomes.append({**outcome, "run_id": result.run_id})
    return outcomes
