"""The online service as a client sees it: the real `ml-platform serve` process on a loopback port, the
real MLflow registry and DuckDB warehouse, the online table published by the lifecycle."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import duckdb
import httpx
import pytest

from ml_platform.lib.canary import goes_to_challenger
from ml_platform.resources import Governance, ModelRegistry, Warehouse
from ml_platform.runner import run_lifecycle
from ml_platform.serving.traffic import CHECK_HEADER
from ml_platform.settings import ALERTS_TABLE, AUDIT_TABLE, PREDICTION_LOG_TABLE
from ml_platform_tests.conftest import platform_home, write_config
from ml_platform_tests.serving_support import FAIL_ENV, register_version, running_service

pytestmark = pytest.mark.slow

TOKEN = "s3cret-token"
MODEL_INPUTS_DROP = ["snapshot_hash", "batch_id", "churned", "event_date"]


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> dict:
    """One lifecycle run (champion v1, online table published), plus versions registered without an alias:
    v2 a plain smaller model, v3 one that sleeps 40 ms per call, v4 one that fails while serving."""
    root = tmp_path_factory.mktemp("served")
    config = write_config(root)
    with platform_home(root / "home"):
        result = run_lifecycle(config_file=config)
        assert result.success, result.errors
        versions = {"plain": register_version(config), "slow": register_version(config, slow_seconds=0.04),
                    "failing": register_version(config, fail=True)}
    return {"home": root / "home", "config": config, "versions": versions}


@pytest.fixture
def home(served, tmp_path):
    """A private copy of the served home: tests move aliases without disturbing each other."""
    copy = tmp_path / "home"
    shutil.copytree(served["home"], copy)
    with platform_home(copy):
        yield copy


@pytest.fixture(scope="module")
def shared(served, tmp_path_factory):
    """One service (with a bearer token) for the tests that only read: its home is never changed.
    Rows are read before it starts: the service's log flushes take the warehouse's write lock."""
    copy = tmp_path_factory.mktemp("shared") / "home"
    shutil.copytree(served["home"], copy)
    with platform_home(copy):
        rows = feature_rows(copy, 50)
        with running_service(served["config"], copy, token=TOKEN) as svc:
            yield svc, rows


def feature_rows(home: Path, n: int) -> list[dict]:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        frame = con.execute(f"select * from features.churn_features order by customer_id limit {n}").df()
    finally:
        con.close()
    return json.loads(frame.drop(columns=MODEL_INPUTS_DROP).to_json(orient="records"))


def serving_config(tmp_path: Path, serving: dict) -> Path:
    return write_config(tmp_path, {"serving": serving}, name="serving.yaml")


# -- endpoints and the client contract -------------------------------------------------------------
def test_every_endpoint_answers(shared):
    svc, rows = shared
    rows = rows[:5]
    columns = [c for c in rows[0] if c != "customer_id"]
    c = svc.client
    before = c.get("/metrics").text
    assert c.get("/health").json()["status"] == "ok"
    assert c.get("/ready").json() == {"ready": True, "model": "churn", "champion_version": "1"}
    info = svc.version()
    assert info["champion"]["version"] == "1" and info["loaded_versions"] == ["1"]
    assert info["canary"]["status"] == "off"

    out = c.post("/predict", json={"records": rows}).json()["predictions"]
    assert [p["entity_id"] for p in out] == [r["customer_id"] for r in rows]
    assert {(p["model_version"], p["variant"]) for p in out} == {("1", "champion")}
    assert len({p["prediction_id"] for p in out}) == 5
    assert all(0 <= p["score"] <= 1 and p["label"] in (0, 1) for p in out)

    # The four MLflow request formats give the same answer: the labels, as `mlflow models serve` does.
    split = {"dataframe_split": {"columns": columns, "data": [[r[k] for k in columns] for r in rows]}}
    formats = [split, {"dataframe_records": rows}, {"instances": rows}, {"inputs": rows},
               {"inputs": {k: [r[k] for r in rows] for k in columns}}]
    answers = [c.post("/invocations", json=body).json() for body in formats]
    assert all(a == {"predictions": [p["label"] for p in out]} for a in answers), answers

    metrics = c.get("/metrics").text
    invocations_ok = 'ml_platform_requests_total{endpoint="invocations",status="200"}'
    champion_rows = 'ml_platform_predictions_total{model_version="1",variant="champion"}'
    assert _metric(metrics, invocations_ok) - _metric(before, invocations_ok) == 5
    assert _metric(metrics, champion_rows) - _metric(before, champion_rows) == 30
    assert "ml_platform_request_latency_seconds_bucket" in metrics
    assert 'ml_platform_model_version{alias="champion"} 1.0' in metrics

    # Bearer token: the scoring endpoints need it; probes do not.
    bare = httpx.Client(base_url=svc.url)
    assert bare.post("/predict", json={"records": rows}).status_code == 401
    assert bare.get("/ready").status_code == 200
    bare.close()


def _metric(text: str, series: str) -> float:
    """The value of one Prometheus series in /metrics text (0 when it has no sample yet)."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


