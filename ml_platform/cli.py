"""The `ml-platform` command: thin; the work is in runner.py, status.py, lib/ and the resources.

    ml-platform init      --data FILE [--target COL] [--id COL] [--name NAME] [--output FILE]
                          [--pipeline MODULE:FUNCTION] [--approver NAME] [--force]
                          a starter config and dbt feature model for a team's own data file
    ml-platform run       [--batch N] [--all] [--json]  bring the lifecycle up to date (recompute what changed)
    ml-platform status    [--json]                    what is live: champion, challenger, lineage, approval
    ml-platform approve   --version N --as NAME       sign off a challenger (as in the MLflow UI) and apply it
    ml-platform rollback  [--to N] [--reason TEXT] [--force] [--as NAME]
    ml-platform history   [--json]                    the audit trail of promotions, rejections, rollbacks
    ml-platform inventory [--json]                    every registered model: owner, risk tier, champion
    ml-platform lineage   (--version N | --prediction-id ID) [--json]
    ml-platform reproduce --version N [--json]        retrain from the recorded lineage and compare
    ml-platform demo      [--batches N] [--json]      the demo scenario behind `make demo`
    ml-platform serve     [--host H] [--port P]       the online prediction service (models:/<name>@champion;
                          [--version N] [--no-prediction-log] [--json]   or one pinned version, e.g. a smoke test)
    ml-platform labels    FILE [--json]               check a late label file and drop it into the landing folder
    ml-platform check     [--version N] [--only LAYER] [--readiness] [--json] [--report FILE]
                          [--endpoint URL] [--regression-set FILE]   the data, model and infrastructure tests
    ml-platform worker    [--name N] [--concurrency C] [--json]  a Celery worker for runs' steps (ML_PLATFORM_EXECUTOR=celery)
    ml-platform ui        [--dagster-port P] [--mlflow-port P] [--json]  the Dagster and MLflow UIs on the profile's stores

All take --config FILE, --home DIR and --json (machine-readable output; for serve, worker and ui: the start-up
line as one JSON object). `run` and `demo` show a progress bar on a terminal (not with --json, nor when stderr
is not a terminal, nor with ML_PLATFORM_NO_PROGRESS set). Exit codes: 0 success; 1 the work ran but failed or was
refused (a step failed, a check blocked the line, a rollback or approval was refused, a reproduction
did not match, a test of `check` failed); 2 bad input (config, arguments, unknown version or id).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

from ml_platform import settings
from ml_platform.config import ConfigError
from ml_platform.storage import StorageError

BOLD, GREEN, RED, YELLOW, DIM, RESET = "\033[1m", "\033[32m", "\033[31m", "\033[33m", "\033[2m", "\033[0m"


def _color(text: str, code: str) -> str:
    return f"{code}{text}{RESET}" if sys.stdout.isatty() and not os.environ.get("NO_COLOR") else text


def _default_actor() -> str:
    return os.environ.get("ML_PLATFORM_ACTOR") or getpass.getuser()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-platform", description="Run and govern the ML lifecycle.")
    parser.add_argument("--config", help="project config file (default: ML_PLATFORM_CONFIG or ./ml_platform.yaml)")
    parser.add_argument("--home", help="state directory (default: ML_PLATFORM_HOME or ./.ml_platform)")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        # Also after the command (`ml-platform check --config FILE`); SUPPRESS keeps the value given before it.
        p.add_argument("--config", default=argparse.SUPPRESS, help="project config file (as before the command)")
        p.add_argument("--home", default=argparse.SUPPRESS, help="state directory (as before the command)")
        p.add_argument("--json", action="store_true", help="machine-readable output (a long-running server: its "
                       "start-up line as one JSON object)")
        return p

    init = command("init", "write a starter config and dbt feature model for your own CSV or Parquet file")
    init.add_argument("--data", required=True, help="the CSV or Parquet file your notebook reads")
    init.add_argument("--target", help="the column to predict (default: a column named like a label, else the last)")
    init.add_argument("--id", dest="id_column", help="the unique id column (default: a unique column named *_id)")
    init.add_argument("--name", help="the model's name (default: from the file name)")
    init.add_argument("--output", default="ml_platform.yaml", help="the config file to write (default ./ml_platform.yaml)")
    init.add_argument("--dbt-project", help="the dbt project to add the feature model to (default: dbt_project/)")
    init.add_argument("--pipeline", help="your own model: 'module:function' returning a scikit-learn Pipeline "
                      "(the module may sit next to the config file)")
    init.add_argument("--approver", action="append", default=[], metavar="NAME",
                      help="who signs off a new champion (repeatable); with one, the model's risk tier is medium")
    init.add_argument("--force", action="store_true", help="overwrite files that exist")
    run = command("run", "bring the lifecycle up to date: recompute what is stale or missing, print each asset's outcome")
    run.add_argument("--batch", help="demo source: the batch number to ingest (default: the next one)")
    run.add_argument("--all", action="store_true", help="recompute every asset, changed or not")
    run.add_argument("--daily", action="store_true",
                     help="run the daily job (ingest, validate, features, score, monitor; no training)")
    command("status", "what is live: the champion, its lineage and approval, and the challenger")
    approve = command("approve", "sign off a challenger as NAME (the same tags a reviewer sets in the MLflow UI)")
    approve.add_argument("--version", required=True)
    approve.add_argument("--as", dest="actor", required=True, help="the approver's name (must be on the allowlist)")
    rollback = command("rollback", "point the champion back at the previous champion (or --to VERSION)")
    rollback.add_argument("--to", help="the version to roll back to (default: previous_champion)")
    rollback.add_argument("--reason", default="manual rollback", help="why (recorded)")
    rollback.add_argument("--force", action="store_true", help="allow a version that never passed the gate (recorded)")
    rollback.add_argument("--as", dest="actor", default=None, help="who (default: ML_PLATFORM_ACTOR or your login)")
    command("history", "the audit trail: every promotion, rejection, refusal and rollback")
    command("inventory", "every registered model with owner, risk tier, champion and last training date")
    lineage = command("lineage", "from a prediction or a version to its run, data, code, config and seed")
    which = lineage.add_mutually_exclusive_group(required=True)
    which.add_argument("--version")
    which.add_argument("--prediction-id")
    lineage.add_argument("--verify", action="store_true", help="also re-hash the data snapshot (slower)")
    reproduce = command("reproduce", "retrain a version from its recorded lineage and compare the holdout metrics")
    reproduce.add_argument("--version", required=True)
    demo = command("demo", "the demo scenario: daily batches, gated retraining, sign-off, drift, rollback")
    demo.add_argument("--batches", type=int, default=4, help="how many daily batches to run (default 4)")
    serve = command("serve", "serve the champion over HTTP (/predict, /invocations, /metrics ...)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--version", help="answer with this version instead of following the champion alias "
                       "(a smoke test of a candidate; canary and alias moves do not apply)")
    serve.add_argument("--no-prediction-log", action="store_true",
                       help="do not write answers to the prediction log (test traffic, e.g. `ml-platform check`)")
    check = command("check", "the data, model and infrastructure tests of a version (exit 1 when one fails)")
    check.add_argument("--version", help="the version to check (default: the newest registered version)")
    check.add_argument("--only", action="append", choices=("data", "model", "infrastructure"), metavar="LAYER",
                       help="run only this layer: data, model or infrastructure (repeatable)")
    check.add_argument("--endpoint", help="replay the regression set against this running service (default: "
                       "start one on loopback, pinned to the version)")
    check.add_argument("--regression-set", help="a regression set file to replay (default: the one recorded with "
                       "the version at evaluation)")
    check.add_argument("--readiness", action="store_true", help="also print the ML Test Score readiness table")
    check.add_argument("--report", metavar="FILE", help="also write the JSON report to FILE (a CI artifact)")
    ui = command("ui", "the Dagster UI (webserver and daemon) and the MLflow UI, on the profile's stores")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--dagster-port", type=int, default=3000)
    ui.add_argument("--mlflow-port", type=int, default=5000)
    worker = command("worker", "run a Celery worker that executes runs' steps (ML_PLATFORM_EXECUTOR=celery)")
    worker.add_argument("--name", default="worker", help="worker name (unique per host)")
    worker.add_argument("--concurrency", type=int, default=1, help="steps this worker runs at once")
    labels = command("labels", "check that a late label file parses, then copy it into the label landing folder")
    labels.add_argument("file", help="CSV or Parquet: prediction_id or the id column, the target, optional labeled_at")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at exit: a pipe's output waits in the buffer until then
        return code
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # another pipe (a subprocess's): a real error
        # The reader of our output went away (`ml-platform history | head`): stop quietly, as Unix tools do, not with
        # a traceback (and a second one when Python flushes stdout at exit: hence /dev/null in its place).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a tool ended by SIGPIPE (`git log | head` with pipefail)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe nobody reads any more (poll reports an error on its write end)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):  # stdout closed or replaced by something without a file descriptor
        return False


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings.check_environment()  # every command: lineage and init too, which skip use_environment
    except ValueError as exc:
        print(_color("error: ", RED) + str(exc), file=sys.stderr)
        return 2
    if args.command == "lineage":
        return _lineage(args)  # the fast path: no Dagster, MLflow or sklearn import
    if args.command == "init":
        return _init(args)  # there is no config yet
    try:
        from ml_platform import runner

        config = runner.use_environment(config_file=args.config, home=args.home,
                                        check_imports=args.command not in NO_ESTIMATOR_IMPORT)
        return COMMANDS[args.command](args, config)
    except ConfigError as exc:
        print(_color("config error: ", RED) + str(exc), file=sys.stderr)
        return 2
    except (LookupError, ValueError) as exc:
        print(_color("error: ", RED) + str(exc), file=sys.stderr)
        return 2
    except StorageError as exc:  # a store of the profile is not there: the message names it
        print(_color("error: ", RED) + str(exc), file=sys.stderr)
        return 1
    except RuntimeError as exc:  # refused transitions, failed reproductions: the message says what and why
        print(_color("refused: ", RED) + str(exc), file=sys.stderr)
        return 1


@contextlib.contextmanager
def _progress(args: argparse.Namespace, stream: Any = None) -> Iterator[Callable[[Any], None] | None]:
    """A progress bar for the runs of a long command (`run`, `demo`, `reproduce`), one run at a time: the run, its
    steps done out of its total, the time and the step running now. Only for a person at a terminal: nothing with
    --json, when `stream` (default stderr) is not a terminal, or with ML_PLATFORM_NO_PROGRESS set."""
    stream = stream or sys.stderr
    if getattr(args, "json", False) or not stream.isatty() or os.environ.get("ML_PLATFORM_NO_PROGRESS"):
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # The stream itself: a quiet run points sys.stderr at its log file meanwhile.
    console = Console(file=stream, no_color=bool(os.environ.get("NO_COLOR")))
    # Shown only while a run goes (the lines a command prints between runs stay as they are, unwrapped).
    bar = Progress(TextColumn("{task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(), TextColumn("steps"),
                   TimeElapsedColumn(), TextColumn("{task.fields[step]}"), console=console, transient=True,
                   redirect_stdout=False, redirect_stderr=False)
    tasks: dict[str, Any] = {}

    def report(progress: Any) -> None:
        if progress.run_id not in tasks:
            for earlier in tasks.values():
                bar.remove_task(earlier)
            tasks.clear()
            tasks[progress.run_id] = bar.add_task(f"{progress.job_name} run {progress.run_id[:8]}",
                                                  total=progress.total, step="")
            bar.start()
        step = f"failed: {progress.failed}" if progress.failed else (progress.current or "")[:32]
        bar.update(tasks[progress.run_id], completed=progress.done, total=progress.total, step=step)
        bar.refresh()  # each report shown as it comes (twice a second), not at the display's next tick
        if progress.finished:
            bar.stop()

    try:
        yield report
    finally:
        bar.stop()


def _emit(args: argparse.Namespace, payload: Any, human) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
    else:
        human(payload)


# -- init ---------------------------------------------------------------------------------------
def _init(args) -> int:
    from pathlib import Path

    from ml_platform import settings
    from ml_platform.lib import starter as init

    try:
        data = Path(args.data)
        found = init.inspect(init.read_data(data), target=args.target, name=args.name, id_column=args.id_column)
        config_path = Path(args.output)
        found.pipeline, found.approvers = args.pipeline, args.approver
        files = init.render(found, config_path=config_path,
                            dbt_dir=Path(args.dbt_project) if args.dbt_project else settings.dbt_project_dir())
        init.write(files, force=args.force)
        workspace = Path("workspace.yaml")
        entry = init.workspace_entry(found, config_path, workspace) if workspace.exists() else None
        if entry:
            with workspace.open("a") as handle:
                handle.write(entry)
    except init.InitError as exc:
        print(_color("init: ", RED) + str(exc), file=sys.stderr)
        return 2
    payload = {"model": found.name, "rows": found.rows, "task": found.task, "target": found.target,
               "labels": found.labels,
               "positive_label": found.positive_label, "id_column": found.id_column,
               "timestamp_column": found.timestamp_column, "workspace_entry_added": bool(entry),
               "columns": {g.name: g.type for g in found.columns}, "written": [str(p) for p in files],
               "csv": found.csv.model_dump() if found.csv else None, "notes": found.notes}

    def human(_: Any) -> None:
        print(_color(f"{found.name}: {found.rows} rows, {len(found.columns)} columns", BOLD))
        outcome = ("a regression: a numeric target" if found.task == "regression"
                   else f"labels {found.labels}, positive {found.positive_label!r}")
        print(f"  target {found.target} ({outcome}); "
              f"id {found.id_column or 'none'}; timestamp {found.timestamp_column or 'none'}")
        for note in found.notes:  # how the file was read: a setting found, values read as missing, a column left as text
            print(f"  {_color('note', YELLOW)} {note}")
        for path in files:
            print(f"  {_color('wrote', GREEN)} {path}")
        if entry:
            print(f"  {_color('added', GREEN)} the code location {found.name} to workspace.yaml (make ui shows it)")
        print("  next: read the config (each field is commented), then\n"
              f"    ml-platform run --config {config_path}")

    _emit(args, payload, human)
    return 0


def _announce(args: argparse.Namespace, payload: dict, text: str) -> None:
    """A long-running server's start-up line: one compact JSON object with --json (a log line), else `text`."""
    print(json.dumps(payload, default=str) if args.json else text, flush=True)


