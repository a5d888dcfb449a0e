"""Batch scoring throughput: the platform's chunked scoring against a bare `predict_proba`, same model, same rows.

    python bench/batch_scoring.py [--rows 1000000] [--repeat 5] [--chunk-rows 100000] [--threads N]

Set-up (not timed): one demo batch (`generate_batch(1, rows=N, seed=7)`) gets the dbt feature columns
(computed in pandas as bench/lifecycle.py does, with dbt's integer types) and is stored as
features.churn_features in a temporary DuckDB warehouse. The configured pipeline of ml_platform.yaml
(`build_pipeline`) is fitted on a sample of it. Then, in this process, interleaved, best of --repeat:

- bare (the baseline): `model.predict_proba(X)` on the whole batch already in memory as the model's inputs.
- platform, read + score: what `batch_predictions` does short of writing: `Warehouse.iter_query` reads
  the batch from DuckDB chunk by chunk, `lib.scoring.score_chunks` makes the model inputs, scores and
  builds the prediction rows (deterministic ids, model version, batch, timestamp), reading ahead in a
  background thread. **The target applies to this one: throughput >= 0.9x the bare call's.**
- the same without read-ahead (`read_ahead=0`): what the background thread contributes.
- platform, read + score + write: the same, stored by `Warehouse.write_predictions` into an empty
  serving.batch_predictions (one transaction, `insert or ignore` on its primary key). No target: shown
  so that the write's cost is not hidden.

Ratios are throughputs (rows/s) over the bare call's: bare seconds / platform seconds. Both sides run
HistGradientBoosting's predict with the same OpenMP threads (--threads; printed). A separate untimed pass
splits the platform's time into its parts and checks its scores equal the bare call's. Peak memory of the
chunked path and of scoring the whole frame at once is measured in fresh processes (peak resident memory
above the loaded model). Results are printed and written to bench/results/batch_scoring-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(BENCH_DIR))

TARGET_RATIO = 0.9
DEMO_SEED = 7
FEATURE_TABLE = "features.churn_features"
SNAPSHOT = "bench-snapshot"
# dbt's stg_churn_batches casts these to `integer`; the rest keep pandas' types (double, varchar, boolean).
INTEGER_COLUMNS = ("tenure_months", "support_calls", "num_products", "churned")


# --- set-up (not timed) ---------------------------------------------------------------------------------


def build_warehouse(rows: int, train_rows: int, workdir: Path) -> tuple[Path, Path]:
    """The demo batch with its features in a DuckDB warehouse, and the configured pipeline fitted on a sample."""
    from lifecycle import engineer_features

    from ml_platform.config import load_config
    from ml_platform.lib.demo_data import generate_batch
    from ml_platform.lib.modeling import build_pipeline, feature_columns, model_inputs
    from ml_platform.resources.warehouse import Warehouse

    cfg = load_config(PROJECT_ROOT / "ml_platform.yaml")
    features = engineer_features(generate_batch(1, rows=rows, seed=DEMO_SEED))
    features = features.astype({c: "int32" for c in INTEGER_COLUMNS})
    features.insert(2, "snapshot_hash", SNAPSHOT)
    features.insert(3, "batch_id", "batch-0001")

    warehouse_path = workdir / "warehouse.duckdb"
    with Warehouse(url=str(warehouse_path)).connect() as con:
        con.execute("create schema features")
        con.register("features_frame", features)
        con.execute(f"create table {FEATURE_TABLE} as select * from features_frame")

    sample = features.sample(min(train_rows, rows), random_state=cfg.training.seed)
    X = model_inputs(sample, feature_columns(sample, cfg))
    model = build_pipeline(cfg, X).fit(X, sample[cfg.data.target])
    model_path = workdir / "model.pkl"
    model_path.write_bytes(pickle.dumps(model))
    return warehouse_path, model_path


class Scoring:
    """The model and the warehouse, loaded once; each method is one measured path over the whole batch."""

    def __init__(self, warehouse_path: Path, model_path: Path, chunk_rows: int):
        from ml_platform.config import load_config
        from ml_platform.lib.scoring import features_query
        from ml_platform.resources.warehouse import Warehouse

        cfg = load_config(PROJECT_ROOT / "ml_platform.yaml")
        self.model = pickle.loads(model_path.read_bytes())
        self.columns = list(self.model.feature_names_in_)
        self.warehouse = Warehouse(url=str(warehouse_path))
        self.chunk_rows = chunk_rows
        self.sql = features_query(FEATURE_TABLE, columns=self.columns, id_column=cfg.data.id_column)
        self.options = {"columns": self.columns, "positive_label": cfg.data.positive_label,
                        "id_column": cfg.data.id_column, "model_name": cfg.model.name, "model_version": "1",
                        "snapshot_hash": SNAPSHOT}

    def whole_inputs(self):
        """The bare side's input: the whole batch, in memory, as the model's input frame."""
        from ml_platform.lib.modeling import model_inputs

        return model_inputs(self.warehouse.query(self.sql, [SNAPSHOT]), self.columns)

    def bare(self, X) -> int:
        self.model.predict_proba(X)
        return len(X)

    def chunks(self):
        return self.warehouse.iter_query(self.sql, [SNAPSHOT], chunk_rows=self.chunk_rows)

    def platform(self, read_ahead: int | None = None) -> int:
        """`read_ahead`: None is score_chunks' default (what the asset uses); 0 reads and scores in turn."""
        from ml_platform.lib.scoring import score_chunks

        options = self.options if read_ahead is None else {**self.options, "read_ahead": read_ahead}
        return sum(len(frame) for frame in score_chunks(self.model, self.chunks(), **options))

    def platform_with_write(self) -> int:
        from ml_platform.lib.scoring import score_chunks

        return self.warehouse.write_predictions(score_chunks(self.model, self.chunks(), **self.options))

    def clear_predictions(self) -> None:
        with self.warehouse.connect() as con:
            con.execute("drop table if exists serving.batch_predictions")
            con.execute("checkpoint")

    def whole_frame(self) -> int:
        """Scoring as one frame (the unchunked way): the whole query, then every row at once."""
        from ml_platform.lib.scoring import score_chunks

        frame = self.warehouse.query(self.sql, [SNAPSHOT])
        return sum(len(f) for f in score_chunks(self.model, [frame], **self.options, read_ahead=0))

    def phases(self, X) -> dict:
        """Where the platform's time goes, from two untimed passes without read-ahead: reading alone, then
        scoring with the model's predict_proba timed apart. Also: do its scores equal the bare call's?"""
        import numpy as np

        from ml_platform.lib.scoring import score_chunks

        mark = time.perf_counter()
        for _ in self.chunks():
            pass
        read = time.perf_counter() - mark
        model = TimedModel(self.model)
        mark = time.perf_counter()
        scores = [f["score"].to_numpy() for f in score_chunks(model, self.chunks(), **self.options, read_ahead=0)]
        total = time.perf_counter() - mark
        bare = self.model.predict_proba(X)[:, list(self.model.classes_).index(self.options["positive_label"])]
        return {
            "seconds": {
                "read chunks from DuckDB": read,
                "predict_proba": model.seconds,
                "model inputs + prediction rows (ids, version)": total - read - model.seconds,
            },
            "scores_equal": bool(np.array_equal(np.concatenate(scores), bare)),
        }


