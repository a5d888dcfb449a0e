"""Running the lifecycle job on the platform's own Dagster instance, and reading back what happened.

Used by the CLI (`ml-platform run`, `ml-platform demo`), the tests and the benchmark, so that all of
them run exactly what `make ui` shows: runs land in the same Dagster storage under ML_PLATFORM_HOME.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ml_platform import keys, settings, storage
from ml_platform.config import ProjectConfig, load_config, resolve_estimator
from ml_platform.warm_dbt import warm_dbt

LIFECYCLE_JOB = "lifecycle"
DAILY_JOB = "daily"  # the lifecycle without training: what the daily schedule runs
PROGRESS_TAG = "ml_platform/invocation"  # names the run a progress display follows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunProgress:
    """Where a run is: what a progress bar shows."""
    run_id: str
    job_name: str
    done: int                 # steps finished: succeeded, failed or skipped
    total: int                # steps the run executes
    current: str | None = None  # the step started last and not finished yet
    failed: int = 0
    finished: bool = False    # the last report: the run returned

@dataclass
class LifecycleResult:
    success: bool
    run_id: str
    job_name: str = LIFECYCLE_JOB
    assets: dict[str, str] = field(default_factory=dict)   # asset key -> materialized | skipped | failed | unchanged
    unchanged: dict[str, dict] = field(default_factory=dict)  # asset key -> its last materialization (a cache hit)
    checks: dict[str, dict] = field(default_factory=dict)  # "asset:check" -> {"passed": bool, "metadata": ...}
    errors: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)  # asset key -> the asset's returned value
    log_file: str | None = None  # with quiet=True: where the run's console output went

    def to_json(self) -> dict:
        return {"success": self.success, "run_id": self.run_id, "job": self.job_name, "assets": self.assets,
                "unchanged": self.unchanged, "checks": self.checks, "errors": self.errors, "outputs": self.outputs,
                "log_file": self.log_file}


def use_environment(*, config_file: str | Path | None = None, home: str | Path | None = None,
                    check_imports: bool = True) -> ProjectConfig:
    """Point this process at a config and a home, validate the config, and prepare the home.
    `check_imports=False` skips importing the estimator (and so sklearn): for commands that only read."""
    settings.check_environment()
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
    incremental: bool = True,
    progress: Callable[[RunProgress], None] | None = None,
) -> LifecycleResult:
    """Bring the lifecycle (or another job's assets, e.g. DAILY_JOB) up to date for one batch, like a build
    system: the sources are observed, and only what is stale or missing is recomputed (`incremental=False`
    recomputes everything; `selection`, a list of asset keys, runs exactly those). Never raises for a failed
    step: the result says which assets failed and why, and which were unchanged. `quiet` sends the run's
    console output (dbt's log, warnings) to a file under ML_PLATFORM_HOME/logs instead of the terminal.
    `progress` is called from another thread with the run's RunProgress as its steps start and finish."""

    # The estimator (and so sklearn, ~1 s) is imported only if this run trains: an unchanged rerun never does.
    config = use_environment(config_file=config_file, home=home, check_imports=False)
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
        fail_abandoned_runs(instance)
        if selection:
            chosen = {keys.key(k) for k in selection}
        elif incremental:
            observe_sources(instance, config, batch=batch)
            chosen = plan_incremental_run(instance, definitions, job)
            if not chosen:
                return _unchanged_summary(instance, job, log_file)
        else:
            chosen = None
        if _builds_features(definitions, job, chosen) and settings.executor() == "in_process":
            # dbt starts importing now, while ingestion and the contract checks run (ml_platform/warm_dbt.py).
            stack.enter_context(warm_dbt(settings.dbt_executable(), storage.dbt_environment()["ML_PLATFORM_DBT_TARGET"]))
        if chosen is None or keys.key("trained_model") in chosen:
            resolve_estimator(config)  # a ConfigError naming the field, before anything runs
        token = uuid.uuid4().hex
        with watch_progress(instance, token, progress):
            summary = _execute(definitions, job, instance, run_config, chosen,
                               extra_tags={PROGRESS_TAG: token} if progress else {})
    summary.log_file = str(log_file) if log_file else None
    return summary


FEATURE_STEP = "feature_models"  # the dbt assets' step (defs/features/assets.py)


def _builds_features(definitions: Any, job: Any, chosen: set | None) -> bool:
    """Whether this run of `job` (all of it, or the `chosen` assets) runs the dbt build."""
    if not job.graph.has_node_named(FEATURE_STEP):
        return False
    if chosen is None:
        return True
    return any(definitions.resolve_assets_def(k).op.name == FEATURE_STEP for k in chosen)


def _execute(definitions: Any, job: Any, instance: Any, run_config: dict, chosen: set | None,
             extra_tags: dict[str, str] | None = None) -> LifecycleResult:
    """Run the job (or the `chosen` assets of it) with the project's executor: in this process, or with its
    steps in other processes or on Celery workers (execute_job, from the code location's module)."""
    import dagster as dg

    tags = {**launcher_tags(), **(extra_tags or {})}
    selection = sorted(chosen, key=lambda k: k.to_user_string()) if chosen is not None else None
    if settings.executor() == "in_process":
        result = job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False,
                                        asset_selection=selection, tags=tags)
        return _summarize(result, job, chosen, instance)
    from dagster._core.definitions.reconstruct import (
        ReconstructableRepository,  # no public form for a code location module
    )

    from ml_platform.lib.starter import model_location_file

    # A step on another process or machine (a Celery worker) rebuilds the job from this pointer. From the project's
    # module it would read that worker's own ML_PLATFORM_CONFIG (another model's) and find none of this model's
    # assets: a model with a code location of its own is rebuilt from it, which pins its config.
    location = model_location_file(settings.config_path())
    if location is not None:
        repository = ReconstructableRepository.for_file(str(location), "defs",
                                                        working_directory=str(settings.PROJECT_ROOT))
    else:
        repository = ReconstructableRepository.for_module("ml_platform.definitions", "defs",
                                                          working_directory=str(settings.PROJECT_ROOT))
    reconstructable = repository.get_reconstructable_job(job.name)
    with dg.execute_job(reconstructable, instance=instance, run_config=run_config, tags=tags,
                        asset_selection=selection, raise_on_error=False) as result:
        return _summarize(result, job, chosen, instance)


@contextlib.contextmanager
def watch_progress(instance: Any, token: str, report: Callable[[RunProgress], None] | None,
                   interval: float = 0.5) -> Iterator[None]:
    """While the block runs, report the progress of the run tagged PROGRESS_TAG=token, read from the instance's
    event log by a thread (so it works whichever executor runs the steps); a last report once the block ends.
    A progress display must never break a run: a failed read is logged and retried at the next poll."""
    if report is None:
        yield
        return
    stop = threading.Event()
    thread = threading.Thread(target=_poll_progress, args=(instance, token, report, stop, interval),
                              name="ml-platform-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _poll_progress(instance: Any, token: str, report: Callable[[RunProgress], None], stop: threading.Event,
                   interval: float) -> None:
    import dagster as dg

    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE,
             dg.DagsterEventType.STEP_SKIPPED}
    run, total, cursor, running, finished, failed = None, 0, None, [], set(), set()
    while True:
        last = stop.wait(interval)  # once stopped, one more read: the final state is reported too
        try:
            if run is None:
                found = instance.get_runs(filters=dg.RunsFilter(tags={PROGRESS_TAG: token}), limit=1)
                if found:
                    run = found[0]
                    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
                    total = len(plan.step_keys_to_execute)
            if run is not None:
                records = instance.get_records_for_run(run.run_id, cursor=cursor, of_type=kinds)
                cursor = records.cursor
                for record in records.records:
                    entry = record.event_log_entry
                    if entry.dagster_event_type == dg.DagsterEventType.STEP_START:
                        running.append(entry.step_key)
                    else:
                        finished.add(entry.step_key)
                        if entry.dagster_event_type == dg.DagsterEventType.STEP_FAILURE:
                            failed.add(entry.step_key)
                current = next((k for k in reversed(running) if k not in finished), None)
                report(RunProgress(run.run_id, run.job_name, len(finished), max(total, len(finished)), current,
                                   len(failed), finished=last))
        except Exception:  # see the docstring
            log.debug("progress: reading the run's events failed; retrying", exc_info=True)
        if last:
            return


