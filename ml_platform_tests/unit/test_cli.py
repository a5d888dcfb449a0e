"""The command line: --config and --home are accepted before or after the command; every command takes --json;
the progress bar of `run` and `demo`."""

import io

from ml_platform.cli import _parser, _progress
from ml_platform.runner import PROGRESS_TAG, RunProgress, watch_progress


def test_config_and_home_before_or_after_the_command():
    before = _parser().parse_args(["--config", "a.yaml", "--home", "h", "check", "--only", "model"])
    after = _parser().parse_args(["check", "--config", "b.yaml", "--json", "--only", "model", "--only", "data"])
    neither = _parser().parse_args(["serve", "--version", "3", "--no-prediction-log"])
    assert (before.config, before.home, before.only) == ("a.yaml", "h", ["model"])
    assert (after.config, after.home, after.json, after.only) == ("b.yaml", None, True, ["model", "data"])
    assert (neither.config, neither.version, neither.no_prediction_log) == (None, "3", True)


def test_every_command_accepts_json():
    commands = _parser()._subparsers._group_actions[0].choices
    assert {"run", "status", "demo", "serve", "ui", "worker", "check", "labels", "approve", "rollback"} <= set(commands)
    lacking = [name for name, sub in commands.items() if not any("--json" in a.option_strings for a in sub._actions)]
    assert lacking == []
    assert _parser().parse_args(["ui", "--json", "--dagster-port", "3001"]).json is True


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_shows_the_run_its_steps_and_the_step_running_and_only_on_a_terminal():
    run_id = "0123abcd-0000-0000-0000-000000000000"
    terminal = _Terminal()
    with _progress(_parser().parse_args(["run"]), stream=terminal) as report:
        report(RunProgress(run_id, "lifecycle", done=3, total=20, current="trained_model"))
        report(RunProgress(run_id, "lifecycle", done=20, total=20, finished=True))  # the bar goes away
        shown = terminal.getvalue()
        print("after the run", file=terminal)  # what the command prints next is left as it is
    assert "lifecycle run 0123abcd" in shown and "3/20" in shown and "trained_model" in shown and "20/20" in shown
    assert terminal.getvalue() == shown + "after the run\n"
    for args, stream in ((["run", "--json"], _Terminal()), (["demo"], io.StringIO())):
        with _progress(_parser().parse_args(args), stream=stream) as report:
            assert report is None
        assert stream.getvalue() == ""


def test_a_real_run_reports_each_step_until_all_are_done():
    """The progress a run reports, read from a real Dagster instance's event log while the run goes."""
    import dagster as dg

    @dg.asset
    def first() -> int:
        return 1

    @dg.asset
    def second(first: int) -> int:
        return first + 1

    reports: list[RunProgress] = []
    with dg.DagsterInstance.ephemeral() as instance:
        with watch_progress(instance, "token-1", reports.append, interval=0.05):
            result = dg.materialize([first, second], instance=instance, tags={PROGRESS_TAG: "token-1"})
    assert result.success
    assert reports, "the run was reported at least once (the last report comes after it ends)"
    assert {r.run_id for r in reports} == {result.run_id}
    last = reports[-1]
    assert (last.done, last.total, last.current, last.failed, last.finished) == (2, 2, None, 0, True)
    assert all(r.done <= r.total for r in reports)


def test_the_run_summary_prints_each_failed_checks_failures_under_it(capsys):
    from ml_platform.cli import _print_run
    from ml_platform.runner import LifecycleResult

    failures = "- label file a.csv: unknown ids (e.g. '9')\n- label file b.csv: labels outside data.labels"
    _print_run(LifecycleResult(success=True, run_id="r1", assets={"late_labels": "materialized"}, checks={
        "late_labels:label_files_accepted": {"passed": False, "metadata": {"failures": failures}},
        "drift_report:no_dataset_drift": {"passed": False, "metadata": {}},
    }, outputs={"validated_batches": {"columns_not_in_contract": ["Region"]}}))
    lines = capsys.readouterr().out.splitlines()
    assert "  note: columns not in the contract, kept in the snapshot only: Region" in "\n".join(lines)
    at = next(i for i, line in enumerate(lines) if "late_labels:label_files_accepted" in line)
    assert lines[at + 1:at + 3] == ["      - label file a.csv: unknown ids (e.g. '9')",
                                    "      - label file b.csv: labels outside data.labels"]
    assert "drift_report:no_dataset_drift" in lines[at + 3]  # a check without failures prints its name only