# -- run ---------------------------------------------------------------------------------------
def _run(args, config) -> int:
    from ml_platform.runner import DAILY_JOB, LIFECYCLE_JOB, run_lifecycle

    with _progress(args) as progress:
        result = run_lifecycle(batch=args.batch, quiet=True, job_name=DAILY_JOB if args.daily else LIFECYCLE_JOB,
                               incremental=not args.all, progress=progress)
    _emit(args, result.to_json(), lambda _: _print_run(result))
    return 0 if result.success else 1


def _print_run(result: Any) -> None:
    marks = {"materialized": _color("✔", GREEN), "skipped": _color("–", YELLOW), "failed": _color("✘", RED),
             "unchanged": _color("=", DIM)}
    if result.run_id:
        print(_color(f"{result.job_name} run {result.run_id}", BOLD))
    else:
        print(_color(f"{result.job_name}: nothing changed since the last run; nothing recomputed", BOLD))
    for key, state in result.assets.items():
        print(f"  {marks[state]} {key:<28} {state}{_cache_note(key, result)}")
    failed_checks = [k for k, v in result.checks.items() if not v["passed"]]
    print(f"  checks: {len(result.checks) - len(failed_checks)} passed, {len(failed_checks)} failed")
    for key in failed_checks:
        failures = result.checks[key]["metadata"].get("failures", "")
        print(_color(f"    ✘ {key}", RED) + ("\n" + textwrap.indent(str(failures), "      ") if failures else ""))
    gate = result.outputs.get("champion_model")
    if gate:
        print(f"  gate: version {gate['challenger_version']} {gate['decision']}; champion is "
              f"{gate['champion_version'] or 'none'}")
        for reason in gate["reasons"]:
            print(f"    {reason}")
        if gate["decision"] == "passed":  # risk tier medium or high
            print(_color(f"    waiting for a sign-off by one of {', '.join(gate.get('approvers') or ['governance.approvers'])}"
                         f": in the MLflow UI (`ml-platform ui`), set the tags approval = approved and approver = <name> "
                         f"on version {gate['challenger_version']}, or run `ml-platform approve --version "
                         f"{gate['challenger_version']} --as <name>`", YELLOW))
        if gate["decision"] == "rejected" and not gate["champion_version"]:
            from ml_platform import settings

            print(_color("    no champion yet, so nothing is scored or served: improve the model (training.estimator, "
                         f"the feature SQL) or, if the gate asks too much, its gate.* thresholds in "
                         f"{settings.config_path()}; the next `ml-platform run` retrains", YELLOW))
    not_stored = (result.outputs.get("validated_batches") or {}).get("columns_not_in_contract")
    if not_stored:
        print(_color(f"  note: columns not in the contract, kept in the snapshot only: {', '.join(not_stored)} "
                     "(declare them under data.columns to store and use them)", YELLOW))
    drift = result.outputs.get("drift_report")
    if drift:
        print(f"  drift: {'DETECTED' if drift['dataset_drift'] else 'none'} "
              f"(drifted share {drift['drifted_share']:.2f}); report {drift['report_path']}")
    for error in result.errors:
        print(_color("  error: ", RED) + error)
    print(_color(f"  full log: {result.log_file}", DIM))


