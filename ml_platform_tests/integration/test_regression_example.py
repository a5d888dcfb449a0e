"""The second shipped example, a regression: scikit-learn's diabetes dataset through the whole lifecycle with
real Dagster, dbt on DuckDB, GX, scikit-learn, MLflow and Evidently (docs/examples/diabetes)."""

import importlib.util
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from ml_platform import cli
from ml_platform.check import run_checks
from ml_platform.config import load_config
from ml_platform.resources import ModelRegistry, Warehouse
from ml_platform.runner import run_lifecycle
from ml_platform.settings import PROJECT_ROOT
from ml_platform_tests.serving_support import running_service

pytestmark = pytest.mark.slow

EXAMPLE = PROJECT_ROOT / "docs" / "examples" / "diabetes"


def _exporter():
    spec = importlib.util.spec_from_file_location("diabetes_export_data", EXAMPLE / "export_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def diabetes_config(tmp_path: Path) -> Path:
    """The example's config and model module, copied beside a data file of this test's own."""
    folder = tmp_path / "diabetes"
    folder.mkdir()
    shutil.copy(EXAMPLE / "diabetes_model.py", folder / "diabetes_model.py")
    shutil.copy(EXAMPLE / "known_hard_cases.yaml", folder / "known_hard_cases.yaml")
    config = yaml.safe_load((EXAMPLE / "ml_platform.yaml").read_text())
    config["checks"]["reproduce"] = False
    (folder / "ml_platform.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder / "ml_platform.yaml"


def test_diabetes_regression_from_raw_batches_to_a_gated_champion(platform_env, diabetes_config, capsys):
    export = _exporter().export_diabetes
    data = diabetes_config.parent / "data" / "diabetes.csv"

    export(data, batch=1)
    first = run_lifecycle(config_file=diabetes_config, batch="batch-1")
    assert first.success, first.errors
    assert all(c["passed"] for c in first.checks.values()), first.checks
    assert any(k.startswith("features/diabetes_features:") for k in first.checks), "dbt tests should be asset checks"
    assert not any("churn" in k for k in [*first.assets, *first.checks]), "only the configured dbt model is built"

    evaluation = first.outputs["model_evaluation"]
    metrics, baseline = evaluation["metrics"], evaluation["baseline"]
    assert {"rmse", "mae", "r2", "latency_p99_ms", "fairness_gap"} <= set(metrics)
    assert "ece" not in metrics and "roc_auc" not in metrics
    assert metrics["rmse"] < baseline["rmse"] - 5 and metrics["r2"] > 0.3, (metrics, baseline)

    gate = first.outputs["champion_model"]
    assert (gate["decision"], gate["champion_version"], gate["metric"]) == ("promoted", "1", "neg_rmse")
    assert gate["challenger_value"] == pytest.approx(-metrics["rmse"])
    assert any("trivial baseline" in r and "beaten" in r for r in gate["reasons"]), gate["reasons"]
    assert "pass calibration: not applicable to a regression model" in gate["reasons"]
    assert any(r.startswith("pass fairness gap") for r in gate["reasons"]), gate["reasons"]

    registry = ModelRegistry()
    champion = registry.champion("diabetes")
    run = registry.run(champion.run_id)
    for metric in ("holdout_rmse", "holdout_mae", "holdout_r2", "holdout_latency_p99_ms", "holdout_fairness_gap"):
        assert metric in run.data.metrics
    artifacts = {a.path for a in registry.client().list_artifacts(champion.run_id, "evaluation")}
    assert {"evaluation/evaluation.html", "evaluation/evaluation.json", "evaluation/predicted_vs_actual.png",
            "evaluation/residuals.png"} <= artifacts
    report = json.loads(Path(evaluation["report_json_path"]).read_text())
    assert set(report["by_group"]) == {"1", "2"} and "rmse" in report["by_group"]["1"]
    assert "Predicted vs actual" in Path(evaluation["report_path"]).read_text()

    # Batch scoring writes the predicted value in `score`.
    predictions = Warehouse().query("select * from serving.batch_predictions")
    assert len(predictions) == 221 and set(predictions["model_version"]) == {"1"}
    assert predictions["score"].between(25, 346).mean() > 0.95 and predictions["score"].nunique() > 100
    assert first.outputs["drift_report"]["columns"]
    assert "psi" in first.outputs["prediction_drift"]
    assert first.outputs["live_performance"]["days"] == [] and first.outputs["late_labels"]["new_labels"] == 0

    # The online service answers a regressor's predictions: the score on /predict, `predict`'s values on
    # /invocations (as `mlflow models serve` would).
    with running_service(diabetes_config, platform_env) as service:
        answered = service.client.post("/predict", json={"entity_ids": ["P0003", "P0010"]}).json()["predictions"]
        assert [a["model_version"] for a in answered] == ["1", "1"]
        assert all(25 < a["score"] < 346 and a["label"] == a["score"] for a in answered)
        row = Warehouse().query("select * from features.diabetes_features where patient_id = 'P0003'")
        record = row.drop(columns=["patient_id", "snapshot_hash", "batch_id", "progression"]).iloc[0].to_dict()
        mlflow_style = service.client.post("/invocations", json={"dataframe_records": [record]}).json()
        assert mlflow_style["predictions"] == [pytest.approx(answered[0]["score"])]

        # Labels for the canary through /feedback are true values; a label that is not a number is refused.
        labels = [{"prediction_id": a["prediction_id"], "label": 151.0} for a in answered]
        assert service.client.post("/feedback", json={"labels": labels}).json() == {"received": 2, "matched": 2}
        refused = service.client.post("/feedback", json={"labels": [{"prediction_id": "x", "label": "high"}]})
        assert refused.status_code == 400
        assert "label 'high' is not a finite number (a regression's label is the true value)" in refused.text

        # `ml-platform check`: the gate re-run, RMSE per sex against its floor, robustness of the predictions,
        # the known-hard patients (bounds of the predicted progression), this endpoint replaying the regression set.
        report = run_checks(load_config(diabetes_config), layers=("model", "infrastructure"), endpoint=service.url)
    status = {r.name: r.status for r in report.results}
    passing = ("training_converges", "promotion_gate", "slices", "robustness", "known_hard_cases", "artifact_digest",
               "serving", "regression_set")
    assert {k: status[k] for k in passing} == dict.fromkeys(passing, "pass"), report.results
    hard = next(r for r in report.results if r.name == "known_hard_cases")
    assert hard.numbers == {"cases": 3, "expectations": 3, "changed_cases": 1 + 1 + 6}, hard.numbers
    slices = next(r for r in report.results if r.name == "slices")
    assert set(slices.numbers["slices"]) == {"1", "2"} and slices.numbers["metric"] == "neg_rmse"

    # Batch 1's outcomes arrive (late labels: the true progression by patient_id). `ml-platform labels` refuses a
    # file whose values are not numbers and queues the good one; the next run judges the live RMSE on them.
    bad = diabetes_config.parent / "outcomes-bad.csv"
    bad.write_text("patient_id,progression\nP0001,151\nP0002,high\n")
    assert cli.main(["--config", str(diabetes_config), "labels", str(bad)]) == 2
    assert "progression is not a finite number on 1 row (rows 2, e.g. 'high')" in capsys.readouterr().err
    outcomes = export(diabetes_config.parent / "outcomes-1.csv", batch=1, outcomes=True)
    assert cli.main(["--config", str(diabetes_config), "labels", str(outcomes)]) == 0
    assert sorted(p.name for p in (platform_env / "landing" / "labels").iterdir()) == ["outcomes-1.csv"]

    # Day two: the second half of the patients. A second training goes through the gate against the champion.
    export(data, batch=2)
    second = run_lifecycle(config_file=diabetes_config, batch="batch-2")
    assert second.success, second.errors

    # Live performance: every prediction of a batch-1 patient (batch and online) is labelled with that patient's
    # true progression, and the live RMSE is computed from those pairs.
    labelled = second.outputs["late_labels"]
    assert labelled["rejected"] == [] and labelled["new_labels"] >= 221, labelled
    stored = Warehouse().query("select entity_id, source, score, label, is_positive from monitoring.labels")
    truth = _exporter().diabetes_frame().set_index("patient_id")["progression"]
    assert (stored["label"].astype(float) == truth.loc[stored["entity_id"]].to_numpy()).all()
    # Online: the two /predict answers above (the /invocations row named no patient). The check's replay of the
    # regression set through the endpoint is logged apart (variant `check`), not labelled: no user got it.
    sources = stored["source"].value_counts().to_dict()
    assert stored["is_positive"].isna().all() and sources == {"batch": 221, "online": 2}, sources
    logged = Warehouse().query("select variant, count(*) as n from serving.prediction_log group by 1")
    assert dict(zip(logged["variant"], logged["n"], strict=True)) == {"champion": 3, "check": 50}
    rmse = float(((stored["score"] - stored["label"].astype(float)) ** 2).mean() ** 0.5)
    live = second.outputs["live_performance"]
    [today] = live["days"]
    assert today["labelled_rows"] == len(stored) and today["rolling_metric"] == pytest.approx(-rmse)
    assert 30 < rmse < 70 and today["below_floor"] is False and not live["sustained_breach"]
    assert second.checks["live_performance:live_metric_slo"]["passed"]
    # The ML Test Score's "offline and online metrics correlate": the live RMSE against the champion's holdout RMSE.
    readiness = run_checks(load_config(diabetes_config), layers=("data",), readiness=True).readiness
    [correlate] = [r for r in readiness["rows"] if r["test"] == "Offline and online metrics correlate"]
    note = correlate["evidence"]["live_vs_offline"]["note"]
    assert note.startswith(f"live neg_rmse {-rmse:.4f} vs holdout -") and correlate["state"] in ("pass", "fail"), note
    gate = second.outputs["champion_model"]
    assert gate["challenger_version"] == "2" and gate["decision"] in {"promoted", "rejected"}
    assert any("vs champion" in r for r in gate["reasons"]), gate["reasons"]
    assert registry.version("diabetes", "2").tags["gate_decision"] == gate["decision"]
    assert registry.champion_version("diabetes") == gate["champion_version"]
    drift = second.outputs["drift_report"]
    assert Path(drift["report_path"]).exists() and set(drift["columns"]) >= {"bmi", "bp", "s5"}
    assert len(Warehouse().query("select * from serving.batch_predictions")) == 442

    # A canary of the other version is judged on live RMSE. Labels sent to /feedback that are true for the
    # champion's answers and 80 above the truth for the challenger's put its live RMSE far over the champion's
    # (more than serving.canary.guardrails.max_rmse_increase, 10 %): the canary rolls back.
    champion = registry.champion_version("diabetes")
    challenger = "1" if champion == "2" else "2"
    registry.set_alias("diabetes", "challenger", challenger)
    raw = yaml.safe_load(diabetes_config.read_text())
    raw["serving"] = {"canary": {"mode": "canary", "steps": [50, 100], "step_seconds": 3600,
                                 "guardrails": {"min_requests": 20, "max_score_psi": 50, "latency_slack_ms": 5000}}}
    canary_config = diabetes_config.with_name("canary.yaml")
    canary_config.write_text(yaml.safe_dump(raw, sort_keys=False))
    with running_service(canary_config, platform_env) as service:
        service.wait_for(lambda: service.version()["canary"]["status"] == "running", what="the canary")
        answered = []
        for start in range(0, 200, 20):
            answered += service.client.post("/predict", json={"entity_ids": [f"P{i:04d}" for i in
                                                                             range(start, start + 20)]}).json()["predictions"]
        shares = Counter(a["variant"] for a in answered)
        assert shares["champion"] >= 30 and shares["challenger"] >= 30, shares
        labels = [{"prediction_id": a["prediction_id"],
                   "label": float(truth[a["entity_id"]]) + (80.0 if a["variant"] == "challenger" else 0.0)}
                  for a in answered]
        assert service.client.post("/feedback", json={"labels": labels}).json()["matched"] == len(labels)
        state = service.wait_for(lambda: (s := service.version()["canary"])["status"] == "rolled_back" and s,
                                 what="canary rollback")
        service.wait_for(lambda: registry.version("diabetes", challenger).tags.get("canary"), what="the version tag")
    [reason] = state["reasons"]
    assert reason.startswith("live RMSE ") and "allowed +10%" in reason, reason
    assert state["evidence"]["challenger_live_rmse"] > 1.1 * state["evidence"]["champion_live_rmse"]
    assert registry.version("diabetes", challenger).tags["canary"] == "rolled_back"
