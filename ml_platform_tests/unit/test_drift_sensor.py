"""The drift sensor on a real (ephemeral) Dagster instance: one retraining run per drifted report,
none for a clean report, and no second request for the same report on later ticks."""

import dagster as dg

from ml_platform.defs.monitoring.sensors import drift_sensor, retraining_job
from ml_platform.resources import ProjectResource
from ml_platform_tests.conftest import write_config


def report(instance: dg.DagsterInstance, drifted: bool) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(
        "drift_report", metadata={"dataset_drift": drifted, "drifted_share": 0.5 if drifted else 0.0,
                                  "drifted_features": "monthly_charges, support_calls" if drifted else "none"}))


def features_built(instance: dg.DagsterInstance, version: str) -> None:
    """The feature table rebuilt from new data: a new state for a retraining to train on."""
    from dagster._core.definitions.data_version import DATA_VERSION_TAG

    instance.report_runless_asset_event(dg.AssetMaterialization(["features", "churn_features"],
                                                                tags={DATA_VERSION_TAG: version}))


def evaluate(instance: dg.DagsterInstance, definitions: dg.Definitions, cursor: str | None):
    """One tick of the sensor: its run requests or skip message, and its cursor."""
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=definitions,
                                 resources=definitions.resources) as context:
        return drift_sensor.evaluate_tick(context)


def tick(instance: dg.DagsterInstance, definitions: dg.Definitions, cursor: str | None):
    result = evaluate(instance, definitions, cursor)
    return result.run_requests or [], result.cursor


def sensor_definitions(config_file) -> dg.Definitions:
    return dg.Definitions(
        assets=[dg.AssetSpec(k) for k in ("drift_report", "training_data", "trained_model", "model_evaluation",
                                           "champion_model")],
        jobs=[retraining_job], sensors=[drift_sensor],
        resources={"project": ProjectResource(config_file=str(config_file))},
    )


def test_one_retraining_per_drifted_report_across_repeated_ticks(tmp_path):
    definitions = sensor_definitions(write_config(tmp_path))
    with dg.instance_for_test() as instance:
        report(instance, drifted=False)
        requests, cursor = tick(instance, definitions, None)
        assert requests == []  # a clean report starts nothing

        report(instance, drifted=True)
        requests, cursor = tick(instance, definitions, cursor)
        assert len(requests) == 1
        assert requests[0].run_key.startswith("drift-report-")
        assert requests[0].tags["ml_platform/trigger"] == "drift"
        assert "monthly_charges" in requests[0].tags["ml_platform/drifted_features"]

        for _ in range(3):  # re-ticks with the cursor: the same report never asks again
            again, cursor = tick(instance, definitions, cursor)
            assert again == []

        report(instance, drifted=True)  # a new drifted report: a new, distinct request
        newer, cursor = tick(instance, definitions, cursor)
        assert len(newer) == 1 and newer[0].run_key != requests[0].run_key


def test_drift_retrainings_are_capped_per_day(tmp_path):
    definitions = sensor_definitions(write_config(tmp_path, {"automation": {"max_retrainings_per_day": 1}}))
    with dg.instance_for_test() as instance:
        report(instance, drifted=True)
        [request], cursor = tick(instance, definitions, None)
        # The daemon would launch it: record a run with the request's tags, as a launched run carries.
        instance.create_run_for_job(dg.GraphDefinition("retraining_stub").to_job(), tags=request.tags)
        features_built(instance, "the next day's features")  # new data, so not a duplicate: the cap stops it
        report(instance, drifted=True)
        result = evaluate(instance, definitions, cursor)
        assert not result.run_requests
        assert "cap automation.max_retrainings_per_day = 1" in result.skip_message


def test_no_retraining_when_a_run_already_trained_and_gated_on_the_drifted_features(tmp_path):
    """A `lifecycle` run trains on every batch: when its drift report flags the batch, it has already trained on
    it and gated the model. A retraining would be a cache hit and the same decision again (before, the tutorial's
    drift day recorded the gate's rejection of version 3 twice)."""
    from dagster._core.definitions.data_version import DATA_VERSION_TAG, get_input_data_version_tag

    definitions = sensor_definitions(write_config(tmp_path))
    with dg.instance_for_test() as instance:
        features_built(instance, "drifted batch's features")
        trained_on = {get_input_data_version_tag(dg.AssetKey(["features", "churn_features"])):
                      "drifted batch's features", DATA_VERSION_TAG: "training snapshot"}
        instance.report_runless_asset_event(dg.AssetMaterialization("training_data", tags=trained_on))
        report(instance, drifted=True)  # the run's drift report, before its gate has decided
        [request], cursor = tick(instance, definitions, None)  # trained, not gated yet (say, the gate step failed)
        instance.report_runless_asset_event(dg.AssetMaterialization(
            "champion_model", metadata={"decision": "rejected", "challenger_version": "3"}))
        report(instance, drifted=True)
        result = evaluate(instance, definitions, cursor)
        assert not result.run_requests
        assert "already trained on these features and gated the model (version 3: rejected)" in result.skip_message

        features_built(instance, "the next day's features")  # new data: a retraining has something new to learn
        report(instance, drifted=True)
        newer, _ = tick(instance, definitions, result.cursor)
        assert len(newer) == 1