def _cache_note(key: str, result: Any) -> str:
    """What an unchanged asset, or a training that reused a version, stands for."""
    if key == "trained_model" and result.outputs.get(key, {}).get("cache_hit"):
        return f" (cache hit: reused version {result.outputs[key]['version']}, trained from the same inputs)"
    last = result.unchanged.get(key)
    if not last or not last.get("run_id"):
        return ""
    version = f", version {last['model_version']}" if "model_version" in last else ""
    return _color(f" (cache hit: inputs and code as at {last['at']}{version})", DIM)


# -- status, history, inventory ------------------------------------------------------------------
def _status(args, config) -> int:
    from ml_platform.status import model_status, monitoring_status

    status = model_status()
    status["monitoring"] = monitoring_status()
    _emit(args, status, _print_status)
    return 0


def _print_status(status: dict) -> None:
    print(_color(f"model {status['model']}", BOLD) + f"  risk tier {status['risk_tier']}  "
          f"(tracking store {status['tracking_uri']})")
    if not status["registered"]:
        print("  not registered yet: run `ml-platform run`")
        return
    champ = status["champion"]
    if champ:
        print(f"  champion: version {champ['version']}  run {champ['run_id']}")
        for key in ("roc_auc", "f1", "log_loss", "brier", "ece", "rmse", "mae", "r2", "latency_p99_ms", "fairness_gap"):
            if key in champ["metrics"]:
                print(f"    {key:<22} {champ['metrics'][key]:.4f}")
        for key in ("data_snapshot_sha256", "training_window", "feature_code_version", "git_commit", "seed",
                    "config_sha256"):
            print(f"    {key:<22} {champ['lineage'].get(key, '-')}")
        print(f"    {'approval':<22} {champ['approval_state']} (approver {champ['approver']})")
        print(f"    {'promoted':<22} {champ['promoted_at']} by {champ['promoted_by']}")
    else:
        print(_color("  champion: none", YELLOW))
    print(f"  previous champion: {status['previous_champion'] or 'none'}")
    chal = status["challenger"]
    if chal:
        print(f"  challenger: version {chal['version']} — gate {chal['gate_decision']}, approval {chal['approval_state']}")
        if chal.get("held"):
            print(_color(f"    {chal['held']}", YELLOW))
        for reason in chal["gate_reasons"]:
            print(f"    {reason}")
        if chal.get("gate_outdated"):
            from ml_platform.lib.governance import NO_CHAMPION

            compared = "no champion" if chal["gate_compared_to"] == NO_CHAMPION else f"v{chal['gate_compared_to']}"
            print(_color(f"    the gate compared it with {compared}, and the champion has changed since: a "
                         f"sign-off would be refused; run `ml-platform run` to gate it against "
                         f"the champion first", YELLOW))
    _print_monitoring(status.get("monitoring") or {})


