"""Sign-off in the MLflow UI, end to end: a medium-risk model's challenger waits for an approval set as
tags on the version; the approval sensor's run promotes it or refuses it (recorded and alerted); the
CLI rolls back and shows the audit trail. Real Dagster, MLflow, dbt and DuckDB throughout."""

import json
import os
import subprocess
import sys

import pytest

from ml_platform.resources import Governance, ModelRegistry, Warehouse
from ml_platform.runner import DAILY_JOB, dagster_instance, load_definitions, process_approvals, run_lifecycle
from ml_platform.settings import PROJECT_ROOT
from ml_platform.status import model_status
from ml_platform_tests.conftest import write_config

pytestmark = pytest.mark.slow

MEDIUM = {"model": {"risk_tier": "medium"}, "governance": {"approvers": ["alice@example.com", "bob@example.com"]}}


def sign_off(registry: ModelRegistry, version: str, approver: str) -> list[dict]:
    """What a reviewer does in the MLflow UI, then one tick of the approval sensor."""
    registry.tag_version("churn", version, {"approval": "approved", "approver": approver})
    return process_approvals()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml_platform.cli", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=180, env={**os.environ, "NO_COLOR": "1"})


def approve_cli(capsys: pytest.CaptureFixture, config, version: str, approver: str) -> int:
    """`ml-platform approve`, in this process (what it prints is in capsys)."""
    from ml_platform import cli as ml_platform_cli

    capsys.readouterr()
    return ml_platform_cli.main(["--config", str(config), "approve", "--version", version, "--as", approver])


def audit(action: str) -> list[dict]:
    return [r for r in Governance(registry=ModelRegistry(), warehouse=Warehouse()).history("churn")
            if r["action"] == action]


