"""The performance sensor on a real (ephemeral) Dagster instance: one retraining per sustained SLO breach
episode across repeated ticks and re-materializations, none without a sustained breach, a new run for a new
episode, and the daily cap shared with the drift sensor."""

import dagster as dg

from ml_platform.defs.monitoring.performance import performance_sensor
from ml_platform.defs.monitoring.sensors import drift_sensor, retraining_job
from ml_platform.resources import ProjectResource
from ml_platform_tests.conftest import write_config
from ml_platform_tests.unit.test_drift_sensor import features_built, report


def live_performance(instance: dg.DagsterInstance, *, streak: list[tuple[str, float]], consecutive: int = 2) -> None:
    """A live_performance materialization whose current streak below the floor is `streak` (day, rolling metric)."""
    sustained = len(streak) >= consecutive
    instance.report_runless_asset_event(dg.AssetMaterialization("live_performance", metadata={
        "metric": "roc_auc", "floor": 0.7, "consecutive_days": consecutive, "streak": len(streak),
        "sustained_breach": sustained, "breach_started": streak[0][0] if sustained else "none",
        "latest_day": streak[-1][0] if streak else "2026-01-01",
        "rolling_metric": streak[-1][1] if streak else 0.82,
        "streak_days": dg.MetadataValue.json([{"day": d, "rolling_metric": m, "window_rows": 3000} for d, m in streak]),
    }))


def tick(instance: dg.DagsterInstance, definitions: dg.Definitions, cursor: str | None):
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=definitions,
                                 resources=definitions.resources) as context:
        result = performance_sensor.evaluate_tick(context)
    return result.run_requests or [], result.cursor, result.skip_message


def launched(instance: dg.DagsterInstance, request: dg.RunRequest) -> None:
    """What the daemon does with a request: a run carrying its tags."""
    instance.create_run_for_job(dg.GraphDefinition("retraining_stub").to_job(),
                                tags={**request.tags, "dagster/run_key": request.run_key})


def sensor_definitions(config_file) -> dg.Definitions:
    return dg.Definitions(
        assets=[dg.AssetSpec(k) for k in ("live_performance", "drift_report", "training_data", "trained_model",
                                           "model_evaluation", "champion_model")],
        jobs=[retraining_job], sensors=[performance_sensor, drift_sensor],
        resources={"project": ProjectResource(config_file=str(config_file))},
    )


def test_one_retraining_per_breach_episode_across_repeated_ticks(tmp_path):
    definitions = sensor_definitions(write_config(tmp_path))
    with dg.instance_for_test() as instance:
        live_performance(instance, streak=[])
        requests, cursor, skipped = tick(instance, definitions, None)
        assert requests == [] and "not in a sustained breach" in skipped
        live_performance(instance, streak=[("2026-01-02", 0.61)])  # one bad day: no breach yet
        requests, cursor, _ = tick(instance, definitions, cursor)
        assert requests == []

        live_performance(instance, streak=[("2026-01-02", 0.61), ("2026-01-03", 0.58)])
        [request], cursor, _ = tick(instance, definitions, cursor)
        assert request.run_key == "performance-churn-2026-01-02"
        assert request.tags["ml_platform/trigger"] == "performance"
        assert request.tags["ml_platform/breach_started"] == "2026-01-02"
        assert request.tags["ml_platform/breach_days"] == "2026-01-02=0.61, 2026-01-03=0.58"
        assert (request.tags["ml_platform/floor"], request.tags["ml_platform/rolling_metric"]) == ("0.7", "0.58")

        for _ in range(3):  # re-ticks: the same materialization never asks again
            again, cursor, _ = tick(instance, definitions, cursor)
            assert again == []
        launched(instance, request)

        # The next day the breach goes on (a new materialization, the same episode): no second run.
        live_performance(instance, streak=[("2026-01-02", 0.61), ("2026-01-03", 0.58), ("2026-01-04", 0.55)])
        again, cursor, skipped = tick(instance, definitions, cursor)
        assert again == [] and "already started retraining run" in skipped
        # Late labels for an earlier day move the start earlier: still the same episode.
        live_performance(instance, streak=[("2026-01-01", 0.66), ("2026-01-02", 0.61), ("2026-01-03", 0.58),
                                           ("2026-01-04", 0.55)])
        again, cursor, _ = tick(instance, definitions, cursor)
        assert again == []

        # A judged good day ended it; a new sustained breach later (on later data) is a new episode with a new run.
        live_performance(instance, streak=[])
        tick(instance, definitions, cursor)
        features_built(instance, "features of later days")
        live_performance(instance, streak=[("2026-01-08", 0.6), ("2026-01-09", 0.59)])
        [newer], cursor, _ = tick(instance, definitions, cursor)
        assert newer.run_key == "performance-churn-2026-01-08" != request.run_key


def test_performance_retrainings_share_the_daily_cap_with_drift(tmp_path):
    definitions = sensor_definitions(write_config(tmp_path, {"automation": {"max_retrainings_per_day": 1}}))
    with dg.instance_for_test() as instance:
        # A drift retraining ran today: the cap (1) counts it.
        instance.create_run_for_job(dg.GraphDefinition("retraining_stub").to_job(),
                                    tags={"ml_platform/trigger": "drift"})
        live_performance(instance, streak=[("2026-01-02", 0.61), ("2026-01-03", 0.58)])
        requests, _, skipped = tick(instance, definitions, None)
        assert requests == []
        assert "sustained SLO breach since 2026-01-02" in skipped
        assert "cap automation.max_retrainings_per_day = 1" in skipped


def test_a_drift_trigger_and_an_slo_trigger_on_the_same_features_start_one_retraining(tmp_path):
    """Two sensors, one state of the data: run keys dedupe only within a sensor, the features' data version
    dedupes across them (and a double tick of either asks nothing new)."""
    definitions = sensor_definitions(write_config(tmp_path))
    with dg.instance_for_test() as instance:
        features_built(instance, "features of day 5")
        report(instance, drifted=True)
        with dg.build_sensor_context(instance=instance, definitions=definitions, resources=definitions.resources) as context:
            [drift_request] = drift_sensor.evaluate_tick(context).run_requests
        launched(instance, drift_request)

        live_performance(instance, streak=[("2026-01-04", 0.61), ("2026-01-05", 0.58)])
        requests, cursor, skipped = tick(instance, definitions, None)
        assert requests == []
        assert "retraining run" in skipped and "(drift trigger, not_started) already trains on these features" in skipped
        again, _, _ = tick(instance, definitions, cursor)
        assert again == []

        # New data and the breach goes on (the drift retraining did not fix it): now the SLO trigger retrains.
        features_built(instance, "features of day 6")
        live_performance(instance, streak=[("2026-01-04", 0.61), ("2026-01-05", 0.58), ("2026-01-06", 0.5)])
        [request], _, _ = tick(instance, definitions, cursor)
        assert request.tags["ml_platform/training_inputs"] == "features of day 6"
