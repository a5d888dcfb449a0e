"""Drift starts a gated retraining: one run per drift report that detected dataset drift.

The retraining run trains a challenger on the current features and puts it through the promotion
gate (and, from risk tier medium up, the sign-off): never straight to champion. The run key names the
report's materialization (its run and timestamp), so a sensor re-tick, a daemon restart or a
duplicate event never starts a second run for the same report.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from ml_platform import keys
from ml_platform.defs.jobs import TRAINING_ASSETS, TRAINS_TAG, TRANSIENT_FAILURE_RETRY
from ml_platform.resources import ProjectResource

retraining_job = dg.define_asset_job(
    "retraining",
    selection=dg.AssetSelection.assets(*(keys.key(name) for name in TRAINING_ASSETS)),
    op_retry_policy=TRANSIENT_FAILURE_RETRY,
    tags=TRAINS_TAG,
    description="Train a challenger on the current features and put it through the promotion gate.",
)


AUTOMATIC_TRIGGERS = ("drift", "performance")  # the ml_platform/trigger tag of automatic retrainings


def retraining_cap_reached(instance: dg.DagsterInstance, cap: int) -> str | None:
    """Why no automatic retraining may start now, or None. The cap counts every automatic retraining
    (drift and SLO triggers together) of the last 24 h: it stops retraining storms, e.g. a broken
    upstream feed drifting every hour."""
    since = datetime.now(UTC) - timedelta(days=1)
    recent = [run for trigger in AUTOMATIC_TRIGGERS for run in instance.get_runs(
        filters=dg.RunsFilter(tags={"ml_platform/trigger": trigger}, created_after=since), limit=cap + 1)]
    if len(recent) >= cap:
        return (f"{len(recent)} automatic retrainings ran in the last 24 h "
                f"(cap automation.max_retrainings_per_day = {cap}): not retraining again")
    return None


def training_inputs_version(instance: dg.DagsterInstance, cfg) -> str:
    """The data version of the feature table a retraining would train on now."""
    from dagster._core.definitions.data_version import DATA_VERSION_TAG

    record = instance.get_latest_data_version_record(keys.key(f"features/{cfg.features.dbt_model}"))
    tags = record.asset_materialization.tags if record and record.asset_materialization else {}
    return (tags or {}).get(DATA_VERSION_TAG, "none")


def retraining_already_requested(instance: dg.DagsterInstance, cfg, inputs_version: str) -> str | None:
    """Why a retraining on these features is a duplicate, or None: one retraining per state of the features,
    whichever sensor (drift, SLO) or tick asks (run keys only dedupe within one sensor), and none when a run
    already trained and gated a model on them."""
    for run in instance.get_runs(filters=dg.RunsFilter(tags={INPUTS_TAG: inputs_version}), limit=5):
        if run.status not in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            return (f"retraining run {run.run_id} ({run.tags.get('ml_platform/trigger', '-')} trigger, "
                    f"{run.status.value.lower()}) already trains on these features")
    return already_gated_on(instance, cfg, inputs_version)


def already_gated_on(instance: dg.DagsterInstance, cfg, inputs_version: str) -> str | None:
    """The run that trained on these features and took the model through the gate, if one did. A `lifecycle` run
    trains on every batch, the drifted one included: a retraining on the same features would be a cache hit
    and the gate's decision a repeat of the one on record (the daily job does not train, so after it this is
    None)."""
    from dagster._core.definitions.data_version import get_input_data_version_tag

    training = instance.get_latest_materialization_event(keys.key("training_data"))
    gate = instance.get_latest_materialization_event(keys.key("champion_model"))
    if training is None or gate is None or gate.timestamp < training.timestamp:
        return None  # never trained, or trained and not gated yet (a failed gate step): retraining gates it
    features = keys.key(f"features/{cfg.features.dbt_model}")
    trained_on = (training.asset_materialization.tags or {}).get(get_input_data_version_tag(features))
    if trained_on != inputs_version:
        return None
    decision = getattr((gate.asset_materialization.metadata or {}).get("decision"), "value", "recorded")
    version = getattr((gate.asset_materialization.metadata or {}).get("challenger_version"), "value", "?")
    return (f"run {gate.run_id} already trained on these features and gated the model (version {version}: "
            f"{decision})")


INPUTS_TAG = "ml_platform/training_inputs"  # the feature table's data version a retraining was requested for


@dg.asset_sensor(asset_key=keys.key("drift_report"), job=retraining_job, minimum_interval_seconds=60,
                 default_status=dg.DefaultSensorStatus.RUNNING,
                 description="Requests one gated retraining per drift report that detected dataset drift.")
def drift_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry, project: ProjectResource):
    materialization = asset_event.asset_materialization
    metadata = materialization.metadata if materialization else {}
    drifted = getattr(metadata.get("dataset_drift"), "value", False)
    if not drifted:
        return dg.SkipReason(f"the drift report of run {asset_event.run_id or '-'} found no dataset drift")
    cfg = project.config()
    inputs = training_inputs_version(context.instance, cfg)
    duplicate = retraining_already_requested(context.instance, cfg, inputs)
    if duplicate:
        return dg.SkipReason(f"drift detected, but {duplicate}")
    capped = retraining_cap_reached(context.instance, cfg.automation.max_retrainings_per_day)
    if capped:
        return dg.SkipReason(f"drift detected, but {capped}")
    share = getattr(metadata.get("drifted_share"), "value", None)
    features = getattr(metadata.get("drifted_features"), "value", "")
    report = f"{asset_event.run_id or 'runless'}-{asset_event.timestamp:.6f}"
    return dg.RunRequest(
        run_key=f"drift-report-{report}",
        tags={"ml_platform/trigger": "drift", "ml_platform/drift_report": report, INPUTS_TAG: inputs,
              "ml_platform/drifted_share": str(share), "ml_platform/drifted_features": str(features)[:200]},
    )


@dg.definitions
def sensors() -> dg.Definitions:
    return dg.Definitions(jobs=[retraining_job], sensors=[drift_sensor])