def _print_monitoring(m: dict) -> None:
    print(_color("  monitoring", BOLD) + " (newest materializations)")
    for key, label in (("drift", "data drift (newest batch)"), ("traffic_drift", "data drift (served traffic)")):
        d = m.get(key)
        if d:
            flag = _color("DETECTED", RED) if d.get("dataset_drift") else _color("none", GREEN)
            print(f"    {label:<28} {flag}  drifted share {d.get('drifted_share', float('nan')):.2f} "
                  f"({d.get('drifted_features', '-')}) at {d['at']}")
        else:
            print(f"    {label:<28} no report yet")
    p = m.get("prediction_drift")
    if p:
        flag = _color("DRIFTED", RED) if p.get("drifted") else _color("stable", GREEN)
        print(f"    {'score distribution':<28} {flag}  PSI {p.get('psi', float('nan')):.3f} "
              f"(threshold {p.get('psi_threshold', '-')}) on {p.get('batch_id', '-')}")
    live = m.get("live_performance")
    if live and live.get("rolling_metric") is not None:
        breach = live.get("sustained_breach")
        flag = _color(f"SLO BREACHED since {live.get('breach_started')}", RED) if breach else _color("within SLO", GREEN)
        print(f"    {'live performance':<28} {flag}  rolling {live.get('metric', '')} {live['rolling_metric']:.4f} vs floor "
              f"{live.get('floor', '-')}, {live.get('streak', 0)} day(s) below")
    elif live and live.get("skipped"):
        print(f"    {'live performance':<28} " + _color(str(live["skipped"]), DIM))
    elif live and live.get("labelled_rows"):
        print(f"    {'live performance':<28} not judged yet: {live['labelled_rows']} labelled predictions, but no "
              f"{live.get('window_days')}-day window holds performance.min_labels ({live.get('min_labels')})")
    else:
        print(f"    {'live performance':<28} no labelled predictions yet")
    for f in m.get("freshness", []):
        if f["age_hours"] is None:
            state = _color("never materialized", DIM)
        else:
            state = (_color("fresh", GREEN) if f["fresh"] else _color("STALE", RED)) + \
                f"  {f['age_hours']:.1f} h old (SLO {f['max_age_hours']:g} h)"
        print(f"    {'freshness: ' + f['name']:<28} {state}")
    c = m.get("cost")
    if c:
        parts = [f"{k} {c[k]:.4g}" for k in ("latency_p99_ms", "predictions_24h", "champion_size_mb",
                                             "champion_training_seconds") if k in c]
        print(f"    {'cost':<28} " + ", ".join(parts))