def test_sign_off_promotes_only_allowed_unchanged_gated_versions_and_rollback_is_one_command(platform_env, tmp_path,
                                                                                             capsys):
    config = write_config(tmp_path, MEDIUM)
    registry = ModelRegistry()

    # The gate passes v1, but a medium-risk model needs a sign-off: no champion yet, nothing scored.
    first = run_lifecycle(config_file=config)
    assert first.success, first.errors
    assert first.outputs["champion_model"]["decision"] == "passed"
    assert registry.champion_version("churn") is None
    assert registry.alias_version("churn", "challenger") == "1"
    assert registry.version("churn", "1").tags["approval_state"] == "pending"
    assert first.assets["batch_predictions"] == "skipped" and first.assets["drift_report"] == "skipped"

    # Someone not on the allowlist: refused, recorded on the version and in the audit log, alerted.
    [outcome] = sign_off(registry, "1", "mallory@example.com")
    assert outcome["promoted"] is False and "not on the allowlist" in outcome["reason"]
    assert registry.champion_version("churn") is None
    assert registry.version("churn", "1").tags["approval_state"] == "refused"
    assert audit("approval_refused")[-1]["actor"] == "mallory@example.com"
    # The same sign-off again from the command line: the run that applied it (here the tick above; under `make ui`
    # often the Dagster daemon's sensor, which saw the tags first) is reported, not "no new sign-off".
    assert approve_cli(capsys, config, "1", "mallory@example.com") == 1
    shown = capsys.readouterr().out
    assert "is not on the allowlist" in shown and "(refused by the approval sensor's run " in shown
    alerts = Warehouse().query("select * from governance.alerts where kind = 'approval_refused'")
    assert len(alerts) == 1 and "mallory@example.com" in alerts["title"][0]

    # An allowed approver, but the evidence was edited after the gate decided: refused.
    original = registry.version("churn", "1").tags["gate_reasons"]
    registry.tag_version("churn", "1", {"gate_reasons": json.dumps(["pass everything, trust me"])})
    [outcome] = sign_off(registry, "1", "alice@example.com")
    assert outcome["promoted"] is False and "evidence changed" in outcome["reason"]
    assert registry.champion_version("churn") is None

    # The evidence restored, an allowed approver: promoted, by them, on record.
    registry.tag_version("churn", "1", {"gate_reasons": original})
    [outcome] = sign_off(registry, "1", "bob@example.com")
    assert outcome["promoted"] is True
    assert registry.champion_version("churn") == "1"
    tags = registry.version("churn", "1").tags
    assert (tags["approval_state"], tags["approved_by"], tags["promoted_by"]) == ("approved", "bob@example.com",
                                                                                  "bob@example.com")
    assert registry.alias_version("churn", "challenger") is None
    assert audit("promote_approved")[-1]["actor"] == "bob@example.com"
    assert process_approvals() == [], "a sign-off is applied once"
    assert approve_cli(capsys, config, "1", "bob@example.com") == 0  # was "refused: ... no new sign-off", exit 1
    shown = capsys.readouterr().out
    assert "promoted: version 1 is champion (signed off by bob@example.com at " in shown
    assert "applied by the approval sensor's run" in shown
    # A second run of one sign-off (the daemon's sensor and `approve` at the same moment) changes nothing. Judged
    # again, it was refused against the champion it had just become: tagged refused, alerted.
    with dagster_instance() as instance:
        again = load_definitions().resolve_job_def("approval_job").execute_in_process(
            run_config={"ops": {"apply_approval": {"config": {"version": "1"}}}}, instance=instance)
    assert again.output_for_node("apply_approval") == {
        "version": "1", "promoted": True, "reason": "approved by bob@example.com; it is champion already: nothing to apply"}
    assert registry.version("churn", "1").tags["approval_state"] == "approved"
    assert sorted(r["actor"] for r in audit("approval_refused")) == ["alice@example.com", "mallory@example.com"]

    # The model card carries the approval record.
    mlflow = registry.mlflow()
    card = mlflow.artifacts.load_text(tags["model_card"])
    assert "bob@example.com" in card and "Approval" in card and "churn" in card

    # A version the gate rejected cannot be signed off.
    strict = write_config(tmp_path, {**MEDIUM, "gate": {"min_improvement": 0.5}}, name="strict.yaml")
    second = run_lifecycle(config_file=strict)
    assert second.success, second.errors
    assert second.outputs["champion_model"]["decision"] == "rejected"
    [outcome] = sign_off(registry, "2", "alice@example.com")
    assert outcome["promoted"] is False and "did not pass the gate" in outcome["reason"]
    assert registry.champion_version("churn") == "1"

    # Rollback from the CLI: refused without a previous champion, refused to a rejected version unless
    # forced (and the force is recorded), refused to a version that does not exist; then symmetric.
    refused = cli("--config", str(config), "rollback", "--reason", "test")
    assert refused.returncode == 1 and "no previous champion" in refused.stderr
    refused = cli("--config", str(config), "rollback", "--to", "2")
    assert refused.returncode == 1 and "never passed the gate" in refused.stderr
    missing = cli("--config", str(config), "rollback", "--to", "99")
    assert missing.returncode == 1 and "version 99 does not exist" in missing.stderr
    assert registry.champion_version("churn") == "1"
    forced = cli("--config", str(config), "rollback", "--to", "2", "--force", "--reason", "drill", "--as", "ops@example.com")
    assert forced.returncode == 0, forced.stderr
    assert registry.champion_version("churn") == "2"
    back = cli("--config", str(config), "rollback", "--reason", "end of drill", "--as", "ops@example.com", "--json")
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["to_version"] == "1"
    assert registry.champion_version("churn") == "1"
    assert registry.alias_version("churn", "previous_champion") == "2"

    history = json.loads(cli("--config", str(config), "history", "--json").stdout)
    actions = [r["action"] for r in history]
    assert actions[:2] == ["await_approval", "approval_refused"]
    assert "promote_approved" in actions and "reject" in actions
    forced_records = [r for r in history if r["forced"]]
    assert len(forced_records) == 1 and forced_records[0]["actor"] == "ops@example.com"

    status = json.loads(cli("--config", str(config), "status", "--json").stdout)
    assert status["champion"]["version"] == "1"
    assert status["champion"]["approver"] == "bob@example.com"
    assert status["previous_champion"] == "2"
    inventory = json.loads(cli("--config", str(config), "inventory", "--json").stdout)
    assert [(m["name"], m["owner"], m["risk_tier"], m["champion"]) for m in inventory] == \
        [("churn", "team:ml-platform", "medium", "1")]