def launcher_tags() -> dict[str, str]:
    """Which process runs (or waits on) the run: lets the next run tell a run whose process died."""
    return {"ml_platform/host": socket.gethostname(), "ml_platform/pid": str(os.getpid())}


def fail_abandoned_runs(instance: Any) -> list[str]:
    """Runs this machine started from the CLI whose process is gone (killed mid-run) are marked failed (and any
    concurrency slots they held freed), so that they do not look alive in the UI.
    (Runs the daemon launched are watched by Dagster's own run monitoring.)"""
    import dagster as dg

    failed = []
    host = socket.gethostname()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
                                                      tags={"ml_platform/host": host})):
        pid = int(run.tags.get("ml_platform/pid", "0") or 0)
        if pid and not _alive(pid):
            instance.report_run_failed(run, f"the process that ran it (pid {pid} on {host}) is gone: killed or "
                                            "crashed mid-run; marked failed by the next ml-platform run")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            failed.append(run.run_id)
    if failed:
        from ml_platform.resources import ModelRegistry

        ModelRegistry().fail_runs_of(failed)
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (a killed child not yet reaped by its parent) is gone too.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def observe_sources(instance: Any, config: ProjectConfig, *, batch: str | None = None) -> dict[str, str]:
    """Record each observable source's current version (defs/sources.py) where it changed; returns them all."""
    from ml_platform.defs.sources import OBSERVERS, record_observation
    from ml_platform.resources import Warehouse

    paths, warehouse = settings.platform_paths(), Warehouse()
    return {name: record_observation(instance, name, config, paths, warehouse, batch=batch) for name in OBSERVERS}


