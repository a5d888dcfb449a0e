"""Failed runs to the team channel: the job, each failed step with its error, and the run's page.

Every job of the code location is watched (lifecycle, daily, retraining, freshness, the approval job)
when the daemon launched the run (a schedule, a sensor, the UI's launchpad). A run made in-process by
`ml-platform run` has no code location origin, so Dagster does not hand it to this sensor: its failure
is printed to whoever ran it.

A run stopped only by blocking checks that alert on their own (the validation contract, which posts
the quarantined batch with its evidence) is not alerted twice: those checks carry ALERTS_ON_FAILURE
in their metadata. Anything else, a crash of those checks included, is alerted.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from ml_platform.lib.alerting import ALERTS_ON_FAILURE, root_error_message
from ml_platform.resources.alerts import Alerts, dagster_run_url

_CHECK_FAILED = "DagsterAssetCheckFailedError"  # a blocking check decided; the step itself did not crash


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
    description="Alerts the team channel when a run fails: job, failed steps and their errors, the run's page.",
)
def run_failure_alert(context: dg.RunFailureSensorContext, alerts: Alerts):
    run = context.dagster_run
    failures = {event.step_key: event for event in context.get_step_failure_events()}
    steps = {key: _step_facts(context.repository_def, key) for key in failures}
    errors = {key: _error(event) for key, event in failures.items()}
    if failures and all(errors[key][0] == _CHECK_FAILED and steps[key]["alerts_itself"] for key in failures):
        return dg.SkipReason(f"run {run.run_id} stopped at blocking checks that alerted on their own "
                             f"({', '.join(failures)})")
    stages = sorted({stage for facts in steps.values() for stage in facts["stages"]})
    where = ", ".join(failures) or "before any step ran"
    details: dict[str, Any] = {
        "job": run.job_name,
        "failed steps": [f"{key} ({', '.join(steps[key]['stages']) or 'no asset'}): {errors[key][1]}"
                         for key in failures] or [context.failure_event.message or "no step failed"],
        "run": f"{run.run_id} ({_trigger(run.tags)})",
    }
    if stages:  # also picks the runbook (ml_platform.lib.alerting.runbook_for)
        details["stages"] = stages
    alerts.send("run_failure", f"{run.job_name} run failed at {where}", details, severity="critical",
                links={"dagster_run": dagster_run_url(run.run_id)})
    return dg.SkipReason(f"alerted: run {run.run_id} of {run.job_name} failed at {where}")


def _error(event: dg.DagsterEvent) -> tuple[str, str]:
    """(class name, innermost message) of a step failure."""
    error = getattr(event.event_specific_data, "error", None)
    if error is None:
        return "", event.message or "no error recorded"
    return error.cls_name or "", root_error_message(error)


def _step_facts(repository_def: Any, step_key: str) -> dict:
    """The stages (asset groups) a step materializes or checks, and whether its checks alert on their own.
    Unknown without the repository (a bare op, or a context built by hand): no stages, not self-alerting."""
    facts: dict[str, Any] = {"stages": [], "alerts_itself": False}
    if repository_def is None:
        return facts
    graph = repository_def.asset_graph
    for assets_def in graph.assets_defs:
        if not assets_def.is_executable or assets_def.node_def.name != step_key:
            continue
        checked = [spec.asset_key for spec in assets_def.check_specs]
        keys = [*assets_def.keys, *checked]
        facts["stages"] = sorted({graph.get(key).group_name for key in keys if graph.has(key)})
        facts["alerts_itself"] = bool(checked) and not assets_def.keys and all(
            ALERTS_ON_FAILURE in spec.metadata for spec in assets_def.check_specs)
    return facts


def _trigger(tags: dict) -> str:
    if "ml_platform/trigger" in tags:
        return f"automatic retraining ({tags['ml_platform/trigger']} trigger)"
    if "dagster/schedule_name" in tags:
        return f"schedule {tags['dagster/schedule_name']}"
    if "dagster/sensor_name" in tags:
        return f"sensor {tags['dagster/sensor_name']}"
    return "started by hand (UI or `ml-platform run`)"


@dg.definitions
def sensors() -> dg.Definitions:
    return dg.Definitions(sensors=[run_failure_alert])