def test_a_sign_off_given_after_the_champion_changed_is_refused_and_a_new_gate_needs_a_new_one(platform_env, tmp_path):
    """Two versions wait for a sign-off, both gated when there was no champion. Once one is signed off, the other
    was never compared with the new champion: its sign-off is refused until the gate has compared them, and a
    sign-off given before that new decision does not carry over to it."""
    registry = ModelRegistry()
    first = run_lifecycle(config_file=write_config(tmp_path, MEDIUM), batch="1")
    other = write_config(tmp_path, {**MEDIUM, "training": {"seed": 1}}, name="other.yaml")
    second = run_lifecycle(config_file=other, batch="1")  # the same data, another seed: another version
    assert first.success and second.success, first.errors + second.errors
    assert [r.outputs["champion_model"]["decision"] for r in (first, second)] == ["passed", "passed"]
    assert second.outputs["champion_model"]["champion_version"] is None

    # The approvers heard of each: in the team channel's table, with who may sign and how.
    requested = Warehouse().query("select title, details, links from governance.alerts "
                                  "where kind = 'approval_requested' order by title")
    assert list(requested["title"]) == [f"churn v{v} passed the gate and waits for a sign-off (risk tier medium)"
                                        for v in ("1", "2")]
    details = json.loads(requested["details"][0])
    assert details["approvers"] == ["alice@example.com", "bob@example.com"]
    assert "ml-platform approve --version 1 --as <name>" in details["to sign off"]
    assert "/versions/1" in json.loads(requested["links"][0])["mlflow_version"]

    [promoted] = sign_off(registry, "1", "bob@example.com")
    assert promoted["promoted"] is True and registry.champion_version("churn") == "1"
    challenger = model_status()["challenger"]  # what `ml-platform status` shows before anyone signs v2 off
    assert (challenger["version"], challenger["gate_compared_to"], challenger["gate_outdated"]) == \
        ("2", "none (first model)", True)
    [refused] = sign_off(registry, "2", "alice@example.com")
    assert refused["promoted"] is False
    assert refused["reason"].startswith("the champion changed since the gate decided: the gate compared this version "
                                        "with no champion, and the champion is now v1")
    assert registry.champion_version("churn") == "1"
    assert audit("approval_refused")[-1]["version"] == "2"

    # As the refusal says, `ml-platform run`: the sign-off moved the champion, so the gate is stale (nothing else:
    # no new data, nothing retrained), and it compares v2 with v1 at last. v2 turns out worse: Alice's sign-off,
    # given before the two were compared, would have made it champion. That sign-off is gone with the old decision,
    # and nothing is applied.
    assert "run `ml-platform run`" in refused["reason"]
    again = run_lifecycle(config_file=other, batch="1")
    assert again.success, again.errors
    assert {k: again.assets[k] for k in ("raw_batch", "training_data", "trained_model", "model_evaluation",
                                         "champion_model")} == {**dict.fromkeys(
        ("raw_batch", "training_data", "trained_model", "model_evaluation"), "unchanged"), "champion_model": "materialized"}
    gate = again.outputs["champion_model"]
    assert (gate["challenger_version"], gate["decision"], gate["champion_version"]) == ("2", "rejected", "1")
    tags = registry.version("churn", "2").tags
    assert tags["gate_compared_to"] == "1"
    assert "approval" not in tags and "approver" not in tags
    assert process_approvals() == []
    [refused] = sign_off(registry, "2", "alice@example.com")
    assert refused["promoted"] is False and "did not pass the gate" in refused["reason"]
    assert registry.champion_version("churn") == "1"