def _history(args, config) -> int:
    from ml_platform.resources import Governance, ModelRegistry, Warehouse

    records = Governance(registry=ModelRegistry(), warehouse=Warehouse()).history(config.model.name)
    _emit(args, records, _print_history)
    return 0


def _print_history(records: list[dict]) -> None:
    if not records:
        print("no transitions recorded yet")
    for r in records:
        move = f"{r['from_version'] or '-'} → {r['to_version'] or '-'}"
        forced = _color(" FORCED", RED) if r["forced"] else ""
        print(f"{r['seq']:>4}  {r['recorded_at'][:19]}  {r['action']:<22} v{r['version'] or '-':<4} champion {move:<10} "
              f"by {r['actor']}{forced}: {r['reason']}")


def _inventory(args, config) -> int:
    from ml_platform.resources import ModelRegistry

    _emit(args, ModelRegistry().inventory(), _print_inventory)
    return 0


def _print_inventory(models: list[dict]) -> None:
    if not models:
        print("no registered models")
    for m in models:
        print(f"{m['name']:<20} owner {m['owner']:<22} risk {m['risk_tier']:<7} champion {m['champion'] or 'none':<5} "
              f"versions {m['versions']:<4} last trained {m['last_trained']}")


# -- approve, rollback -----------------------------------------------------------------------------
def _approve(args, config) -> int:
    from ml_platform.resources import ModelRegistry
    from ml_platform.runner import process_approvals

    registry = ModelRegistry()
    registry.require_version(config.model.name, args.version)
    # Exactly what a reviewer does in the MLflow UI; then the approval sensor's tick, run here.
    registry.tag_version(config.model.name, args.version, {"approval": "approved", "approver": args.actor})
    outcomes = [o for o in process_approvals() if o["version"] == str(args.version)]
    outcome = outcomes[0] if outcomes else _applied_before(registry, config.model.name, str(args.version), args.actor)
    _emit(args, outcome, lambda o: print(
        (_color("promoted: ", GREEN) + f"version {o['version']} is champion ({o['reason']})") if o["promoted"]
        else (_color("refused: ", RED) + f"version {o['version']}: {o['reason']}")))
    return 0 if outcome["promoted"] else 1


