"""Data drift on every row: `detect_drift` against Evidently's DataDriftPreset, same data, same answer.

    python bench/drift.py [--rows 100000 1000000] [--repeat 1] [--full-evidently-at-1m] [--no-memory]

Data (not timed): a reference and a current frame of N rows each with 30 features, seeded
(`make_frames(N, seed=7)`): 18 numerical (normal, log-normal, uniform, Poisson counts, three with 5%
missing values, two with 4 distinct values) and 12 categorical (strings of 3 to 40 values, three
booleans). 8 of them drift in the current frame (shifted means, a wider spread, a higher rate, new
category mixes).

Measured per size, in this process, after an untimed small call of each side (so no side pays the
imports), each side's fastest of --repeat runs (median beside it):

- `detect_drift(html=False)`: the decision on every row, no report.
- `detect_drift(html=True)`: the same plus Evidently's HTML report on a seeded sample of
  `report_rows=20000` rows per side. **Target: <= 30 s at 1,000,000 rows x 30 features.**
- the baseline, `evidently_drift`: Evidently's DataDriftPreset (`Report.run` and reading its results,
  no HTML) on every row, no sampling. At 100k rows always; at 1M only with --full-evidently-at-1m
  (about 4 minutes and 2 GB).

Ratios are baseline seconds / our seconds (how many times faster). Where the baseline ran, the
decisions are compared column by column: test, threshold and drifted must be equal, the largest score
difference is printed. Peak resident memory of each side is measured in a fresh process (--no-memory
skips it). Results are printed and written to bench/results/drift-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(BENCH_DIR))

TARGET_ROWS = 1_000_000
TARGET_SECONDS = 30.0
DATA_SEED = 7
REPORT_ROWS = 20_000
SHARE_THRESHOLD = 0.3
WARMUP_ROWS = 2_000
SIDES = ("ours_decision", "ours_with_report", "evidently")
NAMES = {
    "evidently": "Evidently DataDriftPreset, all rows (baseline)",
    "ours_decision": "detect_drift(html=False)",
    "ours_with_report": "detect_drift(html=True)",
}


# --- data (not timed) ------------------------------------------------------------------------------------


def make_frames(rows: int, seed: int = DATA_SEED):
    """(reference, current, columns, categorical, drifted): 30 features, 8 of them drifted in current."""
    import numpy as np
    import pandas as pd

    letters = [f"v{i:02d}" for i in range(40)]

    def side(stream: int, drift: bool) -> pd.DataFrame:
        rng = np.random.default_rng(np.random.SeedSequence([seed, stream]))
        data = {}
        for i in range(5):  # normal; num_00 and num_01 shift by 0.3 sd
            data[f"num_{i:02d}"] = rng.normal(
                50 + 10 * i + (3.0 * (i + 1) if drift and i < 2 else 0), 10, rows
            )
        for i in range(5, 8):  # log-normal; num_05 spreads wider
            data[f"num_{i:02d}"] = rng.lognormal(3, 0.5 * (1.4 if drift and i == 5 else 1.0), rows)
        for i in range(8, 11):  # uniform
            data[f"num_{i:02d}"] = rng.uniform(0, 100, rows)
        for i in range(11, 14):  # counts; num_11 at a higher rate
            data[f"num_{i:02d}"] = rng.poisson(4 * (1.5 if drift and i == 11 else 1.0), rows)
        for i in range(14, 16):  # 4 distinct values (auto: Jensen-Shannon at > 1000 rows)
            data[f"num_{i:02d}"] = rng.integers(0, 4, rows).astype(float)
        for i in range(16, 18):  # 5% missing
            values = rng.normal(0, 1, rows)
            values[rng.random(rows) < 0.05] = np.nan
            data[f"num_{i:02d}"] = values
        values = data["num_02"]
        data["num_02"] = np.where(rng.random(rows) < 0.05, np.nan, values)
        for j, size in enumerate((3, 4, 5, 6, 8, 12, 20, 40, 10)):  # cat_00, cat_01, cat_02 change mix
            weights = np.linspace(1, 3, size)
            if drift and j < 3:
                weights = weights[::-1]
            data[f"cat_{j:02d}"] = rng.choice(letters[:size], rows, p=weights / weights.sum()).astype(object)
        for j in range(3):  # booleans; flag_00 turns more often true
            data[f"flag_{j:02d}"] = rng.random(rows) < (0.35 if drift and j == 0 else 0.2)
        return pd.DataFrame(data)

    reference, current = side(1, False), side(2, True)
    columns = list(reference.columns)
    categorical = [c for c in columns if c.startswith("cat_")]  # booleans are categorical without it
    drifted = ["num_00", "num_01", "num_05", "num_11", "cat_00", "cat_01", "cat_02", "flag_00"]
    return reference, current, columns, categorical, drifted


# --- measurements ----------------------------------------------------------------------------------------


def run_side(name: str, reference, current, columns, categorical):
    from ml_platform.lib.drift import detect_drift, evidently_drift

    common = {"columns": columns, "categorical": categorical, "share_threshold": SHARE_THRESHOLD}
    if name == "evidently":
        return evidently_drift(reference, current, **common)
    return detect_drift(
        reference, current, **common, report_rows=REPORT_ROWS, seed=0, html=name == "ours_with_report"
    )


def compare(ours, theirs) -> dict:
    """Column by column: the same test, threshold and decision; the largest score difference."""
    differ = [
        c
        for c in ours.columns
        if any(ours.columns[c][k] != theirs.columns[c][k] for k in ("method", "threshold", "drifted"))
    ]
    largest = max(abs(ours.columns[c]["score"] - theirs.columns[c]["score"]) for c in ours.columns)
    return {
        "decisions_equal": not differ
        and ours.drifted_share == theirs.drifted_share
        and ours.dataset_drift == theirs.dataset_drift,
        "columns_differing": differ,
        "max_score_difference": largest,
    }


def bench(rows: int, repeat: int, with_evidently: bool, memory: bool, log) -> dict:
    log(f"set-up: {rows:,} rows x 30 features per side ... ")
    started = time.perf_counter()
    reference, current, columns, categorical, planted = make_frames(rows)
    log(f"{time.perf_counter() - started:.1f} s\n")

    sides = [s for s in SIDES if s != "evidently" or with_evidently]
    small = make_frames(WARMUP_ROWS)
    for side in sides:  # imports and first-call costs, untimed
        run_side(side, *small[:4])

    runs: dict[str, list[float]] = {side: [] for side in sides}
    results = {}
    loads = []
    for attempt in range(repeat):
        for side in sides:
            log(f"  run {attempt + 1}/{repeat} {NAMES[side]} ... ")
            started = time.perf_counter()
            results[side] = run_side(side, reference, current, columns, categorical)
            runs[side].append(time.perf_counter() - started)
            loads.append(os.getloadavg()[0])
            log(f"{runs[side][-1]:.2f} s\n")

    ours = results["ours_decision"]
    found = sorted(c for c, info in ours.columns.items() if info["drifted"])
    out = {
        "rows": rows,
        "features": len(columns),
        "repeat": repeat,
        "runs": runs,
        "methods": {
            m: sum(info["method"] == m for info in ours.columns.values())
            for m in sorted({info["method"] for info in ours.columns.values()})
        },
        "drifted_columns": found,
        "planted_drift_found": found == sorted(planted),
        "drifted_share": ours.drifted_share,
        "dataset_drift": ours.dataset_drift,
        "report_rows": results["ours_with_report"].report_rows,
        "same_as_without_report": results["ours_with_report"].columns == ours.columns,
        "comparison": compare(ours, results["evidently"]) if with_evidently else None,
        "load_average_1min": {"max": max(loads), "median": statistics.median(loads)},
        "cpus": os.cpu_count(),
    }
    if memory:
        del reference, current, results
        out["peak_memory_mb"] = {side: peak_memory(side, rows) for side in sides}
    return out


def peak_memory(side: str, rows: int) -> float:
    """Peak resident memory one side adds above its input frames, in a fresh process (MB)."""
    # glibc then serves large blocks from mmap and unmaps them when freed, so the resident size follows
    # the live memory (otherwise the set-up's freed memory is reused and hides the side's peak).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--memory-once", side, str(rows)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"memory measurement of {side} failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return json.loads(lines[-1])["peak_mb"]


def memory_once(side: str, rows: int) -> dict:
    from batch_scoring import ResidentPeak

    frames = make_frames(rows)
    run_side(side, *make_frames(WARMUP_ROWS)[:4])  # imports are not the side's
    with ResidentPeak() as peak:
        run_side(side, *frames[:4])
    return {"peak_mb": peak.above_start / 2**20}


# --- report ----------------------------------------------------------------------------------------------


def render(result: dict) -> str:
    runs = result["runs"]
    best = {k: min(v) for k, v in runs.items()}
    median = {k: statistics.median(v) for k, v in runs.items()}
    base = "evidently" if "evidently" in runs else None
    lines = [
        f"drift benchmark: {result['rows']:,} rows x {result['features']} features per side, best of "
        f"{result['repeat']} (median beside it)",
        f"  {'':48}{'seconds':>9}{'x faster than baseline':>24}{'median s':>10}",
    ]
    for key in ("evidently", "ours_decision", "ours_with_report"):
        if key not in runs:
            lines.append(f"  {NAMES[key]:48}{'not run':>9}   (--full-evidently-at-1m runs it)")
            continue
        ratio = f"{best[base] / best[key]:.1f}" if base else "-"
        note = f"   <- target: <= {TARGET_SECONDS:.0f} s at 1M" if key == "ours_with_report" else ""
        lines.append(f"  {NAMES[key]:48}{best[key]:>9.2f}{ratio:>24}{median[key]:>10.2f}{note}")
    lines.append("  x faster = baseline seconds / our seconds, in the same run")
    lines.append(
        f"  tests chosen (auto): {', '.join(f'{m} {n}' for m, n in result['methods'].items())}; "
        f"drifted: {len(result['drifted_columns'])} columns (the 8 planted: "
        f"{'yes' if result['planted_drift_found'] else 'NO'}), share {result['drifted_share']:.3f}, "
        f"dataset drift {result['dataset_drift']}"
    )
    lines.append(
        f"  report on {result['report_rows']:,} rows per side; decisions with and without the report "
        f"equal: {'yes' if result['same_as_without_report'] else 'NO'}"
    )
    comparison = result["comparison"]
    if comparison:
        lines.append(
            f"  decisions equal to full Evidently's: {'YES' if comparison['decisions_equal'] else 'NO'}"
            + (f" (differ: {comparison['columns_differing']})" if comparison["columns_differing"] else "")
            + f"; largest score difference {comparison['max_score_difference']:.1e}"
        )
    if "peak_memory_mb" in result:
        lines.append(
            "  peak memory above the input frames (fresh process): "
            + ", ".join(f"{NAMES[k]} {v:,.0f} MB" for k, v in result["peak_memory_mb"].items())
        )
    load = result["load_average_1min"]
    if load["max"] > result["cpus"]:
        lines.append(
            f"  note: the machine was busy (1-min load average up to {load['max']:.1f} on "
            f"{result['cpus']} cores): other processes slowed the runs; a quieter machine gives steadier numbers"
        )
    return "\n".join(lines)


def target_lines(results: list[dict]) -> list[str]:
    lines = []
    at_target = [r for r in results if r["rows"] == TARGET_ROWS]
    if at_target:
        best = min(at_target[0]["runs"]["ours_with_report"])
        decision = min(at_target[0]["runs"]["ours_decision"])
        lines.append(
            f"target: detect_drift at {TARGET_ROWS:,} rows x 30 features <= {TARGET_SECONDS:.0f} s: "
            f"{'MET' if best <= TARGET_SECONDS else 'NOT MET'} ({best:.1f} s with the HTML report, "
            f"{decision:.1f} s without)"
        )
    else:
        lines.append(f"target: not measured (it is at {TARGET_ROWS:,} rows: --rows {TARGET_ROWS})")
    for r in results:
        if r["comparison"]:
            lines.append(
                f"decisions equal to full Evidently's at {r['rows']:,} rows: "
                f"{'YES' if r['comparison']['decisions_equal'] else 'NO'}"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, TARGET_ROWS])
    parser.add_argument(
        "--repeat", type=int, default=1, help="measurements per side; each side's fastest counts"
    )
    parser.add_argument(
        "--full-evidently-at-1m",
        action="store_true",
        help="also run the baseline at 1M rows and more (about 4 minutes, 2 GB)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    # Internal: peak memory of one side in this (fresh) process; prints it as JSON.
    parser.add_argument("--memory-once", nargs=2, metavar=("SIDE", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_once:
        side, rows = args.memory_once
        print(json.dumps(memory_once(side, int(rows))))
        return 0

    def log(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    results = []
    for rows in args.rows:
        with_evidently = rows < TARGET_ROWS or args.full_evidently_at_1m
        results.append(bench(rows, args.repeat, with_evidently, not args.no_memory, log))
        print("\n" + render(results[-1]))
    targets = target_lines(results)
    print("\n" + "\n".join(targets))

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"drift-{stamp}.json"
    import evidently

    out.write_text(
        json.dumps(
            {
                "benchmark": "drift",
                "created_at": stamp,
                "python": sys.version.split()[0],
                "evidently": evidently.__version__,
                "cpus": os.cpu_count(),
                "target": {"rows": TARGET_ROWS, "max_seconds": TARGET_SECONDS, "lines": targets},
                "results": results,
            },
            indent=2,
            default=str,
        )
    )
    print(f"results: {out.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