class TimedModel:
    """The model, with the time spent in its predict_proba added up."""

    def __init__(self, model):
        self.model, self.classes_, self.seconds = model, model.classes_, 0.0

    def predict_proba(self, X):
        mark = time.perf_counter()
        try:
            return self.model.predict_proba(X)
        finally:
            self.seconds += time.perf_counter() - mark


# --- measurements --------------------------------------------------------------------------------------


@contextmanager
def same_threads(threads: int | None) -> Iterator[int | None]:
    """Both sides run the model's OpenMP code (HistGradientBoosting's predict) with these threads; None
    keeps OpenMP's default (one per core). Yields the number in effect."""
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=threads, user_api="openmp"):
        yield next((p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"), None)


def bench(rows: int, repeat: int, chunk_rows: int, train_rows: int, threads: int | None, log) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-batch-scoring-{rows}-"))
    try:
        log(f"set-up: {rows:,} demo rows with features in DuckDB, fitting the configured model on "
            f"{min(train_rows, rows):,} of them ...")
        started = time.perf_counter()
        warehouse_path, model_path = build_warehouse(rows, train_rows, workdir)
        scoring = Scoring(warehouse_path, model_path, chunk_rows)
        X = scoring.whole_inputs()
        log(f" {time.perf_counter() - started:.0f}s\n")

        sides = {"bare": lambda: scoring.bare(X), "platform": scoring.platform,
                 "platform_in_turn": lambda: scoring.platform(read_ahead=0),
                 "platform_write": scoring.platform_with_write}
        runs: dict[str, list[float]] = {name: [] for name in sides}
        load = [os.getloadavg()[0]]
        with same_threads(threads) as used_threads:
            for i in range(repeat):
                # Interleaved, so a disturbance from another process spreads over all sides.
                for name, measure in sides.items():
                    if name == "platform_write":
                        scoring.clear_predictions()
                    log(f"  run {i + 1}/{repeat}  {name:<17} ...")
                    mark = time.perf_counter()
                    done = measure()
                    runs[name].append(time.perf_counter() - mark)
                    if done != rows:
                        raise RuntimeError(f"{name} handled {done:,} rows, expected {rows:,}: it would time other work")
                    log(f" {runs[name][-1]:.2f}s\n")
                    load.append(os.getloadavg()[0])
            log("  phases (untimed pass) ...\n")
            phases = scoring.phases(X)
        log("  peak memory (fresh processes) ...\n")
        memory = {path: peak_memory(warehouse_path, model_path, chunk_rows, path) for path in ("chunked", "whole")}
        model = scoring.model.steps[-1][1]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "rows": rows,
        "repeat": repeat,
        "chunk_rows": chunk_rows,
        "train_rows": min(train_rows, rows),
        "model": f"{type(model).__name__} ({getattr(model, 'n_iter_', '?')} iterations)",
        "openmp_threads": used_threads,
        "cpus": os.cpu_count(),
        "load_average_1min": {"max": max(load), "median": statistics.median(load)},
        "runs": runs,
        "phases": phases,
        "peak_memory_mb": memory,
    }


def peak_memory(warehouse_path: Path, model_path: Path, chunk_rows: int, path: str) -> float:
    """Peak resident memory one scoring path adds above the loaded model, in a fresh process (MB)."""
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--memory-once", path,
                           str(warehouse_path), str(model_path), str(chunk_rows)],
                          capture_output=True, text=True, cwd=PROJECT_ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"memory measurement of the {path} path failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])["peak_mb"]


