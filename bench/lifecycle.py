"""The platform's lifecycle against a bare script doing the same work, on the same data.

    python bench/lifecycle.py [--rows 100000 1000000] [--repeat 1]

For each size one demo batch (`generate_batch(1, rows=N, seed=7)`) is written to a Parquet file and a
copy of ml_platform.yaml points `data.source` at it (kind: file). Then, each in a fresh Python process
(so every side pays its own imports and no side inherits warm caches from another):

- bare script (the baseline): pandas reads the file, computes the dbt feature columns in pandas,
  splits with `holdout_mask`, fits `build_pipeline`, evaluates with `evaluate_classifier`. No
  validation, no tracking, no registry: what a notebook does.
- platform, training path: `run_lifecycle(selection=...)` for ingest -> contract checks ->
  validated batches -> dbt features -> training snapshot -> fit + MLflow register -> evaluation ->
  promotion gate, on a fresh ML_PLATFORM_HOME: the first run on a machine, which also creates the Dagster
  and MLflow stores and parses the dbt project.
- platform, training path again: the same run on a home that has run the lifecycle once before (untimed,
  on the first 5,000 customers of the same batch, which the timed batch supersedes): every later run. The
  stores exist, dbt parses only what changed, and the gate compares the new model with a champion.
- platform, full lifecycle: the training path plus batch scoring and the Evidently drift report, fresh home.

The ratios are platform seconds / bare seconds; with --repeat N each side's fastest run counts (the
median is shown beside it). Target: training-path ratio at 1M rows <= 1.3 (shown for both homes).
Per-step durations come from the run's Dagster event log (STEP_START -> STEP_SUCCESS).
Results are printed and written to bench/results/lifecycle-<timestamp>.json.
"""

from __future__ import annotations

import time

# Subprocess modes count from here: their imports (dagster, mlflow, sklearn, ...) are part of the cost.
_STARTED = time.perf_counter()
_STARTED_EPOCH = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

# The assets of load -> validate -> features -> fit -> evaluate -> register -> gate. raw_batch's
# blocking contract checks run with it; dbt's tests run with the dbt models.
TRAINING_PATH = [
    "raw_batch",
    "validated_batches",
    "features/stg_churn_batches",
    "features/churn_features",
    "training_data",
    "trained_model",
    "model_evaluation",
    "champion_model",
]
NO_INPUT_ON_A_FRESH_HOME = ("traffic_drift_report",)
TARGET_ROWS = 1_000_000
TARGET_RATIO = 1.3
DEMO_SEED = 7
WARMUP_ROWS = 5_000
EARLIER_ROWS = 5_000  # the earlier run of "again": the same customers' first rows, superseded by the timed batch
CORES = len(os.sched_getaffinity(0))
SIDES = {"bare": "bare script (baseline)", "training": "platform training path",
         "again": "  same, home used before", "full": "platform full lifecycle"}

# Dagster step keys, in lifecycle order, with what each one does.
STEP_LABELS = {
    "raw_batch": "raw_batch (read source, write snapshot)",
    "raw_batch_contract": "contract checks (GX)",
    "validated_batches": "validated_batches (DuckDB append)",
    "feature_models": "dbt build (features + tests)",
    "online_features": "online_features (SQLite publish)",
    "training_data": "training_data (query, snapshot)",
    "trained_model": "trained_model (fit + MLflow)",
    "model_evaluation": "model_evaluation",
    "champion_model": "champion_model (gate)",
    "batch_predictions": "batch_predictions",
    "drift_report": "drift_report (Evidently)",
}
BARE_PHASES = ("imports", "load", "features", "split", "fit", "evaluate")


# --- the bare script (a notebook's version of the training path) ----------------------------------