def test_a_rejected_first_model_says_what_to_change(capsys):
    from ml_platform.cli import _print_run
    from ml_platform.runner import LifecycleResult

    gate = {"challenger_version": "1", "decision": "rejected", "champion_version": None,
            "reasons": ["FAIL calibration error 0.1191 > 0.1", "pass roc_auc 0.6360 ≥ floor 0.6000"]}
    _print_run(LifecycleResult(success=True, run_id="r1", outputs={"champion_model": gate}))
    shown = capsys.readouterr().out
    assert "gate: version 1 rejected; champion is none" in shown and "FAIL calibration error 0.1191 > 0.1" in shown
    assert "no champion yet, so nothing is scored or served" in shown and "gate.* thresholds in" in shown


def test_status_says_why_the_live_metric_is_not_judged_yet(capsys):
    """Labels stored but no window with enough of them is not the same answer as no labels at all."""
    from ml_platform.cli import _print_monitoring

    def live_line(live: dict | None) -> str:
        _print_monitoring({"live_performance": live, "freshness": []})
        return next(line for line in capsys.readouterr().out.splitlines() if "live performance" in line)

    assert "no labelled predictions yet" in live_line(None)
    assert ("not judged yet: 301 labelled predictions, but no 3-day window holds performance.min_labels (50)"
            in live_line({"labelled_rows": 301, "window_days": 3, "min_labels": 50}))
    assert "within SLO  rolling roc_auc 0.8100 vs floor 0.7" in live_line(
        {"metric": "roc_auc", "rolling_metric": 0.81, "floor": 0.7, "labelled_rows": 900, "sustained_breach": False})


def test_a_version_waiting_for_a_sign_off_says_who_signs_and_how(capsys):
    from ml_platform.cli import _print_run
    from ml_platform.runner import LifecycleResult

    gate = {"challenger_version": "2", "decision": "passed", "champion_version": "1", "reasons": ["pass ..."],
            "approvers": ["alice@example.com", "bob@example.com"]}
    _print_run(LifecycleResult(success=True, run_id="r1", outputs={"champion_model": gate}))
    shown = " ".join(capsys.readouterr().out.split())
    assert "gate: version 2 passed; champion is 1" in shown
    assert ("waiting for a sign-off by one of alice@example.com, bob@example.com: in the MLflow UI (`ml-platform ui`), "
            "set the tags approval = approved and approver = <name> on version 2, or run `ml-platform approve "
            "--version 2 --as <name>`") in shown


def test_status_warns_that_a_challenger_gated_against_another_champion_cannot_be_signed_off(capsys):
    from ml_platform.cli import _print_status

    challenger = {"version": "2", "gate_decision": "passed", "approval_state": "pending", "gate_reasons": [],
                  "gate_compared_to": "none (first model)", "gate_outdated": True}
    _print_status({"model": "churn", "risk_tier": "medium", "tracking_uri": "sqlite://", "registered": True,
                   "champion": None, "previous_champion": None, "challenger": challenger, "versions": 2})
    shown = " ".join(capsys.readouterr().out.split())
    assert ("the gate compared it with no champion, and the champion has changed since: a sign-off would be "
            "refused; run `ml-platform run` to gate it against the champion first") in shown


def test_output_to_a_reader_that_went_away_ends_quietly(tmp_path):
    """`ml-platform status | head`: the command stops like a Unix tool (exit 141, as for SIGPIPE), no traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        result = subprocess.run([str(Path(sys.executable).parent / "ml-platform"), "--home", str(tmp_path), "status"],
                                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")
