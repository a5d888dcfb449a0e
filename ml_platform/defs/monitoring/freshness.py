"""Freshness SLOs on the raw data, the feature table and the predictions (config: freshness.*).

The freshness sensor looks at the newest materialization of each every few minutes. When one is older
than its SLO it requests, once per stale state: a run of the `freshness` checks (a failing check on
each stale asset, and an alert), and a run of the daily job to bring the data up to date.
"""


from datetime import UTC, datetime
from functools import lru_cache

import dagster as dg

from ml_platform import keys, settings
from ml_platform.config import load_config
from ml_platform.defs import jobs as lifecycle_jobs  # the module, so the loader finds daily_job once
from ml_platform.lib.freshness import Freshness, breach_key, stale
from ml_platform.resources import ProjectResource
from ml_platform.resources.alerts import Alerts, dagster_run_url


@lru_cache(maxsize=4)
def _feature_table_key(dbt_model: str) -> dg.AssetKey:
    return keys.key(f"features/{dbt_model}")  # dbt_project.yml puts the feature models in schema `features`


def _watched(cfg) -> list[tuple[str, dg.AssetKey, float]]:
    f = cfg.freshness
    return [("raw_batch", keys.key("raw_batch"), f.raw_batch_max_age_hours),
            ("features", _feature_table_key(cfg.features.dbt_model), f.features_max_age_hours),
            ("predictions", keys.key("batch_predictions"), f.predictions_max_age_hours)]


def freshness_states(instance: dg.DagsterInstance, cfg) -> list[Freshness]:
    states = []
    for name, key, max_age in _watched(cfg):
        event = instance.get_latest_materialization_event(key)
        last = datetime.fromtimestamp(event.timestamp, UTC) if event else None
        states.append(Freshness(name, key.to_user_string(), max_age, last))
    return states


def _config():
    # Structural validation only: the checks are built when the definitions load, which must stay cheap.
    return load_config(settings.config_path(), check_imports=False)


def _freshness_checks() -> dg.AssetChecksDefinition:
    watched = _watched(_config())

    @dg.multi_asset_check(
        specs=[dg.AssetCheckSpec("fresh", asset=key, description=f"The newest {name} is at most "
                                 f"freshness.{name}_max_age_hours old.") for name, key, _ in watched],
        name="freshness_checks",
        can_subset=True,  # a run that recomputes only some of the three judges only those
    )
    def freshness_checks(context: dg.AssetCheckExecutionContext, project: ProjectResource, alerts: Alerts):
        cfg, now = project.config(), datetime.now(UTC)
        selected = {key.asset_key.to_user_string() for key in context.selected_asset_check_keys}
        for state in freshness_states(context.instance, cfg):
            if state.asset not in selected:
                continue
            age = state.age_hours(now)
            if not state.fresh(now):
                alerts.send(
                    "freshness_breach", f"{cfg.model.name}: {state.name} is stale ({age:.1f} h old)",
                    {"asset": state.asset, "last updated": f"{state.last_updated:%Y-%m-%d %H:%M} UTC",
                     "age": f"{age:.1f} h", "SLO": f"at most {state.max_age_hours:g} h",
                     "next": f"the freshness sensor requested a run of the `{lifecycle_jobs.daily_job.name}` job"},
                    links={"dagster_run": dagster_run_url(context.run.run_id)},
                    group_key=f"freshness_breach:{cfg.model.name}:{state.name}",
                )
            yield dg.AssetCheckResult(
                asset_key=state.asset.split("/"), check_name="fresh", passed=state.fresh(now),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"age_hours": float(age) if age is not None else float("nan"),
                          "max_age_hours": state.max_age_hours,
                          "last_updated": state.last_updated.isoformat() if state.last_updated else "never"},
            )

    return freshness_checks


# Also part of the lifecycle and daily jobs, where they run after the data they judge (and so pass).
freshness_checks = _freshness_checks()

freshness_check_job = dg.define_asset_job(
    "freshness", selection=dg.AssetSelection.checks(freshness_checks), executor_def=dg.in_process_executor,
    description="Evaluate the freshness SLOs: a failing check (and an alert) per stale asset.")


@dg.sensor(jobs=[freshness_check_job, lifecycle_jobs.daily_job], minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Every 5 min: when the raw data, the feature table or the predictions are older than their "
           "freshness SLO, run the freshness checks (a failing check and an alert) and the daily job, once per "
           "stale state.")
def freshness_sensor(context: dg.SensorEvaluationContext, project: ProjectResource):
    cfg, now = project.config(), datetime.now(UTC)
    states = freshness_states(context.instance, cfg)
    late = stale(states, now)
    if not late:
        return dg.SkipReason("; ".join(s.describe(now) for s in states))
    key = breach_key(late)
    evidence = {"ml_platform/trigger": "freshness", "ml_platform/stale": "; ".join(s.describe(now) for s in late)[:200]}
    return [dg.RunRequest(run_key=f"freshness-check-{key}", job_name="freshness", tags=evidence),
            dg.RunRequest(run_key=f"freshness-refresh-{key}", job_name=lifecycle_jobs.daily_job.name, tags=evidence)]


@dg.definitions
def freshness() -> dg.Definitions:
    return dg.Definitions(asset_checks=[freshness_checks], jobs=[freshness_check_job], sensors=[freshness_sensor])
