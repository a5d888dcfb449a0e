"""The jobs that run the lifecycle, and the daily schedule. Their executor is the project's (definitions.py,
from ML_PLATFORM_EXECUTOR): in one process by default, or a process per step, or on Celery workers."""

import warnings

import dagster as dg

from ml_platform import keys, settings
from ml_platform.config import load_config

TRAINING_ASSETS = ("training_data", "trained_model", "model_evaluation", "champion_model")

# A step that fails on a service that is briefly away (MLflow's tracking server, PostgreSQL restarting) runs again
# after 1.5 s, 3 s and 6 s (± jitter) before the run fails. Bad input is not retried: those steps raise
# dg.Failure(allow_retries=False) with the error that says what to fix.
# Runs that train carry this tag: the daemon's run queue starts one of them at a time (dagster.yaml, storage.py).
TRAINS_TAG = {"ml_platform/trains": "true"}

TRANSIENT_FAILURE_RETRY = dg.RetryPolicy(max_retries=3, delay=1.5, backoff=dg.Backoff.EXPONENTIAL,
                                         jitter=dg.Jitter.PLUS_MINUS)

# Both jobs observe the sources first (defs/sources.py), in steps of their own before raw_batch, late_labels, ...:
# so a run launched from the UI, the schedule or a sensor records which batch, label files and champion it
# processed. Without that, its materializations named the versions last observed, and the next `ml-platform run`
# (which observes, then recomputes what is stale) redid the whole lifecycle on data just processed.
with warnings.catch_warnings():  # a beta parameter in Dagster 1.13: a warning on every command would help nobody
    warnings.simplefilter("ignore", dg.BetaWarning)
    EVERY_ASSET = dg.AssetSelection.all(include_sources=True)

lifecycle_job = dg.define_asset_job(
    "lifecycle",
    selection=EVERY_ASSET,  # the approval job (registry/approvals.py) has no assets
    op_retry_policy=TRANSIENT_FAILURE_RETRY,
    tags=TRAINS_TAG,
    description="ingest → validate → features → train → evaluate → register → gate → score → monitor; "
    "online features are published once the features are built",
)

daily_job = dg.define_asset_job(
    "daily",
    # Production's day: new data is validated, featurized, scored and monitored; training happens only when
    # monitoring asks for it (the drift and performance sensors) or a person runs the lifecycle.
    selection=EVERY_ASSET - dg.AssetSelection.assets(*(keys.key(name) for name in TRAINING_ASSETS)),
    op_retry_policy=TRANSIENT_FAILURE_RETRY,
    description="ingest → validate → features → score → monitor (drift, prediction drift, late labels, live "
    "performance, cost), with the champion as it is; no training",
)


@dg.definitions
def jobs() -> dg.Definitions:
    automation = load_config(settings.config_path(), check_imports=False).automation
    daily = dg.ScheduleDefinition(
        name="daily_schedule", job=daily_job, cron_schedule=automation.daily_schedule,
        execution_timezone=automation.timezone, default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"The daily job at '{automation.daily_schedule}' ({automation.timezone}): automation.daily_schedule",
    )
    return dg.Definitions(jobs=[lifecycle_job, daily_job], schedules=[daily])