def bare_once(data_path: Path, config_path: Path) -> dict:
    """Load, engineer the dbt features in pandas, split, fit and evaluate. Timed per phase."""
    phases: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = now - mark
        mark = now

    import pandas as pd

    from ml_platform.config import load_config
    from ml_platform.lib.evaluation import evaluate_classifier
    from ml_platform.lib.modeling import build_pipeline, split_training_data

    cfg = load_config(config_path)
    lap("imports")

    raw = pd.read_parquet(data_path)
    lap("load")

    features = engineer_features(raw)
    lap("features")

    split = split_training_data(features, cfg)
    lap("split")

    pipeline = build_pipeline(cfg, split.X_train)
    pipeline.fit(split.X_train, split.y_train)
    lap("fit")

    sensitive = cfg.data.sensitive_column
    evaluation = evaluate_classifier(
        pipeline,
        split.X_holdout.reset_index(drop=True),
        split.y_holdout.reset_index(drop=True),
        positive_label=cfg.data.positive_label,
        sensitive=split.holdout[sensitive] if sensitive else None,
    )
    lap("evaluate")
    return {
        "elapsed_s": time.perf_counter() - _STARTED,
        "phases": phases,
        "rows": len(features),
        "train_rows": len(split.X_train),
        "holdout_rows": len(split.X_holdout),
        "feature_columns": split.feature_columns,
        "metrics": {k: float(v) for k, v in evaluation.metrics.items()},
    }


def engineer_features(raw):
    """dbt_project/models (stg_churn_batches + churn_features) in pandas, same columns in the same order.

    Left out, because they change nothing on this data and a notebook would not do them: trimming and
    lower-casing categories (already clean), keeping the latest copy of a re-ingested customer (each
    customer occurs once) and ordering by customer_id (the demo batch is already in that order).
    """
    import numpy as np

    frame = raw.copy()
    frame["total_charges"] = frame["total_charges"].fillna(frame["monthly_charges"] * frame["tenure_months"])
    tenure = np.maximum(frame["tenure_months"], 1)
    frame["avg_charge_per_month"] = frame["total_charges"] / tenure
    frame["charges_to_products"] = frame["monthly_charges"] / np.maximum(frame["num_products"], 1)
    frame["is_new_customer"] = (frame["tenure_months"] < 6).astype("int32")
    frame["calls_per_tenure_year"] = frame["support_calls"] * 12.0 / tenure
    frame["is_month_to_month"] = (frame["contract"] == "month-to-month").astype("int32")
    frame["has_fiber"] = (frame["internet_service"] == "fiber").astype("int32")
    label = frame.pop("churned")
    frame["churned"] = label
    return frame


# --- one platform run -------------------------------------------------------------------------------


def platform_once(config_path: Path, home: Path, selection: list[str] | None) -> dict:
    """run_lifecycle on a fresh home; the wall time and each step's duration from the Dagster event log."""
    from ml_platform.runner import run_lifecycle

    result = run_lifecycle(config_file=config_path, home=home, selection=selection)
    elapsed = time.perf_counter() - _STARTED
    finished_epoch = time.time()

    run = run_timings(result.run_id)
    evaluation = result.outputs.get("model_evaluation") or {}
    trained = result.outputs.get("trained_model") or {}
    return {
        "elapsed_s": elapsed,
        "success": result.success,
        "errors": result.errors,
        "assets": result.assets,
        "checks_run": sorted(result.checks),
        "checks_failed": sorted(k for k, v in result.checks.items() if not v["passed"]),
        "run_s": run["end"] - run["start"],
        # Process start to the run's first event: interpreter, imports, definitions, dbt manifest, instance.
        "before_run_s": run["start"] - _STARTED_EPOCH,
        # The run's last event to the end of run_lifecycle: result summary.
        "after_run_s": finished_epoch - run["end"],
        "steps": run["steps"],
        "fit_s": trained.get("fit_seconds"),
        "metrics": {k: float(v) for k, v in (evaluation.get("metrics") or {}).items()},
    }


