"""The demo scenario behind `make demo`: daily batches through the whole lifecycle, then a summary.

Each run ingests the next daily batch of the demo generator, validates it, rebuilds the features,
trains a challenger and puts it through the promotion gate, scores the batch and reports drift. The
default config injects data drift from batch 4, so the last run's drift report flags it.
"""

from __future__ import annotations

import json
import time

from ml_platform import settings
from ml_platform.runner import run_lifecycle
from ml_platform.status import model_status


def run_demo(*, batches: int = 4, as_json: bool = False) -> int:
    runs = []
    for i in range(batches):
        started = time.perf_counter()
        result = run_lifecycle(quiet=True)
        elapsed = time.perf_counter() - started
        gate = result.outputs.get("champion_model") or {}
        drift = result.outputs.get("drift_report") or {}
        batch = (result.outputs.get("raw_batch") or {}).get("batch_id", "?")
        runs.append({"batch": batch, "run_id": result.run_id, "success": result.success, "seconds": round(elapsed, 1),
                     "materialized": sum(s == "materialized" for s in result.assets.values()),
                     "assets": len(result.assets), "gate": gate, "drift": drift, "errors": result.errors})
        if not as_json:
            mark = "ok" if result.success else "FAILED"
            print(f"[{i + 1}/{batches}] {batch}: {mark} in {elapsed:.1f}s — "
                  f"{runs[-1]['materialized']}/{len(result.assets)} assets materialized; "
                  f"version {gate.get('challenger_version', '-')} {gate.get('decision', '-')}; "
                  f"drift {'DETECTED' if drift.get('dataset_drift') else 'none'}", flush=True)
            for error in result.errors:
                print(f"    error: {error}")
            if not result.success:
                print(f"    full log: {result.log_file}")
        if not result.success:
            break
    status = model_status()
    if as_json:
        print(json.dumps({"runs": runs, "status": status}, indent=2, default=str))
    else:
        _print_summary(runs, status)
    return 0 if all(r["success"] for r in runs) else 1


def _print_summary(runs: list[dict], status: dict) -> None:
    paths = settings.platform_paths()
    print("\n=== ml_platform demo summary ===")
    print(f"runs: {len(runs)}; assets materialized per run: " + ", ".join(f"{r['materialized']}/{r['assets']}" for r in runs))
    champ = status["champion"]
    if champ:
        m = champ["metrics"]
        print(f"champion: {status['model']} version {champ['version']} — roc_auc {m.get('roc_auc', float('nan')):.4f}, "
              f"f1 {m.get('f1', float('nan')):.4f}, ece {m.get('ece', float('nan')):.4f}, "
              f"latency p99 {m.get('latency_p99_ms', float('nan')):.2f} ms")
        print(f"  data snapshot {champ['lineage'].get('data_snapshot_sha256', '-')[:16]}…, feature code "
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
    print(f"state: {paths.home}")
    print("UIs: run `make ui`, then Dagster at http://127.0.0.1:3000 and MLflow at http://127.0.0.1:5000")
