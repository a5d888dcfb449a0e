"""`ml-platform check` on real lifecycle runs: each layer passing, and failing on purpose; bad input exits 2.

One lifecycle run (champion v1) is shared by the read-only tests. A second home adds v2, trained and evaluated by
the lifecycle from a team's `pipeline:` factory that returns an overfit decision tree (a step function). Tests
that change state work on copies. After every check: nothing was promoted, tagged or moved.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ml_platform import cli
from ml_platform.check import recorded_regression_set
from ml_platform.lib.demo_data import generate_batch
from ml_platform.resources import Governance, ModelRegistry, Warehouse
from ml_platform.runner import run_lifecycle
from ml_platform.settings import AUDIT_TABLE, PREDICTION_LOG_TABLE, PROJECT_ROOT
from ml_platform_tests.conftest import platform_home, write_config
from ml_platform_tests.serving_support import running_service

pytestmark = pytest.mark.slow

MODEL = "churn"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """One lifecycle run of the demo config (risk tier low): v1 is champion, with its digest and regression set."""
    root = tmp_path_factory.mktemp("check")
    config = write_config(root)
    with platform_home(root / "home") as home:
        result = run_lifecycle(config_file=config, quiet=True)
        assert result.success, result.errors
    return {"root": root, "home": home, "config": config}


@pytest.fixture(scope="module")
def tree(base, tmp_path_factory) -> dict:
    """A copy of `base` with v2: an overfit decision tree, trained and evaluated by the lifecycle (not gated)."""
    root = tmp_path_factory.mktemp("check_tree")
    home = root / "home"
    shutil.copytree(base["home"], home)
    config = with_settings(write_config(root, name="tree.yaml"), estimator={
        "pipeline": "ml_platform_tests.check_support:step_function_pipeline"},
        trusted_types=["sklearn.tree._tree.Tree"])  # reviewed: the tree's node storage, our own file
    with platform_home(home):
        result = run_lifecycle(config_file=config, quiet=True,
                               selection=["training_data", "trained_model", "model_evaluation"])
        assert result.success, result.errors
        assert result.outputs["model_evaluation"]["version"] == "2"
    return {"root": root, "home": home, "config": config}


def with_settings(path: Path, **training) -> Path:
    """The config at `path` with training fields replaced (not merged: a pipeline factory takes no estimator params)."""
    content = yaml.safe_load(path.read_text())
    content["training"].update(training)
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def check(config: Path, *args: str, capsys) -> tuple[int, dict | str, str]:
    """`ml-platform check` in this process (the subprocess test below runs it as CI does); the JSON report when
    --json is given, else the printed text."""
    code = cli.main(["--config", str(config), "check", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if "--json" in args and out.strip() else out), err


def results(report: dict) -> dict[str, dict]:
    return {r["key"]: r for r in report["results"]}


def registry_state() -> dict:
    """Everything a check must leave alone: versions, their tags, the aliases and the audit log."""
    registry = ModelRegistry()
    model = registry.client().get_registered_model(MODEL)
    warehouse = Warehouse()
    audit = len(warehouse.query(f"select seq from {AUDIT_TABLE}")) if warehouse.table_exists(AUDIT_TABLE) else 0
    return {"versions": {str(v.version): dict(v.tags) for v in registry.versions(MODEL)},
            "aliases": dict(model.aliases), "audit_records": audit}


def model_file(version: str) -> Path:
    """The version's model.skops in the artifact store, where the registry points (not a downloaded copy)."""
    ModelRegistry().mlflow()  # points MLflow at this home's registry
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    location = ModelsArtifactRepository.get_underlying_uri(f"models:/{MODEL}/{version}")
    return Path(location.removeprefix("file://")) / "model.skops"


