"""The `ml-platform` command: thin; the work is in runner.py, lib/ and the resources.

    ml-platform run    [--config FILE] [--batch N] [--json]   materialize the lifecycle for one batch
    ml-platform status [--config FILE] [--json]               what is live: champion, challenger, lineage
    ml-platform demo   [--batches N] [--json]                 the demo scenario behind `make demo`

Exit codes: 0 success, 1 the lifecycle ran but a step failed or a check blocked it, 2 bad input
(config, arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ml_platform.config import ConfigError

BOLD, GREEN, RED, YELLOW, DIM, RESET = "\033[1m", "\033[32m", "\033[31m", "\033[33m", "\033[2m", "\033[0m"


def _color(text: str, code: str) -> str:
    return f"{code}{text}{RESET}" if sys.stdout.isatty() and not os.environ.get("NO_COLOR") else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ml-platform", description="Run and inspect the ML lifecycle.")
    parser.add_argument("--config", help="project config file (default: ML_PLATFORM_CONFIG or ./ml_platform.yaml)")
    parser.add_argument("--home", help="state directory (default: ML_PLATFORM_HOME or ./.ml_platform)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="materialize the lifecycle for one batch and print each asset's outcome")
    run.add_argument("--batch", help="demo source: the batch number to ingest (default: the next one)")
    run.add_argument("--json", action="store_true", help="machine-readable output")

    status = sub.add_parser("status", help="what is live: the champion, its lineage, and the last challenger")
    status.add_argument("--json", action="store_true")

    demo = sub.add_parser("demo", help="the demo scenario: several daily batches, a gated retraining, drift")
    demo.add_argument("--batches", type=int, default=4, help="how many daily batches to run (default 4)")
    demo.add_argument("--json", action="store_true")

    args = parser.parse_args(argv)
    try:
        from ml_platform import runner

        runner.use_environment(config_file=args.config, home=args.home)
        if args.command == "run":
            return _run(args)
        if args.command == "status":
            return _status(args)
        return _demo(args)
    except ConfigError as exc:
        print(_color("config error: ", RED) + str(exc), file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from ml_platform.runner import run_lifecycle

    result = run_lifecycle(batch=args.batch, quiet=True)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        _print_run(result)
    return 0 if result.success else 1


def _print_run(result: Any) -> None:
    marks = {"materialized": _color("✔", GREEN), "skipped": _color("–", YELLOW), "failed": _color("✘", RED)}
    print(_color(f"lifecycle run {result.run_id}", BOLD))
    for key, state in result.assets.items():
        print(f"  {marks[state]} {key:<24} {state}")
    failed_checks = [k for k, v in result.checks.items() if not v["passed"]]
    passed = len(result.checks) - len(failed_checks)
    print(f"  checks: {passed} passed, {len(failed_checks)} failed")
    for key in failed_checks:
        failures = result.checks[key]["metadata"].get("failures", "")
        print(_color(f"    ✘ {key}", RED) + (f"\n      {failures}".replace("\n", "\n      ") if failures else ""))
    gate = result.outputs.get("champion_model")
    if gate:
        print(f"  gate: version {gate['challenger_version']} {gate['decision']}; champion is "
              f"{gate['champion_version'] or 'none'}")
        for reason in gate["reasons"]:
            print(f"    {reason}")
    drift = result.outputs.get("drift_report")
    if drift:
        print(f"  drift: {'DETECTED' if drift['dataset_drift'] else 'none'} "
              f"(drifted share {drift['drifted_share']:.2f}); report {drift['report_path']}")
    for error in result.errors:
        print(_color("  error: ", RED) + error)
    print(_color(f"  full log: {result.log_file}", DIM))


def _status(args: argparse.Namespace) -> int:
    from ml_platform.status import model_status

    status = model_status()
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    print(_color(f"model {status['model']}", BOLD) + f"  (tracking store {status['tracking_uri']})")
    if not status["registered"]:
        print("  not registered yet: run `ml-platform run`")
        return 0
    champ = status["champion"]
    if champ:
        print(f"  champion: version {champ['version']}  run {champ['run_id']}")
        for key in ("roc_auc", "f1", "log_loss", "brier", "ece", "latency_p99_ms", "fairness_gap"):
            if key in champ["metrics"]:
                print(f"    {key:<16} {champ['metrics'][key]:.4f}")
        for key in ("data_snapshot_sha256", "feature_code_version", "git_commit", "seed", "config_sha256",
                    "promoted_at", "promoted_by"):
            print(f"    {key:<21} {champ['lineage'].get(key, '-')}")
    else:
        print(_color("  champion: none", YELLOW))
    chal = status["challenger"]
    if chal:
        print(f"  last challenger: version {chal['version']} — {chal['gate_decision']}")
        for reason in chal["gate_reasons"]:
            print(f"    {reason}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ml_platform.demo import run_demo

    return run_demo(batches=args.batches, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