def _applied_before(registry: Any, name: str, version: str, actor: str) -> dict:
    """The outcome of this sign-off when a run already applied it: the daemon's approval sensor under `make ui`
    (which may have seen the tags first), or an earlier `approve`. Read from the version once that run ended."""
    from ml_platform.runner import finished_sign_off_run

    run_id = finished_sign_off_run(name, version)
    tags = registry.version(name, version).tags
    by = f"by the approval sensor's run {run_id[:8]}" if run_id else "before"
    champion = registry.champion_version(name)
    if tags.get("approval_state") == "approved":
        signed = f"signed off by {tags.get('approved_by')} at {tags.get('approved_at')}, applied {by}"
        if champion == version:
            return {"version": version, "promoted": True, "reason": signed, "run_id": run_id}
        return {"version": version, "promoted": False, "run_id": run_id,
                "reason": f"{signed}; the champion is now v{champion}: `ml-platform rollback --to {version}` makes "
                          "it champion again"}
    if tags.get("approval_state") == "refused" and tags.get("approver") == actor:
        return {"version": version, "promoted": False, "run_id": run_id,
                "reason": f"{tags.get('approval_refused_reason')} (refused {by})"}
    return {"version": version, "promoted": False, "reason": "no new sign-off to apply", "run_id": run_id}


def _rollback(args, config) -> int:
    from ml_platform.resources import Alerts, Governance, ModelRegistry, Warehouse

    warehouse = Warehouse()
    governance = Governance(registry=ModelRegistry(), warehouse=warehouse, alerts=Alerts(warehouse=warehouse))
    record = governance.rollback(config.model.name, to=args.to, force=args.force, reason=args.reason,
                                 actor=args.actor or _default_actor())
    _emit(args, record, lambda r: print(_color("rolled back: ", GREEN) + f"champion {r['from_version']} → "
                                        f"{r['to_version']} ({r['reason']})" + (" [forced]" if r["forced"] else "")))
    return 0