def run_timings(run_id: str) -> dict:
    """Start and end of the run and of each step (seconds), read back from the Dagster instance."""
    import dagster as dg

    from ml_platform.runner import dagster_instance

    with dagster_instance() as instance:
        records = instance.all_logs(run_id)
    starts: dict[str, float] = {}
    steps: dict[str, float] = {}
    for record in records:
        event = record.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = record.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            steps[event.step_key] = record.timestamp - starts.get(event.step_key, record.timestamp)
    stamps = [r.timestamp for r in records]
    return {"start": min(stamps), "end": max(stamps), "steps": steps}


# --- the driver ---------------------------------------------------------------------------------------


def prepare(rows: int, workdir: Path) -> tuple[Path, Path]:
    """The demo batch as Parquet and a config reading it (ml_platform.yaml with a file source)."""
    from ml_platform.lib.demo_data import generate_batch

    workdir.mkdir(parents=True, exist_ok=True)
    data_path = workdir / f"churn-{rows}.parquet"
    generate_batch(1, rows=rows, seed=DEMO_SEED).to_parquet(data_path, index=False)
    return data_path, write_config(data_path)


def write_config(data_path: Path) -> Path:
    """ml_platform.yaml as it is now, reading `data_path`. Rewritten before each measurement, so a
    long benchmark follows edits of the config and its schema instead of failing on a stale copy."""
    import yaml

    config = yaml.safe_load((PROJECT_ROOT / "ml_platform.yaml").read_text())
    config["data"]["source"] = {"kind": "file", "path": str(data_path)}
    if "risk_tier" in config["model"]:
        # The gate promotes without waiting for a sign-off, so the full lifecycle scores and reports drift.
        config["model"]["risk_tier"] = "low"
    config_path = data_path.with_name(f"ml_platform-{data_path.stem}.yaml")
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config_path


def in_subprocess(args: list[str]) -> dict:
    """Run this file in a fresh interpreter; return the JSON it prints last, plus the outside wall time and the
    CPU seconds of the interpreter and every process it started and waited for (the warm dbt process, dbt)."""
    env = {k: v for k, v in os.environ.items() if k not in {"ML_PLATFORM_HOME", "ML_PLATFORM_CONFIG", "DAGSTER_HOME"}}
    started, cpu_before = time.perf_counter(), _children_cpu_s()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], capture_output=True, text=True,
                          env=env, cwd=PROJECT_ROOT)
    wall, cpu = time.perf_counter() - started, _children_cpu_s() - cpu_before
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark subprocess {' '.join(args)} failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return {**json.loads(lines[-1]), "wall_s": wall, "cpu_s": cpu}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_bare(data_path: Path, config_path: Path) -> dict:
    return in_subprocess(["--bare-once", str(data_path), str(config_path)])


def measure_platform(config_path: Path, scope: str, keep: bool, earlier_config: Path | None = None) -> dict:
    """One platform run of `scope` (training, full) on a fresh home; first, untimed, a training run of
    `earlier_config` in that home if given (the home then holds a run, a model version and a champion)."""
    home = Path(tempfile.mkdtemp(prefix=f"bench-{scope}-"))
    try:
        if earlier_config is not None:
            earlier = in_subprocess(["--platform-once", str(earlier_config), str(home), "--scope", "training"])
            if not earlier["success"]:
                raise RuntimeError("the earlier run in the home failed:\n" + "\n".join(earlier["errors"]))
        out = in_subprocess(["--platform-once", str(config_path), str(home), "--scope", scope])
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    if not out["success"]:
        raise RuntimeError(f"the platform's {scope} run failed:\n" + "\n".join(out["errors"]))
    # The traffic drift report compares served requests: a fresh home has none, so it rightly has nothing to do.
    expected = TRAINING_PATH if scope == "training" else [k for k in out["assets"] if k not in NO_INPUT_ON_A_FRESH_HOME]
    skipped = [k for k in expected if out["assets"].get(k) != "materialized"]
    if skipped:
        raise RuntimeError(f"the platform's {scope} run did not materialize {skipped}: it would time less work")
    missing = [k for k in ("raw_batch:schema", "raw_batch:unique_ids") if k not in out["checks_run"]]
    if missing:
        raise RuntimeError(f"the platform's {scope} run did not run raw_batch's contract checks ({missing})")
    return {**out, "home": str(home) if keep else None}


