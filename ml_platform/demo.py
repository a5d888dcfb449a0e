"""The demo scenario behind `make demo`: daily batches through the whole lifecycle, then a summary.

Each run ingests the next daily batch of the demo generator, validates it, rebuilds the features,
trains a challenger and puts it through the promotion gate, scores the batch and reports drift.
The demo model is risk tier medium, so a challenger that passes the gate waits for a sign-off: the
demo gives it as the first configured approver, exactly as a reviewer would in the MLflow UI (tags
on the version), and the approval sensor's run promotes it. At the end a rollback drill moves the
champion back one version and forward again. The default config injects data drift from batch 4,
so the last drift report flags it.
"""

from __future__ import annotations

import json
import time

from ml_platform import settings
from ml_platform.config import load_config
from ml_platform.resources import Governance, ModelRegistry, Warehouse
from ml_platform.runner import process_approvals, run_lifecycle
from ml_platform.status import model_status


def run_demo(*, batches: int = 4, as_json: bool = False) -> int:
    config = load_config(settings.config_path())
    registry = ModelRegistry()
    governance = Governance(registry=registry, warehouse=Warehouse())
    say = (lambda *_: None) if as_json else (lambda text: print(text, flush=True))
    runs = []
    for i in range(batches):
        started = time.perf_counter()
        result = run_lifecycle(quiet=True)
        gate = result.outputs.get("champion_model") or {}
        drift = result.outputs.get("drift_report") or {}
        batch = (result.outputs.get("raw_batch") or {}).get("batch_id", "?")
        run = {"batch": batch, "run_id": result.run_id, "success": result.success,
               "materialized": sum(s == "materialized" for s in result.assets.values()),
               "assets": len(result.assets), "gate": gate, "drift": drift, "errors": result.errors, "approval": None}
        if gate.get("decision") == "passed":
            reviewer = config.governance.approvers[0]
            registry.tag_version(config.model.name, gate["challenger_version"],
                                 {"approval": "approved", "approver": reviewer})
            run["approval"] = next((o for o in process_approvals() if o["version"] == gate["challenger_version"]),
                                   None)
        run["seconds"] = round(time.perf_counter() - started, 1)
        runs.append(run)
        approval = run["approval"]
        say(f"[{i + 1}/{batches}] {batch}: {'ok' if result.success else 'FAILED'} in {run['seconds']}s — "
            f"{run['materialized']}/{run['assets']} assets materialized; version {gate.get('challenger_version', '-')} "
            f"{gate.get('decision', '-')}"
            + (f", signed off by {approval['reason'].removeprefix('approved by ')} → champion"
               if approval and approval["promoted"] else "")
            + (f", sign-off refused: {approval['reason']}" if approval and not approval["promoted"] else "")
            + f"; drift {'DETECTED' if drift.get('dataset_drift') else 'none'}")
        for error in result.errors:
            say(f"    error: {error}")
        if not result.success:
            say(f"    full log: {result.log_file}")
            break

    drill = []
    if all(r["success"] for r in runs) and registry.alias_version(config.model.name, "previous_champion"):
        back = governance.rollback(config.model.name, actor="demo", reason="rollback drill: back one version")
        forth = governance.rollback(config.model.name, actor="demo", reason="rollback drill: and forward again")
        drill = [back, forth]
        say(f"rollback drill: champion {back['from_version']} → {back['to_version']} → {forth['to_version']}, "
            "one command each (`ml-platform rollback`), no retraining")

    status = model_status()
    history = governance.history(config.model.name)
    if as_json:
        print(json.dumps({"runs": runs, "rollback_drill": drill, "status": status, "audit_trail": history},
                         indent=2, default=str))
    else:
        _print_summary(runs, status, history)
    return 0 if runs and all(r["success"] for r in runs) else 1


def _print_summary(runs: list[dict], status: dict, history: list[dict]) -> None:
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
    print("audit trail (`ml-platform history`):")
    for h in history:
        print(f"  {h['seq']:>3} {h['action']:<18} v{h['version'] or '-':<3} champion {h['from_version'] or '-'} → "
              f"{h['to_version'] or '-'} by {h['actor']}")
    print(f"state: {paths.home}")
    print("next: `make ui` — Dagster at http://127.0.0.1:3000 (assets, checks, runs), "
          "MLflow at http://127.0.0.1:5000 (versions, aliases, model cards, sign-off tags)")