def memory_once(path: str, warehouse_path: Path, model_path: Path, chunk_rows: int) -> dict:
    scoring = Scoring(warehouse_path, model_path, chunk_rows)
    with scoring.warehouse.connect() as con:  # DuckDB's own start-up is not the path's
        con.execute("select 1").fetchall()
    with ResidentPeak() as peak:
        scoring.platform() if path == "chunked" else scoring.whole_frame()
    return {"peak_mb": peak.above_start / 2**20}


class ResidentPeak:
    """The highest resident memory of this process while in the block, above what it was on entry (bytes).
    Sampled from /proc every millisecond (ru_maxrss cannot say: it keeps the peak of the imports)."""

    def __enter__(self) -> ResidentPeak:
        import threading

        self._stop = threading.Event()
        self.start = self.highest = _resident_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.highest = max(self.highest, _resident_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.highest = max(self.highest, _resident_bytes())

    @property
    def above_start(self) -> int:
        return self.highest - self.start


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --- report --------------------------------------------------------------------------------------------


NAMES = {
    "bare": "bare predict_proba (baseline)",
    "platform": "platform: read + score",
    "platform_in_turn": "  the same without read-ahead",
    "platform_write": "platform: read + score + write",
}


def render(result: dict) -> str:
    rows, runs = result["rows"], result["runs"]
    best = {k: min(v) for k, v in runs.items()}
    median = {k: statistics.median(v) for k, v in runs.items()}
    lines = [
        f"batch scoring benchmark: {rows:,} rows in chunks of {result['chunk_rows']:,}, "
        f"{result['model']} fitted on {result['train_rows']:,} rows, OpenMP threads {result['openmp_threads']}, "
        f"best of {result['repeat']} (median beside it)",
        f"  {'':34}{'seconds':>8}{'rows/s':>11}{'ratio vs bare':>15}{'median s':>10}{'ratio':>7}",
    ]
    for key, name in NAMES.items():
        note = f"   <- target: >= {TARGET_RATIO}" if key == "platform" else ""
        lines.append(f"  {name:34}{best[key]:>8.2f}{rows / best[key]:>11,.0f}{best['bare'] / best[key]:>15.2f}"
                     f"{median[key]:>10.2f}{median['bare'] / median[key]:>7.2f}{note}")
    lines.append("  ratio = platform rows/s / bare rows/s (= bare seconds / platform seconds)")
    phases = result["phases"]
    spent = phases["seconds"]
    lines.append("  platform's time by part (untimed, without read-ahead, s): "
                 + ", ".join(f"{k} {v:.2f}" for k, v in spent.items()) + f"; sum {sum(spent.values()):.2f}")
    lines.append(f"  platform scores equal the bare call's: {'yes' if phases['scores_equal'] else 'NO'}")
    load = result["load_average_1min"]
    if load["max"] > result["cpus"]:
        lines.append(f"  note: the machine was busy (1-min load average up to {load['max']:.1f} on {result['cpus']} "
                     "cores): other processes disturbed the runs, and OpenMP's threads wait for each other at "
                     "every tree of every chunk; a quieter machine gives steadier ratios")
    memory = result["peak_memory_mb"]
    lines.append(f"  peak memory above the loaded model (fresh process): chunked {memory['chunked']:,.0f} MB, "
                 f"whole frame at once {memory['whole']:,.0f} MB")
    return "\n".join(lines)


def target_line(result: dict) -> str:
    best = {k: min(v) for k, v in result["runs"].items()}
    ratio = best["bare"] / best["platform"]
    verdict = "MET" if ratio >= TARGET_RATIO else "NOT MET"
    with_write = best["bare"] / best["platform_write"]
    return (f"target: platform read + score throughput >= {TARGET_RATIO}x bare predict_proba at "
            f"{result['rows']:,} rows: {verdict} ({ratio:.2f}); with the write to DuckDB {with_write:.2f} (no target)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="measurements per side; each side's fastest counts")
    parser.add_argument("--chunk-rows", type=int, default=None,
                        help="rows per chunk (default: the batch_predictions asset's CHUNK_ROWS)")
    parser.add_argument("--train-rows", type=int, default=50_000, help="rows of the batch the model is fitted on")
    parser.add_argument("--threads", type=int, default=None,
                        help="OpenMP threads of the model on both sides (default: OpenMP's, one per core)")
    # Internal: peak memory of one path in this (fresh) process; prints it as JSON.
    parser.add_argument("--memory-once", nargs=4, metavar=("PATH", "WAREHOUSE", "MODEL", "CHUNK_ROWS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_once:
        path, warehouse_path, model_path, chunk_rows = args.memory_once
        print(json.dumps(memory_once(path, Path(warehouse_path), Path(model_path), int(chunk_rows))))
        return 0

    if args.chunk_rows is None:
        from ml_platform.defs.serving.assets import CHUNK_ROWS

        args.chunk_rows = CHUNK_ROWS

    def log(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    result = bench(args.rows, args.repeat, args.chunk_rows, args.train_rows, args.threads, log)
    print("\n" + render(result))
    print("\n" + target_line(result))

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"batch_scoring-{stamp}.json"
    out.write_text(json.dumps({"benchmark": "batch_scoring", "created_at": stamp, "python": sys.version.split()[0],
                               "cpus": os.cpu_count(), "target": {"min_ratio": TARGET_RATIO,
                                                                  "line": target_line(result)},
                               "result": result}, indent=2, default=str))
    print(f"results: {out.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