# -- the demo passes every layer, as CI runs it ----------------------------------------------------------
def test_the_demo_passes_every_layer_and_prints_its_readiness(base):
    """What `.ci/run` (make test) runs on the demo: the command as a subprocess, exit 0, a readable report."""
    with platform_home(base["home"]):
        before = registry_state()
    shown = subprocess.run([sys.executable, "-m", "ml_platform.cli", "--config", str(base["config"]), "check",
                            "--readiness"], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600,
                           env={**os.environ, "ML_PLATFORM_HOME": str(base["home"]), "NO_COLOR": "1"})
    print(shown.stdout)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    out = shown.stdout
    for line in ("✔ training_snapshot_contract", "✔ newest_batch_contract", "✔ schema_match", "✔ training_converges",
                 "✔ promotion_gate", "✔ slices", "✔ robustness", "✔ known_hard_cases", "✔ artifact_digest",
                 "✔ serving", "✔ regression_set", "– rollback", "✔ reproduce"):
        assert line in out, line
    assert "check passed: churn v1 (champion 1): 12 passed, 0 failed, 1 skipped" in out
    assert "50 rows answered as recorded" in out
    assert "ML Test Score readiness: churn v1" in out
    assert "  pass     1.0  Training is reproducible" in out
    assert "  absent   0.0  All hyperparameters have been tuned" in out
    assert "overall score 2.0 (the lowest section)" in out
    with platform_home(base["home"]):
        assert registry_state() == before, "the check must not promote, tag or move anything"
        # The check's own serving process wrote nothing to the prediction log: its rows are not traffic.
        assert not Warehouse().table_exists(PREDICTION_LOG_TABLE) or \
            Warehouse().query(f"select count(*) as n from {PREDICTION_LOG_TABLE}")["n"][0] == 0


def test_the_data_and_model_layers_as_json(base, capsys):
    with platform_home(base["home"]):
        code, report, _ = check(base["config"], "--only", "data", "--only", "model", "--json", capsys=capsys)
    assert code == 0, report
    assert (report["version"], report["champion"], report["compared_to"], report["layers"]) == \
        ("1", "1", None, ["data", "model"])
    found = results(report)
    assert all(r["status"] == "pass" for r in found.values()), found
    assert found["model.slices"]["numbers"]["slices"]["two-year"]["floor"] == 0.55
    assert found["model.robustness"]["numbers"]["share_over_tolerance"] <= 0.01
    assert found["model.known_hard_cases"]["numbers"] == {"cases": 6, "expectations": 4, "changed_cases": 31}
    assert found["model.promotion_gate"]["details"][0].startswith("pass roc_auc")


# -- each layer failing on purpose -------------------------------------------------------------------------
def test_a_model_below_a_slice_floor_fails_the_model_layer(base, capsys):
    config = write_config(base["root"], {"checks": {"slices": {"floors": {"two-year": 0.7}}}}, name="floor.yaml")
    with platform_home(base["home"]):
        before = registry_state()
        code, report, _ = check(config, "--only", "model", "--json", capsys=capsys)
        assert registry_state() == before
    assert code == 1
    slices = results(report)["model.slices"]
    assert slices["status"] == "fail"
    assert slices["details"][0].startswith("contract=two-year: roc_auc 0.6") and "< floor 0.7000" in slices["details"][0]
    assert [k for k, r in results(report).items() if r["status"] == "fail"] == ["model.slices"]


def test_a_broken_behavioural_expectation_fails_the_model_layer(base, capsys):
    cases = yaml.safe_load((PROJECT_ROOT / "checks" / "known_hard_cases.yaml").read_text())
    cases["expectations"].append({"name": "more support calls lower churn risk", "kind": "directional",
                                  "score": "lower", "change": {"support_calls": {"add": 4}}, "cases": "all"})
    path = base["root"] / "broken_cases.yaml"
    path.write_text(yaml.safe_dump(cases, sort_keys=False))
    config = write_config(base["root"], {"checks": {"known_hard_cases": str(path)}}, name="broken.yaml")
    with platform_home(base["home"]):
        code, text, _ = check(config, "--only", "model", capsys=capsys)
    assert code == 1
    assert "✘ known_hard_cases         1 known-hard case(s) or expectation(s) broken" in text
    assert "expectation 'more support calls lower churn risk' broken on " in text
    assert "check FAILED: churn v1 (champion 1): 4 passed, 1 failed, 0 skipped" in text


def test_a_perturbation_sensitive_model_fails_robustness(tree, capsys):
    with platform_home(tree["home"]):
        before = registry_state()
        code, report, _ = check(tree["config"], "--version", "2", "--only", "model", "--json", capsys=capsys)
        assert registry_state() == before, "a failed check promotes nothing"
    assert code == 1
    robustness = results(report)["model.robustness"]
    assert robustness["status"] == "fail", robustness
    assert robustness["numbers"]["share_over_tolerance"] > 0.01 and robustness["numbers"]["max_change"] == 1.0
    assert "of rows moved by more than 0.25 under noise of 0.01 × std (at most 1.0% may)" in robustness["details"][0]
    # The same overfit tree is caught by the gate against champion v1, too.
    assert results(report)["model.promotion_gate"]["status"] == "fail"
    assert report["compared_to"] == "1"