def bench_size(rows: int, repeat: int, keep: bool, log, sides: tuple[str, ...] = tuple(SIDES)) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-lifecycle-{rows}-"))
    try:
        data_path, config_path = prepare(rows, workdir)
        earlier_data, _ = prepare(min(EARLIER_ROWS, rows // 2), workdir / "earlier")
        runs: dict[str, list[dict]] = {name: [] for name in sides}
        for i in range(repeat):
            # Interleaved, so a disturbance from another process spreads over all of them.
            for name in runs:
                log(f"  {rows:>9,} rows  run {i + 1}/{repeat}  {name:<8} ...")
                write_config(data_path)
                if name == "bare":
                    out = measure_bare(data_path, config_path)
                elif name == "again":
                    out = measure_platform(config_path, "training", keep, earlier_config=write_config(earlier_data))
                else:
                    out = measure_platform(config_path, name, keep)
                runs[name].append(out)
                log(f" {out['elapsed_s']:.1f}s\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return summarize(rows, runs)


def summarize(rows: int, runs: dict[str, list[dict]]) -> dict:
    """Each side's fastest run is its result (the least disturbed by other processes; the same rule for
    every side), with the medians beside it. The step tables are those of the fastest runs."""
    runs = {name: rs for name, rs in runs.items() if rs}  # results saved before "again" existed lack it
    best = {name: min(rs, key=lambda r: r["elapsed_s"]) for name, rs in runs.items()}
    seconds = {name: r["elapsed_s"] for name, r in best.items()}
    median = {name: statistics.median(r["elapsed_s"] for r in rs) for name, rs in runs.items()}
    return {
        "rows": rows,
        "repeat": len(runs["bare"]),
        "seconds": seconds,
        "ratios": {name: seconds[name] / seconds["bare"] for name in runs},
        "median_seconds": median,
        "median_ratios": {name: median[name] / median["bare"] for name in runs},
        "slowest_seconds": {name: max(r["elapsed_s"] for r in rs) for name, rs in runs.items()},
        "steps": {scope: step_table(best[scope]) for scope in runs if scope != "bare"},
        "bare_phases": {**best["bare"]["phases"], "total": seconds["bare"]},
        "holdout_roc_auc": {name: r["metrics"].get("roc_auc") for name, r in best.items()},
        "cpu_seconds": {name: r.get("cpu_s") for name, r in best.items()},  # results saved before 2026-12-04 lack it
        "cores": CORES,
        "runs": runs,
    }


def step_table(run: dict) -> dict[str, float | None]:
    """Where one platform run's time went, in lifecycle order; the rows add up to its total."""
    keys = [k for k in STEP_LABELS if k in run["steps"]] + sorted(set(run["steps"]) - set(STEP_LABELS))
    table = {"before run (imports, definitions, instance)": run["before_run_s"]}
    for key in keys:
        table[STEP_LABELS.get(key, key)] = run["steps"][key]
        if key == "trained_model":
            table["  of which fit"] = run["fit_s"]
    table["between steps (Dagster events, IO)"] = run["run_s"] - sum(run["steps"].values())
    table["after run (result summary)"] = run["after_run_s"]
    table["total"] = run["elapsed_s"]
    return table


def render(result: dict) -> str:
    rows, sec, med, slow = result["rows"], result["seconds"], result["median_seconds"], result["slowest_seconds"]
    ratios, med_ratios = result["ratios"], result["median_ratios"]
    sides = [k for k in SIDES if k in sec]
    lines = [
        f"lifecycle benchmark: {rows:,} rows, best of {result['repeat']} (median and slowest beside it)",
        f"  {'':26}{'seconds':>9}{'ratio vs bare':>15}{'median s':>10}{'ratio':>7}{'slowest s':>11}",
        *(f"  {SIDES[k]:26}{sec[k]:>9.1f}{ratios[k]:>15.2f}{med[k]:>10.1f}{med_ratios[k]:>7.2f}{slow[k]:>11.1f}"
          for k in sides),
        "",
    ]
    scopes = [k for k in sides if k != "bare"]
    steps = result["steps"]
    lines.append(f"  {'platform steps of the best runs (s)':44}" + "".join(f"{k:>9}" for k in scopes))
    for label in dict.fromkeys(label for k in reversed(scopes) for label in steps[k]):
        if label != "total":
            lines.append(f"  {label:44}" + "".join(f"{_fmt(steps[k].get(label)):>9}" for k in scopes))
    lines.append(f"  {'total':44}" + "".join(f"{_fmt(steps[k]['total']):>9}" for k in scopes))
    bare = result["bare_phases"]
    lines.append("  bare script (s): " + ", ".join(f"{p} {_fmt(bare.get(p))}" for p in (*BARE_PHASES, "total")))
    fits = {"bare": bare.get("fit"), **{k: steps[k].get("  of which fit") for k in scopes}}
    lines.append("  fit, the same call on every side (s): " + ", ".join(f"{k} {_fmt(v)}" for k, v in fits.items()))
    if all(fits.values()):
        rest = {k: sec[k] - fits[k] for k in fits}
        lines.append("  everything but the fit (s): " + ", ".join(f"{k} {v:.1f}" for k, v in rest.items())
                     + f"; the training path adds {rest['training'] - rest['bare']:.1f} s to the bare script"
                     + (f" ({rest['again'] - rest['bare']:.1f} s on a home used before)" if "again" in rest else ""))
    if cpu_line := _cpu_line(result):
        lines.append(cpu_line)
    known = [v for v in fits.values() if v]
    if (known and _differ(min(known), max(known))) or any(_differ(sec[k], slow[k]) for k in sec):
        lines.append("  note: equal work took unequal time (the fits, or repeats, differ by >30%): other processes "
                     "were busy; more --repeat or a quieter machine gives steadier numbers")
    auc = result["holdout_roc_auc"]
    lines.append("  holdout ROC AUC (same data, split and model): "
                 + ", ".join(f"{k} {v:.4f}" for k, v in auc.items() if v is not None))
    return "\n".join(lines)


def _cpu_line(result: dict) -> str | None:
    """CPU seconds of each side's best run, and what they allow: a run cannot take less wall time than its CPU
    seconds spread over every core, so the training path's CPU / cores over the bare script's seconds is the
    lowest ratio this much work could reach, with every core busy from start to end."""
    cpu, cores = result.get("cpu_seconds") or {}, result.get("cores") or CORES
    if not cpu or None in cpu.values():
        return None
    floor = cpu["training"] / cores / result["seconds"]["bare"]
    return ("  CPU seconds, all processes of the run: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
            + f"; on {cores} cores the training path's work alone allows a ratio no lower than {floor:.2f}")


def _differ(low: float, high: float) -> bool:
    """Equal work, unequal time: more than 30% and more than 2 s apart."""
    return high > 1.3 * low and high - low > 2.0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def target_line(results: list[dict]) -> str:
    at_target = [r for r in results if r["rows"] == TARGET_ROWS]
    if not at_target:
        return f"target: training-path ratio at 1M rows ≤ {TARGET_RATIO}: not measured (add {TARGET_ROWS} to --rows)"
    result = at_target[0]
    verdicts = []
    for side, home in (("training", "fresh home"), ("again", "home used before")):
        if side in result["ratios"]:
            ratio, median = result["ratios"][side], result["median_ratios"][side]
            verdicts.append(f"{home}: {'MET' if ratio <= TARGET_RATIO else 'NOT MET'} "
                            f"({ratio:.2f} best of {result['repeat']}; median {median:.2f})")
    return f"target: training-path ratio at 1M rows ≤ {TARGET_RATIO}: " + "; ".join(verdicts)


def overhead_line(results: list[dict]) -> str | None:
    """The training path's seconds over the bare script's, as a fixed part plus a part per million rows: the
    straight line through the two largest sizes measured. The fixed part is what a run costs whatever the data
    (interpreter and imports, the Dagster and MLflow stores, the dbt process); the ratio approaches 1 only as
    the fit grows past it."""
    lines = []
    for side, home in (("training", "fresh home"), ("again", "home used before")):
        points = sorted((r["rows"], r["seconds"][side] - r["seconds"]["bare"]) for r in results if side in r["seconds"])
        if len(points) < 2:
            continue
        (rows_1, over_1), (rows_2, over_2) = points[-2:]
        per_row = (over_2 - over_1) / (rows_2 - rows_1)
        fixed = over_1 - per_row * rows_1
        lines.append(f"training path over the bare script, {home}: {fixed:.1f} s fixed + {per_row * 1e6:.1f} s per "
                     f"million rows (the line through {rows_1:,} and {rows_2:,} rows)")
    return "\n".join(lines) or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=1,
                        help="measurements per side and size; each side's fastest is reported, with the median")
    parser.add_argument("--no-warmup", action="store_true",
                        help=f"skip the untimed {WARMUP_ROWS:,}-row run of each side that warms the OS file cache")
    parser.add_argument("--keep", action="store_true", help="keep each platform run's ML_PLATFORM_HOME")
    parser.add_argument("--report", type=Path, metavar="JSON", help="print a saved results file again; run nothing")
    # Internal: one measurement in this (fresh) process; prints its result as JSON.
    parser.add_argument("--bare-once", nargs=2, metavar=("DATA", "CONFIG"), help=argparse.SUPPRESS)
    parser.add_argument("--platform-once", nargs=2, metavar=("CONFIG", "HOME"), help=argparse.SUPPRESS)
    parser.add_argument("--scope", choices=["training", "full"], default="training", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.bare_once:
        print(json.dumps(bare_once(Path(args.bare_once[0]), Path(args.bare_once[1]))))
        return 0
    if args.platform_once:
        selection = TRAINING_PATH if args.scope == "training" else None
        print(json.dumps(platform_once(Path(args.platform_once[0]), Path(args.platform_once[1]), selection),
                         default=str))
        return 0

    if args.report:
        saved = json.loads(args.report.read_text())
        results = [summarize(r["rows"], r["runs"]) for r in saved["results"]]
        for result in results:
            print("\n" + render(result))
        print("\n" + target_line(results))
        if overhead := overhead_line(results):
            print(overhead)
        return 0

    def log(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    if not args.no_warmup:
        log(f"warm-up ({WARMUP_ROWS:,} rows, untimed)\n")
        bench_size(WARMUP_ROWS, 1, keep=False, log=log, sides=("bare", "training", "full"))
    results = []
    for rows in args.rows:
        result = bench_size(rows, args.repeat, args.keep, log)
        results.append(result)
        print("\n" + render(result), flush=True)
    print("\n" + target_line(results))
    if overhead := overhead_line(results):
        print(overhead)

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"lifecycle-{stamp}.json"
    out.write_text(json.dumps({
        "benchmark": "lifecycle",
        "created_at": stamp,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "training_path": TRAINING_PATH,
        "target": {"rows": TARGET_ROWS, "max_ratio": TARGET_RATIO, "line": target_line(results)},
        "overhead": overhead_line(results),
        "results": results,
    }, indent=2, default=str))
    print(f"results: {out.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
