"""Incremental runs: a full run against reruns that change nothing, one dbt feature model, or the training params.

    python bench/incremental.py [--rows 1000000]

One demo batch (`generate_batch(1, rows=N, seed=7)`) is written to a Parquet file; a copy of ml_platform.yaml
points `data.source` at it (kind: file, risk tier low so the gate promotes without a sign-off) and a copy of
dbt_project/ serves as the feature project (ML_PLATFORM_DBT_PROJECT_DIR). Each measured run is
`ml-platform run --json` in a fresh process, timed from outside as a user waits for it, on one home:

1. full run (the baseline): a fresh home, every asset computed;
2. no-op rerun: nothing changed; target <= 5% of the full run;
3. one feature model changed: `churn_features.sql` edited (is_new_customer: tenure below 3 months instead of 6);
   target: only that model and what depends on it rerun (raw_batch, validated_batches, stg_churn_batches do not);
4. training params changed: `max_iter` 150 -> 120; retrains, does not re-ingest or rebuild features.

Prints each run's seconds, its ratio to the full run and which assets it recomputed; writes
bench/results/incremental-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(PROJECT_ROOT))

NOOP_TARGET = 0.05
UPSTREAM_OF_FEATURES = ("raw_batch", "validated_batches", "features/stg_churn_batches")
FEATURE_EDIT = ("case when tenure_months < 6 then 1 else 0 end", "case when tenure_months < 3 then 1 else 0 end")


def prepare(rows: int, workdir: Path) -> tuple[Path, Path]:
    from ml_platform.lib.demo_data import generate_batch

    data = workdir / "batch.parquet"
    generate_batch(1, rows=rows, seed=7).to_parquet(data, index=False)
    config = yaml.safe_load((PROJECT_ROOT / "ml_platform.yaml").read_text())
    config["model"]["risk_tier"] = "low"
    config["data"]["source"] = {"kind": "file", "path": str(data)}
    config_path = workdir / "ml_platform.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    dbt = workdir / "dbt_project"
    shutil.copytree(PROJECT_ROOT / "dbt_project", dbt, ignore=shutil.ignore_patterns("target", "logs"))
    return config_path, dbt


def timed_run(config: Path, home: Path, dbt: Path) -> dict:
    env = {**os.environ, "ML_PLATFORM_HOME": str(home), "ML_PLATFORM_DBT_PROJECT_DIR": str(dbt)}
    env.pop("ML_PLATFORM_DATABASE_URL", None)
    started = time.perf_counter()
    shown = subprocess.run([str(Path(sys.executable).with_name("ml-platform")), "--config", str(config), "run", "--json"],
                           capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
    seconds = time.perf_counter() - started
    if shown.returncode != 0:
        raise SystemExit(f"ml-platform run failed ({shown.returncode}):\n{shown.stdout[-3000:]}\n{shown.stderr[-3000:]}")
    result = json.loads(shown.stdout)
    return {"seconds": seconds, "recomputed": sorted(k for k, v in result["assets"].items() if v != "unchanged"),
            "trained_model": result["outputs"].get("trained_model", {}).get("version")
            or result["unchanged"].get("trained_model", {}).get("model_version")}


def bench(rows: int, log) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp:
        workdir = Path(tmp)
        config, dbt = prepare(rows, workdir)
        home = workdir / "home"
        runs = {}
        log(f"{rows:,} rows: full run ...")
        runs["full run (baseline)"] = timed_run(config, home, dbt)
        log("no-op rerun ...")
        runs["no-op rerun"] = timed_run(config, home, dbt)
        model = dbt / "models" / "features" / "churn_features.sql"
        model.write_text(model.read_text().replace(*FEATURE_EDIT))
        log("one feature model changed ...")
        runs["one dbt feature model changed"] = timed_run(config, home, dbt)
        changed = yaml.safe_load(config.read_text())
        changed["training"]["estimator"]["params"]["max_iter"] = 120
        config.write_text(yaml.safe_dump(changed, sort_keys=False))
        log("training params changed ...")
        runs["training params changed"] = timed_run(config, home, dbt)
    full = runs["full run (baseline)"]["seconds"]
    for run in runs.values():
        run["ratio"] = run["seconds"] / full
    return {"rows": rows, "runs": runs}


def render(result: dict) -> str:
    lines = [f"Incremental runs, {result['rows']:,} rows (each `ml-platform run` in a fresh process, wall seconds)",
             f"{'run':<32} {'seconds':>8} {'vs full':>8}  recomputed"]
    for name, run in result["runs"].items():
        recomputed = ", ".join(run["recomputed"]) if run["recomputed"] else "nothing"
        lines.append(f"{name:<32} {run['seconds']:>8.2f} {run['ratio']:>7.1%}  {recomputed}")
    noop, feature = result["runs"]["no-op rerun"], result["runs"]["one dbt feature model changed"]
    untouched = [k for k in UPSTREAM_OF_FEATURES if k not in feature["recomputed"] and k != "features/churn_features"]
    lines.append(f"target: no-op <= {NOOP_TARGET:.0%} of the full run: "
                 f"{'MET' if noop['ratio'] <= NOOP_TARGET else 'NOT MET'} ({noop['ratio']:.1%})")
    only_affected = "features/churn_features" in feature["recomputed"] and len(untouched) == len(UPSTREAM_OF_FEATURES)
    lines.append(f"target: one feature change reruns only what depends on it: {'MET' if only_affected else 'NOT MET'} "
                 f"({', '.join(untouched)} unchanged)")
    params = result["runs"]["training params changed"]
    lines.append(f"training params changed: new version {params['trained_model']}; "
                 f"re-ingested: {'yes' if 'raw_batch' in params['recomputed'] else 'no'}, "
                 f"features rebuilt: {'yes' if any(k.startswith('features/') for k in params['recomputed']) else 'no'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    result = bench(args.rows, lambda text: print(text, file=sys.stderr, flush=True))
    print(render(result))
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"incremental-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
