"""The demo scenario behind `make demo`: daily batches through the whole lifecycle, then a summary.

The first days run the full lifecycle: ingest the next daily batch of the demo generator, validate
it, rebuild the features, train a challenger and put it through the promotion gate, score the batch
and monitor it. The demo model is risk tier medium, so a challenger that passes the gate waits for a
sign-off: the demo gives it as the first configured approver, exactly as a reviewer would in the
MLflow UI (tags on the version), and the approval sensor's run promotes it.

The last day is a production day: the daily job (what the daily schedule runs) ingests, validates,
scores and monitors with no training. The default config injects drift from batch 4, so its drift
report flags it; the drift sensor's tick then starts one gated retraining, whose challenger goes
through the gate and the sign-off. At the end a rollback drill moves the champion back one version
and forward again, and the summary shows the chain: drift evidence → retraining run → gate → champion.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from ml_platform import settings
from ml_platform.config import load_config
from ml_platform.resources import Alerts, Governance, ModelRegistry, Warehouse
from ml_platform.runner import (
    DAILY_JOB,
    LIFECYCLE_JOB,
    RunProgress,
    process_approvals,
    run_lifecycle,
    tick_sensor,
)
from ml_platform.status import model_status, monitoring_status


def run_demo(*, batches: int = 4, as_json: bool = False, progress: Callable[[RunProgress], None] | None = None) -> int:
    config = load_config(settings.config_path())
    registry = ModelRegistry()
    warehouse = Warehouse()
    governance = Governance(registry=registry, warehouse=warehouse, alerts=Alerts(warehouse=warehouse))
    say = (lambda *_: None) if as_json else (lambda text: print(text, flush=True))
    runs = []

    def sign_off(gate: dict) -> dict | None:
        """As a reviewer in the MLflow UI: approval tags on the version, then the approval sensor's tick."""
        if gate.get("decision") != "passed":
            return None
        registry.tag_version(config.model.name, gate["challenger_version"],
                             {"approval": "approved", "approver": config.governance.approvers[0]})
        return next((o for o in process_approvals() if o["version"] == gate["challenger_version"]), None)

    def outcome(gate: dict, approval: dict | None) -> str:
        if not gate:
            return "no training"
        text = f"version {gate['challenger_version']} {gate['decision']}"
        if approval and approval["promoted"]:
            text += f", signed off by {approval['reason'].removeprefix('approved by ')} → champion"
        elif approval:
            text += f", sign-off refused: {approval['reason']}"
        return text

    for i in range(batches):
        started = time.perf_counter()
        daily = batches > 1 and i == batches - 1  # the last day is a production day: no training
        result = run_lifecycle(quiet=True, job_name=DAILY_JOB if daily else LIFECYCLE_JOB, progress=progress)
        gate = result.outputs.get("champion_model") or {}
        drift = result.outputs.get("drift_report") or {}
        batch = (result.outputs.get("raw_batch") or {}).get("batch_id", "?")
        run = {"batch": batch, "job": result.job_name, "run_id": result.run_id, "success": result.success,
               "materialized": sum(s == "materialized" for s in result.assets.values()),
               "assets": len(result.assets), "gate": gate, "drift": drift, "errors": result.errors,
               "approval": sign_off(gate)}
        run["seconds"] = round(time.perf_counter() - started, 1)
        runs.append(run)
        say(f"[{i + 1}/{batches}] {batch} ({result.job_name} job): {'ok' if result.success else 'FAILED'} in "
            f"{run['seconds']}s — {run['materialized']}/{run['assets']} assets materialized; "
            f"{outcome(gate, run['approval'])}; drift {'DETECTED' if drift.get('dataset_drift') else 'none'}")
        for error in result.errors:
            say(f"    error: {error}")
        if not result.success:
            say(f"    full log: {result.log_file}")
            break

    # Monitoring closes the loop: a drifted report makes the drift sensor start one gated retraining.
    retraining = None
    if runs and runs[-1]["success"] and runs[-1]["drift"].get("dataset_drift"):
        started = time.perf_counter()
        for executed in tick_sensor("drift_sensor", progress=progress):
            gate = executed.output_for_node("champion_model") if executed.success else {}
            retraining = {"run_id": executed.run_id, "success": executed.success,
                          "run_key": executed.dagster_run.tags.get("dagster/run_key"),
                          "gate": gate, "approval": sign_off(gate) if gate else None}
        if retraining:
            say(f"drift sensor → retraining run {retraining['run_id'][:8]}: {'ok' if retraining['success'] else 'FAILED'}"
                f" in {time.perf_counter() - started:.1f}s — {outcome(retraining['gate'], retraining['approval'])}")

    drill = []
    if all(r["success"] for r in runs) and registry.alias_version(config.model.name, "previous_champion"):
        back = governance.rollback(config.model.name, actor="demo", reason="rollback drill: back one version")
        forth = governance.rollback(config.model.name, actor="demo", reason="rollback drill: and forward again")
        drill = [back, forth]
        say(f"rollback drill: champion {back['from_version']} → {back['to_version']} → {forth['to_version']}, "
            "one command each (`ml-platform rollback`), no retraining")

    status = model_status()
    status["monitoring"] = monitoring_status()
    history = governance.history(config.model.name)
    if as_json:
        print(json.dumps({"runs": runs, "retraining": retraining, "rollback_drill": drill, "status": status,
                          "audit_trail": history}, indent=2, default=str))
    else:
        _print_summary(runs, retraining, status, history)
    ok = runs and all(r["success"] for r in runs) and (retraining is None or retraining["success"])
    return 0 if ok else 1