# -- lineage, reproduce, demo ----------------------------------------------------------------------
def _lineage(args) -> int:
    from ml_platform import settings
    from ml_platform.config import load_config
    from ml_platform.lineage import LineageError, lineage_for_prediction, lineage_for_version

    for variable, value in (("ML_PLATFORM_HOME", args.home), ("ML_PLATFORM_CONFIG", args.config)):
        if value:
            os.environ[variable] = os.path.abspath(value)
    try:
        if args.version:
            name = load_config(settings.config_path(), check_imports=False).model.name
            record = lineage_for_version(name, args.version, verify=args.verify)
        else:
            record = lineage_for_prediction(args.prediction_id, verify=args.verify)
    except (ConfigError, LineageError) as exc:
        print(_color("error: ", RED) + str(exc), file=sys.stderr)
        return 2
    _emit(args, record, _print_lineage)
    return 0


def _print_lineage(record: dict) -> None:
    for key, value in record.items():
        if key == "config":
            continue
        if isinstance(value, dict):
            print(f"{key}:")
            for inner, v in value.items():
                print(f"  {inner:<22} {v}")
        else:
            print(f"{key:<24} {value}")


def _reproduce(args, config) -> int:
    from ml_platform.reproduce import reproduce_version

    with _progress(args) as progress:  # retraining takes as long as the training did
        result = reproduce_version(config.model.name, args.version, progress=progress)

    def human(r: dict) -> None:
        print((_color("match", GREEN) if r["match"] else _color("NO MATCH", RED)) + f": version {r['version']} "
              f"retrained from snapshot {r['snapshot_sha256'][:12]}… (run {r['reproduction_run_id']})")
        for metric, values in r["compared"].items():
            mark = "=" if values["equal"] else "≠"
            print(f"  {metric:<16} registered {values['registered']:.6f} {mark} reproduced {values['reproduced']:.6f}")
        for warning in r["warnings"]:
            print(_color("  warning: ", YELLOW) + warning)

    _emit(args, result, human)
    return 0 if result["match"] else 1


def _demo(args, config) -> int:
    from ml_platform.demo import run_demo

    with _progress(args) as progress:
        return run_demo(batches=args.batches, as_json=args.json, progress=progress)


# No estimator import up front (sklearn costs about a second): these never build a model, and `run` checks
# the estimator itself, only when it is going to train.
NO_ESTIMATOR_IMPORT = {"status", "history", "inventory", "rollback", "serve", "worker", "ui", "run"}
def _serve(args, config) -> int:
    from ml_platform.serving.app import serve

    what = f"version {args.version} (pinned)" if args.version else f"canary mode {config.serving.canary.mode}"
    _announce(args, {"model": config.model.name, "url": f"http://{args.host}:{args.port}", "version": args.version,
                     "canary_mode": None if args.version else config.serving.canary.mode,
                     "prediction_log": not args.no_prediction_log},
              f"serving model '{config.model.name}' on http://{args.host}:{args.port} ({what}); Ctrl-C stops")
    serve(config, host=args.host, port=args.port, version=args.version, log_predictions=not args.no_prediction_log)
    return 0


def _worker(args, config) -> int:
    import subprocess

    from ml_platform import settings, workers

    settings.executor()  # a clear error if the profile cannot run steps elsewhere
    if not settings.database_url():
        raise ValueError("a worker needs the PostgreSQL profile: set ML_PLATFORM_DATABASE_URL, as for the runs it serves")
    broker = settings.redacted(settings.celery_broker())
    _announce(args, {"worker": args.name, "broker": broker, "queue": settings.celery_queue(),
                     "concurrency": args.concurrency},
              f"celery worker {args.name}: steps from {broker}, {args.concurrency} at a time; Ctrl-C stops")
    home = settings.platform_paths().home
    return subprocess.call(workers.worker_argv(name=args.name, concurrency=args.concurrency),
                           env=workers.worker_environment(home), cwd=settings.PROJECT_ROOT)


def _ui(args, config) -> int:
    from ml_platform import ui

    return ui.run(host=args.host, dagster_port=args.dagster_port, mlflow_port=args.mlflow_port, as_json=args.json)


COMMANDS = {"serve": _serve, "worker": _worker, "ui": _ui, "run": _run, "status": _status, "approve": _approve, "rollback": _rollback, "history": _history,
            "inventory": _inventory, "reproduce": _reproduce, "demo": _demo}


