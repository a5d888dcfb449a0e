"""Freshness SLOs: the pure rule, and the freshness sensor on a real (temporary) Dagster instance."""

import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from ml_platform.defs import jobs
from ml_platform.defs.monitoring.freshness import freshness_check_job, freshness_sensor
from ml_platform.lib.freshness import Freshness, breach_key, stale
from ml_platform.resources import ProjectResource
from ml_platform_tests.conftest import write_config

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_an_asset_is_stale_only_past_its_max_age_and_never_materialized_is_not_judged():
    fresh = Freshness("raw_batch", "raw_batch", 26, NOW - timedelta(hours=25.9))
    late = Freshness("predictions", "batch_predictions", 26, NOW - timedelta(hours=26.1))
    never = Freshness("features", "features/churn_features", 26, None)
    assert fresh.fresh(NOW) and not late.fresh(NOW) and never.fresh(NOW)
    assert stale([fresh, late, never], NOW) == [late]
    assert late.describe(NOW) == "predictions: STALE, 26.1 h old (SLO 26 h)"
    assert "never materialized" in never.describe(NOW)
    assert late.to_json(NOW)["age_hours"] == 26.1


def test_the_breach_key_names_the_stale_data_not_the_moment_it_is_looked_at():
    late = Freshness("predictions", "batch_predictions", 1, NOW - timedelta(hours=3))
    assert breach_key([late]) == breach_key([late])
    newer = Freshness("predictions", "batch_predictions", 1, NOW - timedelta(hours=2))
    assert breach_key([newer]) != breach_key([late])


def _definitions(config_file) -> dg.Definitions:
    keys = ["raw_batch", ["features", "churn_features"], "batch_predictions"]
    return dg.Definitions(assets=[dg.AssetSpec(k) for k in keys], jobs=[freshness_check_job, jobs.daily_job],
                          sensors=[freshness_sensor],
                          resources={"project": ProjectResource(config_file=str(config_file))})


def _tick(instance, definitions):
    with dg.build_sensor_context(instance=instance, definitions=definitions,
                                 resources=definitions.resources) as context:
        return freshness_sensor.evaluate_tick(context)


def test_a_stale_asset_requests_the_checks_and_the_daily_run_once_per_stale_state(tmp_path):
    # 2 seconds of SLO: the test waits it out instead of faking the clock.
    config = write_config(tmp_path, {"freshness": {"raw_batch_max_age_hours": 2 / 3600,
                                                   "features_max_age_hours": 100, "predictions_max_age_hours": 100}})
    definitions = _definitions(config)
    with dg.instance_for_test() as instance:
        assert _tick(instance, definitions).run_requests == [], "nothing materialized yet: not judged"
        for key in ("raw_batch", ["features", "churn_features"], "batch_predictions"):
            instance.report_runless_asset_event(dg.AssetMaterialization(key))
        result = _tick(instance, definitions)
        assert result.run_requests == [] and "raw_batch: fresh" in result.skip_message

        time.sleep(2.1)
        first = _tick(instance, definitions).run_requests
        assert sorted(r.job_name for r in first) == ["daily", "freshness"]
        assert all(r.run_key.startswith("freshness-") and "raw_batch@" in r.run_key for r in first)
        assert "raw_batch: STALE" in first[0].tags["ml_platform/stale"]
        again = _tick(instance, definitions).run_requests
        assert [r.run_key for r in again] == [r.run_key for r in first], "same stale state, same run keys"

        instance.report_runless_asset_event(dg.AssetMaterialization("raw_batch"))
        assert _tick(instance, definitions).run_requests == [], "fresh data again: nothing to do"