def _print_summary(runs: list[dict], retraining: dict | None, status: dict, history: list[dict]) -> None:
    paths = settings.platform_paths()
    print("\n=== ml_platform demo summary ===")
    print(f"runs: {len(runs)}; assets materialized per run: "
          + ", ".join(f"{r['materialized']}/{r['assets']}" for r in runs)
          + " (scoring and drift wait while there is no champion)")
    champ = status["champion"]
    if champ:
        m = champ["metrics"]
        print(f"champion: {status['model']} version {champ['version']} (risk tier {status['risk_tier']}) — "
              f"roc_auc {m.get('roc_auc', float('nan')):.4f}, f1 {m.get('f1', float('nan')):.4f}, "
              f"ece {m.get('ece', float('nan')):.4f}, latency p99 {m.get('latency_p99_ms', float('nan')):.2f} ms")
        print(f"  approved by {champ['approver']}; data snapshot "
              f"{champ['lineage'].get('data_snapshot_sha256', '-')[:16]}…, feature code "
              f"{champ['lineage'].get('feature_code_version', '-')[:16]}…, git {champ['lineage'].get('git_commit', '-')[:12]}")
    print("gate decisions:")
    for r in runs:
        gate = r["gate"]
        if gate:
            print(f"  {r['batch']}: version {gate['challenger_version']} {gate['decision']}")
            for reason in gate["reasons"]:
                print(f"      {reason}")
    last = runs[-1]["drift"] if runs else {}
    if last:
        drifted = [c for c, v in last["columns"].items() if v["drifted"]]
        print(f"drift on the newest batch ({runs[-1]['batch']}): "
              f"{'DETECTED' if last['dataset_drift'] else 'none'} — {len(drifted)}/{len(last['columns'])} features "
              f"drifted ({', '.join(drifted) or 'none'})")
        print(f"  report: {last['report_path']}")
    if last and retraining:
        gate = retraining["gate"]
        print("monitoring → retraining chain:")
        print(f"  drift evidence: {last['drifted_share']:.0%} of features drifted on {runs[-1]['batch']} "
              f"(threshold {last['share_threshold']:.0%}), MLflow run {last.get('mlflow_run_id', '-')[:12]}")
        print(f"  → drift_sensor started retraining run {retraining['run_id']} (run key {retraining['run_key']})")
        if gate:
            print(f"  → gate: version {gate['challenger_version']} {gate['decision']}")
            for reason in gate["reasons"]:
                print(f"      {reason}")
        approval = retraining["approval"]
        if approval:
            print(f"  → {approval['reason']}" + (f" → champion v{approval['version']}" if approval["promoted"] else ""))
        print(f"  champion now: v{status['champion']['version'] if status['champion'] else 'none'}")
    print("audit trail (`ml-platform history`):")
    for h in history:
        print(f"  {h['seq']:>3} {h['action']:<18} v{h['version'] or '-':<3} champion {h['from_version'] or '-'} → "
              f"{h['to_version'] or '-'} by {h['actor']}")
    url = settings.database_url()
    print(f"state: {paths.home}" + (f"; stores on PostgreSQL: {settings.redacted(url)} (warehouse), its _dagster and "
                                     "_mlflow databases" if url else ""))
    print("next: `make ui` — Dagster at http://127.0.0.1:3000 (assets, checks, runs), "
          "MLflow at http://127.0.0.1:5000 (versions, aliases, model cards, sign-off tags)")