# -- labels ----------------------------------------------------------------------------------------
def _labels(args, config) -> int:
    import shutil
    from pathlib import Path

    from ml_platform import settings
    from ml_platform.lib.labels import label_landing, read_label_file
    from ml_platform.lib.snapshots import file_sha256

    source = Path(args.file)
    labels = read_label_file(source, config.data)  # a LabelError is a ValueError: exit 2, naming the problem
    landing = label_landing(config, settings.platform_paths())
    landing.mkdir(parents=True, exist_ok=True)
    target = landing / source.name
    if target.exists() and file_sha256(target) != file_sha256(source):
        raise ValueError(f"a different {source.name} is already waiting in {landing}: rename your file")
    partial = landing / f".{source.name}.partial"  # copied beside, then renamed: never read half-written
    shutil.copyfile(source, partial)
    partial.replace(target)
    record = {"file": str(source), "copied_to": str(target), "rows": len(labels),
              "by_prediction_id": int(labels["prediction_id"].notna().sum()),
              "by_entity_id": int(labels["prediction_id"].isna().sum())}
    _emit(args, record, lambda r: print(
        _color("queued: ", GREEN) + f"{r['rows']} labels in {r['copied_to']}; the next lifecycle or daily run "
        "checks them against the logged predictions and ingests them (asset late_labels)"))
    return 0


COMMANDS["labels"] = _labels
NO_ESTIMATOR_IMPORT.add("labels")  # builds no model: the estimator import is skipped


# -- check -----------------------------------------------------------------------------------------
def _check(args, config) -> int:
    from ml_platform.check import LAYERS, run_checks

    layers = tuple(args.only) if args.only else LAYERS
    printed: list[str] = []  # the layers whose heading is out: results stream in as each test ends

    def progress(result: Any) -> None:
        if result.layer not in printed:
            printed.append(result.layer)
            print(_color(result.layer, BOLD), flush=True)
        _print_check_result(result)

    report = run_checks(config, version=args.version, layers=layers, endpoint=args.endpoint,
                        regression_set=args.regression_set, readiness=args.readiness,
                        progress=None if args.json else progress)
    payload = report.to_json()
    if args.report:
        from pathlib import Path

        Path(args.report).write_text(json.dumps(payload, indent=2, default=str))
    _emit(args, payload, _print_check_summary)
    return 0 if report.passed else 1


_MARKS = {"pass": ("✔", GREEN), "fail": ("✘", RED), "skip": ("–", YELLOW)}


def _print_check_result(result: Any) -> None:
    mark, code = _MARKS[result.status]
    print(f"  {_color(mark, code)} {result.name:<24} {result.summary}  {_color(f'({result.seconds:.1f}s)', DIM)}")
    for line in result.details if result.status == "fail" else result.details[:3]:
        print(_color(f"      {line}", "" if result.status == "fail" else DIM), flush=True)


def _print_check_summary(report: dict) -> None:
    counts = report["counts"]
    verdict = _color("check passed", GREEN) if report["passed"] else _color("check FAILED", RED)
    print(f"{verdict}: {report['model']} v{report['version']} (champion {report['champion'] or 'none'}): "
          f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    failed = [r["key"] for r in report["results"] if r["status"] == "fail"]
    if failed:
        print("  failed: " + ", ".join(failed))
    if report["readiness"]:
        _print_readiness(report["readiness"], report)


def _print_readiness(table: dict, report: dict) -> None:
    states = {"pass": GREEN, "fail": RED, "not run": YELLOW, "absent": DIM}
    print()
    print(_color(f"ML Test Score readiness: {report['model']} v{report['version']}", BOLD) +
          " (Breck et al. 2017; scoring in docs/checks.md)")
    for section, score in table["sections"].items():
        print(_color(f"{section:<16}", BOLD) + f"{score:.1f} / {table['max_per_section'][section]}")
        for row in (r for r in table["rows"] if r["section"] == section):
            state = _color(f"{row['state']:<8}", states[row["state"]])
            notes = "; ".join(e["note"] for e in row["evidence"].values() if e["state"] in ("fail", "not run"))
            print(f"  {state} {row['points']:.1f}  {row['test']:<54} {row['how']}" + (f" [{notes}]" if notes else ""))
    print(_color(f"overall score {table['overall']:.1f}", BOLD) + f" (the lowest section): {table['meaning']}")


COMMANDS["check"] = _check


if __name__ == "__main__":
    sys.exit(main())