def plan_incremental_run(instance: Any, definitions: Any, job: Any) -> set:
    """The job's assets to recompute: stale (new code version, or an input's data version moved) or missing,
    and everything downstream of them. An asset missing because its last run decided there was nothing to
    produce (no champion yet, too little traffic), with the same inputs since, is up to date. raw_batch is
    recomputed while its contract checks have not passed: its stored batch was quarantined."""
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
    from dagster._time import get_current_datetime

    graph = definitions.resolve_asset_graph()
    view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                          instance=instance, asset_graph=graph)
    resolver = CachingStaleStatusResolver(instance, graph, view)
    # What the job materializes: its asset graph also holds the parents of its assets (the gate, for the daily
    # job's scoring), which it only reads. Planning those too made a `daily` run re-run a stale gate.
    in_job = {k for k in job.asset_layer.executable_asset_keys if graph.get(k).is_materializable}
    chosen: set = set()
    for key in graph.toposorted_asset_keys:
        if key not in in_job:
            continue
        node = graph.get(key)
        status = resolver.get_status(key)
        if (status == StaleStatus.STALE or any(p in chosen for p in node.parent_keys)
                or (status == StaleStatus.MISSING and not _decided_nothing_to_produce(instance, key, node.parent_keys))):
            chosen.add(key)
    raw_batch = keys.key("raw_batch")
    if raw_batch in in_job and raw_batch not in chosen and not _checks_passed(instance, graph, raw_batch):
        chosen |= {raw_batch} | {k for k in in_job if raw_batch in graph.get_ancestor_asset_keys(k)}
    return chosen


def _decided_nothing_to_produce(instance: Any, key: Any, parents: Any) -> bool:
    """The last run that planned `key` succeeded without producing it, and no input moved after that run."""
    import dagster as dg

    planned = instance.get_latest_planned_materialization_info(key)
    if planned is None:
        return False
    ended = instance.get_records_for_run(planned.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS, limit=1).records
    if not ended:
        return False
    for parent in parents:
        latest = instance.get_latest_data_version_record(parent)
        if latest is not None and latest.storage_id > ended[0].storage_id:
            return False
    return True


def _checks_passed(instance: Any, graph: Any, key: Any) -> bool:
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    check_keys = [c for c in graph.asset_check_keys if c.asset_key == key and graph.get_check_spec(c).blocking]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    return all(latest.get(c) is not None and latest[c].status == AssetCheckExecutionRecordStatus.SUCCEEDED
               for c in check_keys)


def _unchanged_summary(instance: Any, job: Any, log_file: Path | None) -> LifecycleResult:
    """Nothing to recompute: every asset is reported unchanged, with what its last materialization recorded."""
    summary = LifecycleResult(success=True, run_id="", job_name=job.name,
                              log_file=str(log_file) if log_file else None)
    graph = job.asset_layer.asset_graph
    for key in sorted(graph.get_all_asset_keys(), key=keys.name_of):
        if graph.get(key).is_materializable:
            summary.assets[keys.name_of(key)] = "unchanged"
            summary.unchanged[keys.name_of(key)] = _last_materialization(instance, key)
    return summary


def _last_materialization(instance: Any, key: Any) -> dict:
    event = instance.get_latest_materialization_event(key)
    if event is None:
        return {"materialized": False}
    metadata = event.asset_materialization.metadata
    return {"run_id": event.run_id, "at": datetime.fromtimestamp(event.timestamp, UTC).isoformat(timespec="seconds"),
            **{k: _plain(metadata[k]) for k in _CACHE_METADATA if k in metadata}}


# What the summary repeats of an unchanged asset's last materialization.
_CACHE_METADATA = ("model_version", "snapshot_sha256", "rows", "decision", "champion_version", "batch_id")