BAD_RECORDS = [
    (lambda r: r.pop("tenure_months"), "record 0: missing column 'tenure_months'"),
    (lambda r: r.update(tenure_months="ten"), "column 'tenure_months': expected an integer, got 'ten'"),
    (lambda r: r.update(contract="weekly"), "column 'contract': unknown category 'weekly'"),
    (lambda r: r.update(monthly_charges=None), "column 'monthly_charges' may not be null"),
    (lambda r: r.update(region=3), "column 'region': expected a string, got 3"),
]


def test_a_bad_record_gets_a_400_naming_the_field(shared):
    svc, rows = shared
    for change, message in BAD_RECORDS:
        bad = [dict(rows[0]), rows[1]]
        change(bad[0])
        response = svc.client.post("/invocations", json={"dataframe_records": bad})
        assert response.status_code == 400, (message, response.text)
        assert response.json()["error_code"] == "BAD_REQUEST"
        assert message in response.json()["message"]
        # The service keeps serving.
        assert svc.client.post("/invocations", json={"dataframe_records": bad[1:]}).status_code == 200


def test_malformed_bodies_get_4xx_and_the_service_keeps_serving(shared):
    svc, rows = shared
    rows = rows[:1]
    c = svc.client
    json_type = {"Content-Type": "application/json"}
    too_big = b'{"dataframe_records": [' + b" " * 1_048_576 + b"]}"  # over the default 1 MiB limit
    cases = [
        (c.post("/invocations", content=b"", headers=json_type), 400, "empty request body"),
        (c.post("/invocations", content=b'{"dataframe_records": [', headers=json_type), 400, "malformed JSON"),
        (c.post("/invocations", json={"rows": rows}), 400, "expected exactly one of the keys"),
        (c.post("/invocations", json={"dataframe_records": []}), 400, "no rows to score"),
        (c.post("/invocations", json={"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}), 400,
         "data[0] must be a list of 1 values"),
        (c.post("/invocations", content=json.dumps({"dataframe_records": rows}), headers={"Content-Type": "text/plain"}),
         415, "content type must be application/json"),
        (c.post("/invocations", content=too_big, headers=json_type), 413, "over the limit of 1048576 bytes"),
        (c.post("/predict", json={"entity_ids": ["no-such-customer"]}), 404,
         "1 id(s) not in the online table 'churn_features': 'no-such-customer'"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, (message, response.text)
        assert message in response.json()["message"], response.text
    assert c.post("/invocations", json={"dataframe_records": rows}).status_code == 200
    assert c.get("/ready").status_code == 200


# -- online features ---------------------------------------------------------------------------------
def test_online_features_serve_the_offline_row(shared):
    """A request with only the entity id scores exactly what the offline feature row scores."""
    svc, rows = shared
    rows = rows[:20]
    by_id = svc.client.post("/predict", json={"entity_ids": [r["customer_id"] for r in rows]}).json()
    by_row = svc.client.post("/predict", json={"records": rows}).json()
    record_form = svc.client.post("/predict", json={"records": [{"customer_id": rows[0]["customer_id"]}]}).json()
    assert [p["score"] for p in by_id["predictions"]] == [p["score"] for p in by_row["predictions"]]
    assert [p["entity_id"] for p in by_id["predictions"]] == [r["customer_id"] for r in rows]
    assert record_form["predictions"][0]["score"] == by_row["predictions"][0]["score"]


# -- prediction log ------------------------------------------------------------------------------------
def test_every_prediction_is_logged_and_a_clean_shutdown_loses_none(served, home, tmp_path):
    rows = feature_rows(home, 50)
    config = serving_config(tmp_path, {"log_flush_seconds": 3600})  # only the shutdown flush writes
    with running_service(config, home) as svc:
        answered = []
        for start in range(0, 50, 5):
            answered += svc.client.post("/predict", json={"records": rows[start:start + 5]}).json()["predictions"]
    assert svc.process.returncode in (0, -15), svc.log()  # uvicorn re-raises SIGTERM after its clean shutdown
    logged = Warehouse().query(f"select * from {PREDICTION_LOG_TABLE} order by logged_at")
    assert sorted(logged["prediction_id"]) == sorted(p["prediction_id"] for p in answered)
    first = logged.set_index("prediction_id").loc[answered[0]["prediction_id"]]
    assert (first["entity_id"], first["model_version"], first["variant"]) == (rows[0]["customer_id"], "1", "champion")
    assert first["score"] == pytest.approx(answered[0]["score"])
    assert first["latency_ms"] > 0
    assert json.loads(first["features"])["tenure_months"] == rows[0]["tenure_months"]


# -- hot swap and rollback under load --------------------------------------------------------------------
def test_promotion_and_rollback_under_load_fail_no_request(served, home):
    rows = feature_rows(home, 200)
    v2 = served["versions"]["plain"]
    governance = Governance(registry=ModelRegistry(), warehouse=Warehouse())
    with running_service(served["config"], home) as svc:
        stop = threading.Event()
        seen: list[tuple[int, str]] = []
        failures: list[str] = []

        def client(k: int) -> None:
            with httpx.Client(base_url=svc.url, timeout=30) as c:
                i = k
                while not stop.is_set():
                    try:
                        r = c.post("/invocations", json={"dataframe_records": [rows[i % len(rows)]]})
                        r_version = c.post("/predict", json={"records": [rows[i % len(rows)]]})
                        if r.status_code != 200 or r_version.status_code != 200:
                            failures.append(f"{r.status_code} {r_version.status_code} {r_version.text[:200]}")
                        else:
                            seen.append((len(seen), r_version.json()["predictions"][0]["model_version"]))
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                    i += 4

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        try:
            svc.wait_for(lambda: len(seen) > 50, what="traffic")
            governance.promote("churn", v2, actor="test", reason="hot swap under load", evidence={})
            mark = len(seen)
            svc.wait_for(lambda: any(v == v2 for _, v in seen[mark:]), what="the new champion answering")
            svc.wait_for(lambda: len({v for _, v in seen[-40:]}) == 1 and seen[-1][1] == v2, what="all on v2")
            governance.rollback("churn", actor="test", reason="rollback under load")
            mark = len(seen)
            svc.wait_for(lambda: len(seen) > mark + 40 and {v for _, v in seen[-40:]} == {"1"}, what="all on v1")
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert failures == []
        assert svc.version()["loaded_versions"] == ["1", v2] or set(svc.version()["loaded_versions"]) == {"1", v2}


# -- canary and shadow ---------------------------------------------------------------------------------------
def _entities(n: int) -> list[str]:
    return [f"canary-{i:05d}" for i in range(n)]


def test_canary_routes_a_stable_share_by_entity(served, home, tmp_path):
    rows = feature_rows(home, 100)
    # Guardrails wide open: this test is about routing (test_canary_rolls_back... covers the breaches).
    config = serving_config(tmp_path, {"canary": {"mode": "canary", "steps": [30, 100], "step_seconds": 3600,
                                                  "guardrails": {"max_score_psi": 50, "latency_slack_ms": 5000}}})
    ModelRegistry().set_alias("churn", "challenger", served["versions"]["plain"])
    with running_service(config, home) as svc:
        assert svc.version()["canary"]["share_percent"] == 30
        entities = _entities(2000)
        records = [{**rows[i % len(rows)], "customer_id": e} for i, e in enumerate(entities)]
        variants = {}
        for start in range(0, len(records), 100):
            for p in svc.client.post("/predict", json={"records": records[start:start + 100]}).json()["predictions"]:
                variants[p["entity_id"]] = p["variant"]
        again = svc.client.post("/predict", json={"records": records[:100]}).json()["predictions"]
        # `ml-platform check`'s rows (its header) go to the champion whatever the canary routes, logged apart.
        checked = svc.client.post("/predict", json={"records": records[:100]}, headers={CHECK_HEADER: "1"}).json()
        assert {(p["variant"], p["model_version"]) for p in checked["predictions"]} == {("check", "1")}
        assert svc.version()["canary"]["status"] == "running"
    share = Counter(variants.values())["challenger"] / len(variants)
    assert 0.26 <= share <= 0.34, share
    assert all(variants[e] == ("challenger" if goes_to_challenger(e, 30) else "champion") for e in entities)
    assert [p["variant"] for p in again] == [variants[e] for e in entities[:100]]  # a customer sees one variant


@pytest.mark.parametrize("fault", ["latency", "errors"])
def test_canary_rolls_back_on_a_guardrail_breach(served, home, tmp_path, webhook_receiver, fault):
    rows = feature_rows(home, 100)
    version = served["versions"]["slow" if fault == "latency" else "failing"]
    config = serving_config(tmp_path, {"canary": {"mode": "canary", "steps": [50, 100], "step_seconds": 3600,
                                                  "guardrails": {"min_requests": 20}}})
    ModelRegistry().set_alias("churn", "challenger", version)
    env = {"ML_PLATFORM_ALERT_WEBHOOK_URL": webhook_receiver.url}
    if fault == "errors":
        env[FAIL_ENV] = "1"
    with running_service(config, home, env=env) as svc:
        answers = []
        for i in range(150):
            r = svc.client.post("/predict", json={"records": [{**rows[i % 100], "customer_id": f"c-{i}"}]})
            assert r.status_code == 200, r.text  # a failing challenger never fails a request
            answers.append(r.json()["predictions"][0])
            if svc.version()["canary"]["status"] == "rolled_back":
                break
        state = svc.wait_for(lambda: (s := svc.version()["canary"])["status"] == "rolled_back" and s,
                             what="canary rollback")
        after = svc.client.post("/predict", json={"records": [{**r, "customer_id": f"d-{i}"} for i, r in
                                                             enumerate(rows)]}).json()["predictions"]
        svc.wait_for(lambda: webhook_receiver.messages, what="the alert")
        svc.wait_for(lambda: ModelRegistry().version("churn", version).tags.get("canary"), what="the version tag")
    assert state["share_percent"] == 0
    assert ("latency p99" if fault == "latency" else "error rate") in " ".join(state["reasons"])
    assert {p["variant"] for p in after} == {"champion"}  # the champion takes all traffic
    if fault == "errors":
        assert {p["variant"] for p in answers} == {"champion"}  # the challenger's rows were answered by the champion
    audit = Warehouse().query(f"select * from {AUDIT_TABLE} where action like 'canary%' order by seq")
    assert list(audit["action"]) == ["canary_started", "canary_rollback"]
    assert audit.iloc[-1]["version"] == version and audit.iloc[-1]["actor"] == "ml-platform-serve"
    evidence = json.loads(audit.iloc[-1]["evidence"])
    assert evidence["challenger_rows"] >= 20 and evidence["reasons"]
    assert "canary rolled back" in webhook_receiver.messages[0]["text"]
    alerts = Warehouse().query(f"select * from {ALERTS_TABLE} where kind = 'canary_rollback'")
    assert len(alerts) == 1 and bool(alerts.iloc[0]["delivered"])
    assert ModelRegistry().version("churn", version).tags["canary"] == "rolled_back"


def test_canary_ramps_through_its_steps_while_guardrails_hold(served, home, tmp_path):
    rows = feature_rows(home, 100)
    config = serving_config(tmp_path, {"canary": {"mode": "canary", "steps": [20, 60, 100], "step_seconds": 1,
                                                  "guardrails": {"min_requests": 20, "max_score_psi": 5.0,
                                                                 "latency_slack_ms": 500}}})
    ModelRegistry().set_alias("churn", "challenger", served["versions"]["plain"])
    with running_service(config, home) as svc:
        shares = set()
        i = 0
        # Bounded by time, not by requests: each step lasts at least step_seconds, however fast requests are.
        deadline = time.monotonic() + 60
        while svc.version()["canary"]["status"] == "running" and time.monotonic() < deadline:
            records = [{**rows[(i + k) % 100], "customer_id": f"r-{i + k}"} for k in range(20)]
            svc.client.post("/predict", json={"records": records})
            shares.add(svc.version()["canary"]["share_percent"])
            i += 20
        final = svc.version()["canary"]
    assert final["status"] == "passed" and final["share_percent"] == 100
    assert {20, 60} <= shares
    audit = Warehouse().query(f"select action from {AUDIT_TABLE} where action like 'canary%' order by seq")
    assert list(audit["action"]) == ["canary_started", "canary_step", "canary_passed"]


def test_shadow_scores_every_request_but_only_the_champion_answers(served, home, tmp_path):
    rows = feature_rows(home, 40)
    config = serving_config(tmp_path, {"canary": {"mode": "shadow"}})
    challenger = served["versions"]["plain"]
    ModelRegistry().set_alias("churn", "challenger", challenger)
    with running_service(config, home) as svc:
        out = []
        for start in range(0, 40, 4):
            out += svc.client.post("/predict", json={"records": rows[start:start + 4]}).json()["predictions"]
        state = svc.wait_for(lambda: (c := svc.version()["canary"])["shadow"]["rows_compared"] == 40 and c,
                             what="all 40 shadow scores compared")
    assert state["status"] == "shadow" and 0 < state["shadow"]["mean_abs_score_diff"] < 0.5
    assert {(p["variant"], p["model_version"]) for p in out} == {("champion", "1")}
    logged = Warehouse().query(f"select * from {PREDICTION_LOG_TABLE}")
    shadow = logged[logged["variant"] == "shadow"]
    assert set(shadow["prediction_id"]) == {p["prediction_id"] for p in out}  # paired with the answers
    assert set(shadow["model_version"]) == {challenger}


# -- the MLflow client contract ----------------------------------------------------------------------------
def test_mlflow_clients_get_the_same_predictions_as_from_mlflow_models_serve(served, home, tmp_path):
    """Requests built as MLflow's docs show (curl bodies in the four formats) and MLflow's own Python
    scoring client, sent to `mlflow models serve` and to our service for the same version."""
    import subprocess
    import sys

    import pandas as pd
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    from ml_platform_tests.serving_support import free_port

    rows = feature_rows(home, 30)
    columns = [c for c in rows[0] if c != "customer_id"]
    frame = pd.DataFrame(rows)[columns]
    docs_bodies = [
        {"dataframe_split": frame.to_dict(orient="split", index=False)},
        {"dataframe_records": frame.to_dict(orient="records")},
        {"instances": frame.to_dict(orient="records")},
        {"inputs": frame.to_dict(orient="list")},
    ]
    port = free_port()
    import os

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # it execs `uvicorn`
    mlflow_log = tmp_path / "mlflow-serve.log"
    with open(mlflow_log, "w") as log:
        mlflow_server = subprocess.Popen(  # its own process group: it runs uvicorn as a child
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/churn@champion", "--env-manager",
             "local", "-h", "127.0.0.1", "-p", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        theirs = ScoringServerClient("127.0.0.1", port)
        try:
            theirs.wait_server_ready(timeout=120, scoring_server_proc=mlflow_server)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}:\n{mlflow_log.read_text()[-3000:]}") from None
        with running_service(served["config"], home) as svc:
            ours = ScoringServerClient("127.0.0.1", int(svc.url.rsplit(":", 1)[1]))
            for body in docs_bodies:
                expected = httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=60)
                got = svc.client.post("/invocations", json=body)
                assert expected.status_code == got.status_code == 200, (expected.text, got.text)
                assert got.json() == expected.json()
            # MLflow's Python client (it sends dataframe_split and parses {"predictions": ...}).
            assert ours.invoke(frame).get_predictions().equals(theirs.invoke(frame).get_predictions())
    finally:
        import signal

        os.killpg(mlflow_server.pid, signal.SIGTERM)
        try:
            mlflow_server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(mlflow_server.pid, signal.SIGKILL)
            mlflow_server.wait()
