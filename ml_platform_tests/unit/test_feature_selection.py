"""The feature stage builds only the configured dbt model and its parents: the manifest cut (`+<dbt_model>`)."""

import json

import pytest

from ml_platform.defs.features.assets import manifest_for
from ml_platform.defs.features.project import prepare_manifest
from ml_platform.settings import DBT_PROJECT_DIR


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(prepare_manifest(DBT_PROJECT_DIR).read_text())


def names(cut: dict, kind: str) -> set[str]:
    return {n["name"] for n in cut["nodes"].values() if n["resource_type"] == kind}


@pytest.mark.parametrize(("model", "staging", "other"), [
    ("churn_features", "stg_churn_batches", "diabetes"),
    ("diabetes_features", "stg_diabetes_batches", "churn"),
])
def test_the_cut_holds_the_model_its_parents_their_tests_and_their_source(manifest, model, staging, other):
    cut = manifest_for(manifest, model)
    assert names(cut, "model") == {model, staging}
    tests = names(cut, "test")
    assert tests and not any(other in t for t in tests)
    assert any(f"unique_{model}" in t for t in tests)
    assert [s["name"] for s in cut["sources"].values()] == [f"{model.removesuffix('_features')}_batches"]
    everything = set(cut["nodes"]) | set(cut["sources"])
    assert set(cut["child_map"]) <= everything and all(set(v) <= everything for v in cut["child_map"].values())
    assert len(manifest["nodes"]) > len(cut["nodes"])
