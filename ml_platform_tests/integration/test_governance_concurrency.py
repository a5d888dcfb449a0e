"""At most one champion, even with concurrent promoters: 8 processes promote and roll back at once
against a real MLflow store — SQLite, and the local PostgreSQL server — and the audit trail must be
one unbroken chain of champion changes that ends at the live champion."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform.resources import Governance, ModelRegistry, Warehouse
from ml_platform.resources.governance import ConcurrentChangeError, GovernanceError
from ml_platform_tests.conftest import on_postgres

MODEL = "gov_model"
VERSIONS = 3
WORKERS = 8


def _register_versions(registry: ModelRegistry) -> None:
    from sklearn.linear_model import LogisticRegression

    mlflow = registry.mlflow()
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    y = (X["a"] > 0).astype(int)
    for i in range(VERSIONS):
        model = LogisticRegression(C=1.0 + i).fit(X, y)
        with mlflow.start_run(experiment_id=registry.experiment_id(MODEL)):
            info = mlflow.sklearn.log_model(model, name="model", registered_model_name=MODEL, input_example=X.head(2),
                                            pip_requirements=["scikit-learn"])
        registry.tag_version(MODEL, str(info.registered_model_version), {"gate_decision": "promoted"})


def _governance(uri: str, artifacts: str, warehouse: str) -> Governance:
    return Governance(registry=ModelRegistry(tracking_uri=uri, artifact_root=artifacts), warehouse=Warehouse(url=warehouse))


def _worker(args: tuple[int, str, str, str]) -> dict:
    """One concurrent promoter: a compare-and-set promotion of some version, or a rollback."""
    index, uri, artifacts, warehouse = args
    governance = _governance(uri, artifacts, warehouse)
    expected = governance.registry.champion_version(MODEL)
    try:
        if index % 3 == 2:
            record = governance.rollback(MODEL, actor=f"worker-{index}", reason="test rollback",
                                         expected_champion=expected)
        else:
            target = str(index % VERSIONS + 1)
            record = governance.promote(MODEL, target, actor=f"worker-{index}", reason="test promotion",
                                        evidence={"worker": index}, expected_champion=expected)
        return {"index": index, "ok": True, "action": record["action"]}
    except ConcurrentChangeError as exc:
        return {"index": index, "ok": False, "conflict": True, "error": str(exc)}
    except GovernanceError as exc:
        return {"index": index, "ok": False, "conflict": False, "error": str(exc)}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=on_postgres)])
def store(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mlflow.db'}"
        return
    import psycopg2

    name = f"mlp_gov_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"create database {name}")
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"  # SQLAlchemy 2.1 defaults to psycopg 3
    finally:
        with admin.cursor() as cur:
            cur.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (name,))
            cur.execute(f"drop database if exists {name}")
        admin.close()


def test_concurrent_promotions_and_rollbacks_keep_one_champion_and_an_unbroken_audit_chain(store, tmp_path):
    artifacts, warehouse = str(tmp_path / "artifacts"), str(tmp_path / "warehouse.duckdb")
    governance = _governance(store, artifacts, warehouse)
    _register_versions(governance.registry)
    governance.promote(MODEL, "1", actor="setup", reason="first champion", evidence={})

    # A ProcessPoolExecutor, not multiprocessing.Pool: Pool.terminate() can race its own worker
    # respawning and wait forever on a worker that is still starting (it hung a CI run once).
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        outcomes = list(pool.map(_worker, [(i, store, artifacts, warehouse) for i in range(WORKERS)], timeout=300))

    assert len(outcomes) == WORKERS
    # Every attempt either changed the champion or was refused with a reason; none vanished.
    for outcome in outcomes:
        assert outcome["ok"] or outcome["error"], outcome
    history = governance.history(MODEL)
    assert [r["seq"] for r in history] == list(range(1, len(history) + 1)), "audit log is gap-free and ordered"
    assert {r["actor"] for r in history} == {"setup"} | {f"worker-{i}" for i in range(WORKERS)}, \
        "every promoter's attempt is in the audit log"

    # The champion changes form one chain: each transition starts where the previous one ended.
    moves = [r for r in history if r["action"] in {"promote", "rollback"}]
    assert moves[0]["from_version"] is None and moves[0]["to_version"] == "1"
    for before, after in zip(moves, moves[1:], strict=False):
        assert after["from_version"] == before["to_version"], (before, after)
    # ... and ends at the live champion, with `previous_champion` the one before it.
    registry = governance.registry
    assert registry.champion_version(MODEL) == moves[-1]["to_version"]
    if len(moves) > 1:
        assert registry.alias_version(MODEL, "previous_champion") == moves[-1]["from_version"]
    # Exactly one version carries the champion alias.
    holders = [str(v) for v in range(1, VERSIONS + 1) if "champion" in registry.version(MODEL, str(v)).aliases]
    assert len(holders) == 1


def test_rollback_and_re_promotion_are_symmetric(tmp_path):
    governance = _governance(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts"),
                             str(tmp_path / "warehouse.duckdb"))
    _register_versions(governance.registry)
    registry = governance.registry

    with pytest.raises(GovernanceError, match="no champion to roll back from"):
        governance.rollback(MODEL, actor="ops", reason="nothing live yet")
    governance.promote(MODEL, "1", actor="gate", reason="first", evidence={})
    with pytest.raises(GovernanceError, match="no previous champion"):
        governance.rollback(MODEL, actor="ops", reason="no history")
    governance.promote(MODEL, "2", actor="gate", reason="better", evidence={})

    rolled = governance.rollback(MODEL, actor="ops", reason="v2 misbehaves")
    assert (rolled["from_version"], rolled["to_version"]) == ("2", "1")
    assert registry.champion_version(MODEL) == "1"
    assert registry.alias_version(MODEL, "previous_champion") == "2"
    assert registry.version(MODEL, "2").tags["demotion_reason"] == "v2 misbehaves"

    again = governance.rollback(MODEL, actor="ops", reason="v2 was fine after all")  # the mirror image
    assert (again["from_version"], again["to_version"]) == ("1", "2")
    assert registry.champion_version(MODEL) == "2"

    with pytest.raises(GovernanceError, match="version 99 does not exist"):
        governance.rollback(MODEL, to="99", actor="ops", reason="typo")
    registry.tag_version(MODEL, "3", {"gate_decision": "rejected"})
    with pytest.raises(GovernanceError, match="never passed the gate"):
        governance.rollback(MODEL, to="3", actor="ops", reason="try the rejected one")
    assert registry.champion_version(MODEL) == "2", "a refused rollback changes nothing"
    forced = governance.rollback(MODEL, to="3", actor="ops", reason="emergency", force=True)
    assert forced["forced"] is True and registry.champion_version(MODEL) == "3"

    actions = [(r["action"], r["to_version"], r["forced"]) for r in governance.history(MODEL)]
    assert actions == [
        ("rollback_refused", None, False), ("promote", "1", False), ("rollback_refused", None, False),
        ("promote", "2", False), ("rollback", "1", False), ("rollback", "2", False),
        ("rollback_refused", "99", False), ("rollback_refused", "3", False), ("rollback", "3", True),
    ]
    assert Path(tmp_path / "champion-gov_model.lock").exists(), "the SQLite store's lock file sits beside it"