def _summarize(result: Any, job: Any, chosen: set | None, instance: Any) -> LifecycleResult:
    import dagster as dg

    summary = LifecycleResult(success=result.success, run_id=result.run_id, job_name=job.name)
    graph = job.asset_layer.asset_graph
    planned = {keys.name_of(key) for key in graph.get_all_asset_keys()
               if graph.get(key).is_materializable and (chosen is None or key in chosen)}
    materialized: set[str] = set()
    failed_steps: dict[str, str] = {}
    started, finished = set(), set()
    for event in result.all_events:
        kind = event.event_type
        if kind == dg.DagsterEventType.STEP_START:
            started.add(event.step_key)
        elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_UP_FOR_RETRY):
            finished.add(event.step_key)
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialized.add(keys.name_of(event.asset_key))
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.event_specific_data
            summary.checks[f"{keys.name_of(data.asset_key)}:{data.check_name}"] = {
                "passed": data.passed,
                "metadata": {k: _plain(v) for k, v in data.metadata.items()},
            }
        elif kind == dg.DagsterEventType.STEP_FAILURE:
            error = event.event_specific_data.error
            message = _root_message(error)
            failed_steps[event.step_key] = message
            summary.errors.append(f"{event.step_key}: {message}")
        elif kind == dg.DagsterEventType.RUN_FAILURE:
            error = getattr(event.event_specific_data, "error", None)
            message = _root_message(error) if error else event.message or "the run failed"
            if not any(message in known for known in summary.errors):  # a step's failure, told once
                summary.errors.append(message)
    if not result.success:
        # A step whose process died (a killed Celery worker) ends with neither success nor failure.
        for step in started - finished - set(failed_steps):
            failed_steps[step] = "its process died before the step finished"
            summary.errors.insert(0, f"{step}: its process died before the step finished")
    for key in sorted(graph.get_all_asset_keys(), key=keys.name_of):
        name = keys.name_of(key)
        if not graph.get(key).is_materializable:
            continue
        if name not in planned:
            summary.assets[name] = "unchanged"
            summary.unchanged[name] = _last_materialization(instance, key)
        else:
            summary.assets[name] = "materialized" if name in materialized else "skipped"
    for step in failed_steps:
        for key in _keys_of_step(job, step):
            summary.assets[key] = "failed"
    for key in materialized:
        try:
            summary.outputs[key] = _stored_output(key)
        except FileNotFoundError:  # multi-asset nodes (dbt) have no single output; their tables are in the warehouse
            pass
    return summary


def _stored_output(name: str) -> Any:
    """An asset's returned value, as the project's IO manager stored it (defs/resources.py: a pickle per asset
    key under DAGSTER_HOME/storage), whichever process or machine ran the step."""
    import pickle

    path = settings.platform_paths().dagster_home.joinpath("storage", *keys.key(name).path)
    with open(path, "rb") as handle:
        return pickle.load(handle)


def _keys_of_step(job: Any, step_key: str) -> list[str]:
    for assets_def in job.asset_layer.asset_graph.assets_defs:
        if assets_def.is_executable and assets_def.node_def.name == step_key:
            return [keys.name_of(k) for k in assets_def.keys]
    return []


def _root_message(error: Any) -> str:
    """The innermost error's message: the one that says what is actually wrong."""
    while error.cause is not None and "user code" in error.message.lower():
        error = error.cause
    while error.cause is not None:
        error = error.cause
    message = error.message.strip() or error.cls_name
    # A dg.Failure is our own message for bad input, a failed blocking check is named in the checks above it:
    # Dagster's class path says nothing to the reader.
    return re.sub(r"^dagster\._core\.[a-z_.]+\.(Failure|DagsterAssetCheckFailedError): ", "", message).replace(
        " severity:\n", " severity: ")


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def tick_sensor(sensor_name: str, progress: Callable[[RunProgress], None] | None = None) -> list[Any]:
    """One tick of a sensor, and its requested runs executed here, as the Dagster daemon would under
    `make ui`: same sensor, same run keys, so a request is carried out once whoever runs it.
    Returns the executed runs' results. `progress` as for run_lifecycle."""
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
            token = uuid.uuid4().hex
            with watch_progress(instance, token, progress):
                results.append(job.execute_in_process(
                    run_config={**(request.run_config or {}), **quiet_logs}, instance=instance, raise_on_error=False,
                    tags={**request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": sensor_name,
                          **launcher_tags(), **({PROGRESS_TAG: token} if progress else {})},
                ))
    return results


def finished_sign_off_run(model: str, version: str, timeout: float = 300) -> str | None:
    """The newest run of the approval job for `version`, once it has finished (its id; None if there is none).
    `ml-platform approve` skips a sign-off whose run the Dagster daemon's approval sensor started first (under
    `make ui`, within its 30 s): it waits for that run instead, and reports what it did."""
    import dagster as dg

    with dagster_instance() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(
            job_name="approval_job", tags={"ml_platform/model": model, "ml_platform/version": str(version)}), limit=1)
        if not runs:
            return None
        run, deadline = runs[0], time.monotonic() + timeout
        while not run.is_finished and time.monotonic() < deadline:
            time.sleep(0.5)
            run = instance.get_run_by_id(run.run_id)
        return run.run_id


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