def test_a_newest_batch_that_breaks_the_contract_fails_the_data_layer(base, tmp_path, capsys):
    home = tmp_path / "home"
    shutil.copytree(base["home"], home)
    batch = generate_batch(2, rows=600, seed=11)
    batch.loc[:9, "contract"] = "weekly"  # a category the contract and the model have never seen
    source = tmp_path / "batch.csv"
    batch.to_csv(source, index=False)
    config = write_config(tmp_path, {"data": {"source": {"kind": "file", "path": str(source)}}})
    with platform_home(home):
        assert not run_lifecycle(config_file=config, quiet=True).success  # quarantined by the blocking checks
        code, report, _ = check(config, "--only", "data", "--json", capsys=capsys)
    assert code == 1
    found = results(report)
    assert found["data.training_snapshot_contract"]["status"] == "pass"
    assert found["data.newest_batch_contract"]["status"] == "fail"
    assert "contract: 10 values (1.67%) not in the allowed set" in found["data.newest_batch_contract"]["details"][0]
    assert found["data.schema_match"]["details"][0].startswith("contract: value(s) ['weekly'] never seen in training")


def test_the_infrastructure_layer_of_a_challenger_and_its_rollback_target(tree, tmp_path, capsys):
    config = write_config(tree["root"], {"checks": {"reproduce": False}}, name="no_reproduce.yaml")
    with platform_home(tree["home"]):
        before = registry_state()
        code, report, _ = check(config, "--version", "2", "--only", "infrastructure", "--json", capsys=capsys)
        assert registry_state() == before
    assert code == 0, report
    found = results(report)
    assert found["infrastructure.artifact_digest"]["details"][0].startswith("v2 (the version under check): files hash")
    assert found["infrastructure.artifact_digest"]["details"][1].startswith("v1 (the champion (deployed)): files hash")
    assert "v2 loads and answers in the serving process" in found["infrastructure.serving"]["summary"]
    assert found["infrastructure.regression_set"]["numbers"]["largest_difference"] <= 1e-6
    rollback = found["infrastructure.rollback"]
    assert (rollback["status"], rollback["numbers"]["target"]) == ("pass", "1")
    assert rollback["details"][0] == "if v2 is promoted, a rollback returns to champion v1"
    assert found["infrastructure.reproduce"]["status"] == "skip"


