"""How long `ml-platform lineage --prediction-id ID` takes, end to end, as a user runs it.

Baseline (measured in the same run): `ml-platform status --json`, the same question answered through
the MLflow client (what a user without the lineage table would do). Also printed: a bare Python
start (`python -c pass`), the floor for any command.

    python bench/lineage.py                 # runs one lifecycle into a temporary home first
    python bench/lineage.py --home DIR      # or uses an existing home (e.g. after `make demo`)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "ml_platform.cli"]


def timed(command: list[str], env: dict[str, str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="an existing ML_PLATFORM_HOME with predictions (default: make one)")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    home = Path(args.home).resolve() if args.home else Path(tempfile.mkdtemp(prefix="bench-lineage-"))
    env = {**os.environ, "ML_PLATFORM_HOME": str(home), "NO_COLOR": "1"}
    if not args.home:
        print(f"running one lifecycle into {home} …", flush=True)
        subprocess.run([*CLI, "run"], env=env, cwd=ROOT, check=True, capture_output=True)

    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        prediction = con.execute("select prediction_id from serving.batch_predictions limit 1").fetchall()[0][0]

    rows = {
        "python -c pass (floor)": timed([sys.executable, "-c", "pass"], env, args.repeat),
        "ml-platform lineage --prediction-id": timed([*CLI, "lineage", "--prediction-id", prediction, "--json"],
                                                     env, args.repeat),
        "ml-platform status --json (baseline)": timed([*CLI, "status", "--json"], env, args.repeat),
    }
    baseline = statistics.median(rows["ml-platform status --json (baseline)"])
    print(f"\n{'command':<40} {'median s':>9} {'max s':>7} {'vs baseline':>12}")
    for name, times in rows.items():
        median = statistics.median(times)
        print(f"{name:<40} {median:>9.3f} {max(times):>7.3f} {median / baseline:>11.2f}x")
    lineage = statistics.median(rows["ml-platform lineage --prediction-id"])
    print(f"\ntarget: lineage from a prediction id in under 1 s: {'MET' if lineage < 1 else 'NOT MET'} "
          f"({lineage:.2f} s median of {args.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