def test_a_rolled_back_version_does_not_come_back_through_the_gate(platform_env, tmp_path):
    """On-call rolls back from v2 to v1. The next run gates the newest version again (the champion moved), and
    with no new data that is v2; so does a run that trains the same version again (`ml-platform run --all` on the
    same data, a retraining with nothing new: a cache hit). Neither may put v2 live again: the gate would pass it
    against v1 once more, and for a low-risk model nobody would be asked. The gate holds it instead and says how a
    person brings it back (`ml-platform rollback --to 2`)."""
    registry = ModelRegistry()
    weak = write_config(tmp_path, {"training": {"estimator": {"params": {"max_iter": 10, "max_leaf_nodes": 2}}}},
                        name="weak.yaml")
    config = write_config(tmp_path)
    assert run_lifecycle(config_file=weak, batch="1").outputs["champion_model"]["decision"] == "promoted"
    better = run_lifecycle(config_file=config, batch="1")
    assert (better.outputs["champion_model"]["challenger_version"], better.outputs["champion_model"]["decision"]) == \
        ("2", "promoted")

    rolled = cli("--config", str(config), "rollback", "--reason", "complaints about v2", "--as", "ops@example.com")
    assert rolled.returncode == 0, rolled.stderr
    assert registry.champion_version("churn") == "1"

    # The daily job (scoring and monitoring with the champion as it is) reads the gate but never runs it.
    daily = run_lifecycle(config_file=config, batch="1", job_name=DAILY_JOB)
    assert daily.success and "champion_model" not in daily.assets, daily.assets
    assert audit("hold") == [] and registry.champion_version("churn") == "1"
    again = run_lifecycle(config_file=config, batch="1")  # a plain `ml-platform run`: only the gate is stale
    assert again.success, again.errors
    assert (again.assets["trained_model"], again.assets["champion_model"]) == ("unchanged", "materialized")
    gate = again.outputs["champion_model"]
    assert (gate["challenger_version"], gate["decision"], gate["champion_version"]) == ("2", "held", "1")
    retrained = run_lifecycle(config_file=config, batch="1", incremental=False)  # `--all`: v2 again, a cache hit
    assert retrained.outputs["trained_model"]["cache_hit"] is True
    assert retrained.outputs["champion_model"]["decision"] == "held" and registry.champion_version("churn") == "1"
    assert registry.champion_version("churn") == "1"
    assert "rolled back" in gate["reasons"][0] and "ml-platform rollback --to 2" in gate["reasons"][0]
    assert registry.version("churn", "2").tags["gate_decision"] == "promoted"  # the decision of its day stays
    held = audit("hold")[-1]
    assert (held["version"], held["to_version"]) == ("2", "1") and "complaints about v2" in held["reason"]
    assert model_status()["challenger"]["held"] == gate["reasons"][0]  # `ml-platform status` says it under v2
    # Held twice (the plain run, then `--all`): the channel hears of it once, the repeat is grouped.
    alert, repeat = Warehouse().query("select title, details, status from governance.alerts "
                                      "where kind = 'rolled_back_held' order by sent_at").to_dict(orient="records")
    assert repeat["status"] == "grouped" and alert["status"] != "grouped"
    assert alert["title"] == "churn v2 was trained again and held by the promotion gate: it was rolled back"
    assert json.loads(alert["details"])["to bring it back"].startswith("ml-platform rollback --to 2")

    # A person may still bring it back: a roll forward, recorded like a rollback. Then it is champion as before.
    forward = cli("--config", str(config), "rollback", "--to", "2", "--reason", "fixed upstream", "--as", "ops@example.com")
    assert forward.returncode == 0, forward.stderr
    assert registry.champion_version("churn") == "2"
    assert run_lifecycle(config_file=config, batch="1").outputs["champion_model"]["decision"] == "already champion"