def test_a_tampered_artifact_is_refused_by_the_server_and_by_check(tree, tmp_path, capsys):
    """One byte of v2's model file changed after evaluation: a serving process that is told v2 is champion
    keeps answering with v1 and says why; the check fails v2's digest and its pinned service never gets ready."""
    home = tmp_path / "home"
    shutil.copytree(tree["home"], home)
    config = write_config(tmp_path, {"checks": {"reproduce": False}})
    with platform_home(home):
        stored = model_file("2")  # shared with the module's homes: restored below
        original = stored.read_bytes()
        tampered = bytearray(original)
        tampered[len(tampered) // 2] ^= 0x01
        try:
            stored.write_bytes(bytes(tampered))
            with running_service(config, home) as svc:
                assert svc.client.get("/ready").json()["champion_version"] == "1"
                registry = ModelRegistry()
                warehouse = Warehouse()
                Governance(registry=registry, warehouse=warehouse).promote(
                    MODEL, "2", actor="test", reason="a promotion of an artifact altered after evaluation", evidence={})
                info = svc.wait_for(lambda: (v := svc.version())["refused_versions"].get("2") and v,
                                    what="version 2 refused")
                assert info["champion"]["version"] == "1", "the last good version keeps answering"
                assert "changed after it was evaluated" in info["refused_versions"]["2"]
                assert info["champion_refused"].startswith("champion version 2 refused: ArtifactIntegrityError: "
                                                           "churn v2: its model files hash to")
                assert svc.client.get("/ready").json() == {"ready": True, "model": "churn", "champion_version": "1"}
                answer = svc.client.post("/predict", json={"entity_ids": ["C0001-0000009"]}).json()
                assert answer["predictions"][0]["model_version"] == "1"
                assert "version 2 refused: churn v2: its model files hash to" in svc.log()

            before = registry_state()
            code, report, _ = check(config, "--version", "2", "--only", "infrastructure", "--json", capsys=capsys)
            assert registry_state() == before
        finally:
            stored.write_bytes(original)
    assert code == 1
    found = results(report)
    digest = found["infrastructure.artifact_digest"]
    assert digest["status"] == "fail"
    assert digest["details"][0].startswith("v2 (the version under check): churn v2: its model files hash to")
    serving = found["infrastructure.serving"]
    assert serving["status"] == "fail" and "did not become ready" in serving["summary"]
    assert "champion version 2 refused: ArtifactIntegrityError" in serving["details"][0]
    assert found["infrastructure.regression_set"]["summary"] == "not replayed: the serving process is not ready"


# -- bad input: a clear error, exit 2, nothing judged or promoted --------------------------------------------
def bad_input(config: Path, capsys, *args: str) -> str:
    before = registry_state()
    code, _, err = check(config, *args, capsys=capsys)
    assert code == 2, err
    assert registry_state() == before
    return err


def test_a_known_hard_cases_file_with_an_unknown_column(base, capsys):
    cases = yaml.safe_load((PROJECT_ROOT / "checks" / "known_hard_cases.yaml").read_text())
    cases["cases"][2]["row"]["tenure"] = 3
    path = base["root"] / "unknown_column.yaml"
    path.write_text(yaml.safe_dump(cases, sort_keys=False))
    config = write_config(base["root"], {"checks": {"known_hard_cases": str(path)}}, name="c1.yaml")
    with platform_home(base["home"]):
        err = bad_input(config, capsys, "--only", "model")
    assert f"error: {path}: cases[2] 'brand-new customer already on a two-year contract': row: column 'tenure' is " \
           "not a model input (did you mean 'tenure_months'?)" in err


def test_a_known_hard_cases_file_with_a_malformed_expectation(base, capsys):
    cases = yaml.safe_load((PROJECT_ROOT / "checks" / "known_hard_cases.yaml").read_text())
    cases["expectations"][0]["score"] = "down"
    path = base["root"] / "malformed.yaml"
    path.write_text(yaml.safe_dump(cases, sort_keys=False))
    config = write_config(base["root"], {"checks": {"known_hard_cases": str(path)}}, name="c2.yaml")
    with platform_home(base["home"]):
        err = bad_input(config, capsys, "--only", "model")
    assert f"{path}: expectations[0] 'a longer tenure does not raise churn risk': score: Input should be 'lower', " \
           "'higher', 'not_lower' or 'not_higher' (got 'down')" in err


def test_a_slice_column_that_does_not_exist(base, capsys):
    config = write_config(base["root"], {"checks": {"slices": {"column": "contract_type"}}}, name="c3.yaml")
    with platform_home(base["home"]):
        err = bad_input(config, capsys, "--only", "model")
    assert "c3.yaml: checks.slices.column: 'contract_type' is not a column of the feature table " \
           "(did you mean 'contract'?)" in err


def test_a_floor_for_a_slice_that_does_not_exist(base, capsys):
    config = write_config(base["root"], {"checks": {"slices": {"floors": {"two_year": 0.6}}}}, name="c4.yaml")
    with platform_home(base["home"]):
        err = bad_input(config, capsys, "--only", "model")
    assert "c4.yaml: checks.slices.floors: the holdout has no slice ['two_year'] of 'contract' (its values: " \
           "['month-to-month', 'one-year', 'two-year'])" in err


def test_a_regression_set_recorded_for_another_version(tree, capsys):
    with platform_home(tree["home"]):
        other = recorded_regression_set(ModelRegistry(), MODEL, "1").write(tree["root"] / "v1_regression_set.json")
        err = bad_input(tree["config"], capsys, "--version", "2", "--only", "infrastructure", "--regression-set",
                        str(other))
    assert f"{other}: the regression set was recorded for churn v1, but the version under check is churn v2" in err


def test_an_unknown_version(base, capsys):
    with platform_home(base["home"]):
        err = bad_input(base["config"], capsys, "--version", "9", "--only", "data")
    assert "model 'churn' has no version 9" in err


def test_the_regression_set_is_what_the_version_answered(base):
    """The artifact recorded at evaluation: rows the endpoint is sent, with the scores v1 gave them."""
    with platform_home(base["home"]):
        registry = ModelRegistry()
        found = recorded_regression_set(registry, MODEL, "1")
        tags = registry.version(MODEL, "1").tags
    assert (found.model, found.version, found.artifact_sha256) == (MODEL, "1", tags["artifact_sha256"])
    assert len(found.rows) == 50 and found.id_column == "customer_id"
    assert pd.Series(found.scores).between(0, 1).all()
    assert tags["regression_set"].endswith("regression/regression_set.json")
