"""`ml-platform check`: the tests a model change must pass before promotion, as one command a CI runs.

A change can be new code, new data or a new model; each passes the same three layers (docs/checks.md):

    data            the contract suite on the version's training snapshot and on the newest batch, and a
                    schema comparison between the two
    model           training converged; the promotion gate re-run on the frozen holdout (the trivial baseline
                    and the champion); a floor per slice; robustness to small input noise; known-hard cases
    infrastructure  the artifact's digest is the one recorded at evaluation; the version loads and answers in
                    a serving process; the regression set comes back as recorded; the rollback target is
                    ready; the version reproduces from its lineage

The version under check is `--version N`, else the newest registered version: what the change just
trained, whether the gate promoted it or not. The check reads: it never promotes, tags or moves an alias.
(Reproduction writes one run into the scratch experiment `<model>-reproduce`, as `ml-platform reproduce`
does.) Bad input (a malformed known-hard cases file, a slice column that does not exist, a regression set
of another version) raises CheckInputError before anything is judged: exit code 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ml_platform import keys, settings
from ml_platform.lib.model_checks import CheckInputError, Outcome

LAYERS = ("data", "model", "infrastructure")


@dataclass
class CheckResult:
    layer: str
    name: str
    status: str  # pass | fail | skip
    summary: str
    details: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.layer}.{self.name}"


@dataclass
class CheckReport:
    model: str
    version: str
    champion: str | None
    compared_to: str | None
    layers: list[str]
    results: list[CheckResult] = field(default_factory=list)
    readiness: dict | None = None

    @property
    def passed(self) -> bool:
        return not any(r.status == "fail" for r in self.results)

    def to_json(self) -> dict:
        counts = {s: sum(r.status == s for r in self.results) for s in ("pass", "fail", "skip")}
        return {"model": self.model, "version": self.version, "champion": self.champion,
                "compared_to": self.compared_to, "passed": self.passed, "counts": counts, "layers": self.layers,
                "results": [asdict(r) | {"key": r.key} for r in self.results], "readiness": self.readiness}


class Subject:
    """The version under check, and what its tests share (each loaded once, when first needed)."""

    def __init__(self, config: Any, version: str):
        from ml_platform.resources import ModelRegistry

        self.config, self.name, self.version = config, config.model.name, version
        self.registry = ModelRegistry()
        self.tags = dict(self.registry.require_version(self.name, version).tags)
        self.champion = self.registry.champion_version(self.name)

    @cached_property
    def lineage(self) -> dict | None:
        from ml_platform.lineage import LineageError, lineage_for_version

        try:
            return lineage_for_version(self.name, self.version)
        except LineageError:
            return None

    @cached_property
    def training_config(self) -> Any:
        """The config the version was trained with (its split and seed), else the current one."""
        from ml_platform.reproduce import recorded_config

        if self.lineage and self.lineage.get("config"):
            return recorded_config(self.lineage, self.tags.get("config_file"))
        return self.config

    @cached_property
    def training_frame(self) -> Any:
        from ml_platform.lib.snapshots import read_snapshot

        path, sha = self.tags.get("data_snapshot_path"), self.tags.get("data_snapshot_sha256")
        if not path or not sha:
            raise RuntimeError(f"{self.name} v{self.version} has no recorded training snapshot "
                               "(tags data_snapshot_path, data_snapshot_sha256): was it trained by the lifecycle?")
        return read_snapshot(Path(path), sha)

    @cached_property
    def split(self) -> Any:
        from ml_platform.lib.modeling import split_training_data

        return split_training_data(self.training_frame, self.training_config)

    @cached_property
    def model(self) -> Any:
        return self.registry.load_model(self.name, self.version)  # refused if its files changed since evaluation

    @cached_property
    def columns(self) -> list[str]:
        return list(getattr(self.model, "feature_names_in_", self.split.feature_columns))

    @cached_property
    def holdout_inputs(self) -> Any:
        from ml_platform.lib.modeling import model_inputs

        return model_inputs(self.split.holdout, self.columns)

    @cached_property
    def holdout_scores(self) -> Any:
        from ml_platform.lib.modeling import positive_scores

        return positive_scores(self.model, self.holdout_inputs, self.config.data.positive_label)

    @cached_property
    def compared_to(self) -> str | None:
        """The champion the gate compares with: the current one, or (when the version is champion) the one it
        was compared with when it was gated; None for a first model."""
        if self.champion and self.champion != self.version:
            return self.champion
        earlier = self.tags.get("gate_compared_to", "")
        return earlier if earlier.isdigit() else None

    def regression_set(self, override: Path | None) -> Any:
        """The regression set to replay: `override` (a file), else the one recorded with the version."""
        from ml_platform.lib.artifacts import DIGEST_TAG
        from ml_platform.lib.regression_set import RegressionSet

        if override is not None:
            found = RegressionSet.read(override)
            found.require_version(self.name, self.version, self.tags.get(DIGEST_TAG), str(override))
            return found
        return recorded_regression_set(self.registry, self.name, self.version)

    @cached_property
    def newest_batch(self) -> tuple[dict, Any] | None:
        """The newest ingested batch (raw_batch's latest materialization) and its rows; None before any."""
        from ml_platform.lib.snapshots import read_snapshot

        batch = newest_batch()
        return None if batch is None else (batch, read_snapshot(Path(batch["path"]), batch["sha256"]))

    @cached_property
    def monitoring(self) -> dict:
        from ml_platform.status import monitoring_status

        return monitoring_status()

    def input_kinds(self) -> dict[str, str]:
        kinds = {"f": "number", "i": "integer", "u": "integer", "b": "boolean"}
        return {c: kinds.get(self.holdout_inputs[c].dtype.kind, "text") for c in self.columns}


def recorded_regression_set(registry: Any, name: str, version: str) -> Any:
    """The regression set recorded with `version` at evaluation (None if it has none)."""
    from ml_platform.lib.regression_set import ARTIFACT_PATH, RegressionSet

    run_id = registry.version(name, version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = registry.client().download_artifacts(run_id, ARTIFACT_PATH, tmp)
        except Exception:  # not recorded (a version evaluated before regression sets existed)
            return None
        return RegressionSet.read(Path(local))


# -- the command ------------------------------------------------------------------------------------------
def run_checks(config: Any, *, version: str | None = None, layers: tuple[str, ...] = LAYERS,
               endpoint: str | None = None, regression_set: str | None = None, readiness: bool = False,
               progress: Callable[[CheckResult], None] | None = None) -> CheckReport:
    """Run the layers' tests on one version; each result goes to `progress` as it is known."""
    from ml_platform.resources import ModelRegistry

    unknown = sorted(set(layers) - set(LAYERS))
    if unknown:
        raise CheckInputError(f"unknown layer(s) {unknown}: choose from {', '.join(LAYERS)}")
    versions = ModelRegistry().versions(config.model.name)
    if not versions:
        raise CheckInputError(f"model '{config.model.name}' has no registered version to check: run "
                              "`ml-platform run` first (or point --home at the platform's home)")
    subject = Subject(config, str(version) if version else str(versions[-1].version))
    override = Path(regression_set).resolve() if regression_set else (
        config.resolve_path(config.checks.regression.path) if config.checks.regression.path else None)
    inputs = {**_preflight(subject, layers, override), "endpoint": endpoint, "regression_set": override}

    report = CheckReport(model=subject.name, version=subject.version, champion=subject.champion,
                         compared_to=subject.compared_to, layers=[layer for layer in LAYERS if layer in layers])
    tests = {"data": (_training_snapshot_contract, _newest_batch_contract, _schema_match),
             "model": (_training_converges, _promotion_gate, _slices, _robustness, _known_hard_cases),
             "infrastructure": (_artifact_digest, _serving, _rollback, _reproduce)}
    for layer in report.layers:
        for test in tests[layer]:
            for result in _timed(layer, test, subject, inputs):
                report.results.append(result)
                if progress:
                    progress(result)
    if readiness:
        from ml_platform.lib.readiness import readiness_table

        report.readiness = readiness_table(_readiness_evidence(subject, report))
    return report


def _preflight(subject: Subject, layers: tuple[str, ...], override: Path | None) -> dict:
    """Read and check every input file before a test runs: bad input stops the check with exit code 2.
    A subject whose data or model cannot be loaded is not bad input: its tests fail and say why."""
    from ml_platform.lib.hard_cases import load_hard_cases
    from ml_platform.lib.model_checks import did_you_mean, perturbation_columns

    checks, found = subject.config.checks, {}
    if "infrastructure" in layers and override is not None:
        subject.regression_set(override)  # RegressionSetError names both versions
    if "model" not in layers:
        return found
    try:
        holdout, X = subject.split.holdout, subject.holdout_inputs
    except Exception:  # no snapshot, an altered artifact: not bad input; the tests fail and say why
        return found
    slices = checks.slices
    if slices is not None:
        where = f"{subject.config.source_file.name}: checks.slices"
        if slices.column not in holdout.columns:
            raise CheckInputError(f"{where}.column: '{slices.column}' is not a column of the feature table"
                                  f"{did_you_mean(slices.column, [str(c) for c in holdout.columns])}")
        values = set(holdout[slices.column].astype(str))
        unknown = sorted(set(slices.floors) - values)
        if unknown:
            raise CheckInputError(f"{where}.floors: the holdout has no slice {unknown} of '{slices.column}' "
                                  f"(its values: {sorted(values)[:20]})")
    perturbation_columns(X, checks.perturbation.columns)
    if checks.known_hard_cases:
        found["hard_cases"] = load_hard_cases(subject.config.resolve_path(checks.known_hard_cases),
                                              subject.input_kinds(), subject.config.data.columns,
                                              subject.config.model.task)
    return found


def _timed(layer: str, test: Callable, subject: Subject, inputs: dict) -> Iterator[CheckResult]:
    name = test.__name__.strip("_")
    started = time.perf_counter()
    try:
        outcomes = test(subject, inputs)
        if isinstance(outcomes, Outcome):
            outcomes = [(name, outcomes)]
    except CheckInputError:
        raise
    except Exception as exc:  # the test could not run: that is a failure, with the reason
        outcomes = [(name, Outcome("fail", f"could not run: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                                   str(exc).splitlines()[1:6]))]
    seconds = (time.perf_counter() - started) / max(len(outcomes), 1)
    for test_name, outcome in outcomes:
        yield CheckResult(layer, test_name, outcome.status, outcome.summary, list(outcome.details),
                          dict(outcome.numbers), round(seconds, 2))


# -- data -------------------------------------------------------------------------------------------------
def _contract_outcome(frame: Any, config: Any, what: str) -> Outcome:
    from ml_platform.lib.validation import validate_batch

    report = validate_batch(frame, config.data)
    passed = [c.name for c in report.checks if c.passed]
    return Outcome.judged(report.failures(), f"{what}: {report.rows:,} rows pass the data contract "
                          f"({len(passed)} checks)", f"{what} breaks the data contract",
                          [f"failed check: {c.name}" for c in report.checks if not c.passed], rows=report.rows)


def _training_snapshot_contract(subject: Subject, inputs: dict) -> Outcome:
    frame = subject.training_frame
    return _contract_outcome(frame, subject.config, f"training snapshot {subject.tags['data_snapshot_sha256'][:12]}…")


def newest_batch() -> dict | None:
    """The newest ingested batch (raw_batch's latest materialization): batch id, snapshot path and SHA-256."""

    from ml_platform.runner import dagster_instance

    with dagster_instance() as instance:
        event = instance.get_latest_materialization_event(keys.key("raw_batch"))
    if event is None or event.asset_materialization is None:
        return None
    meta = event.asset_materialization.metadata
    plain = {key: getattr(meta.get(key), "value", meta.get(key)) for key in ("batch_id", "snapshot_path",
                                                                          "snapshot_sha256")}
    return {"batch_id": plain["batch_id"], "path": plain["snapshot_path"], "sha256": plain["snapshot_sha256"]}


def _newest_batch_contract(subject: Subject, inputs: dict) -> Outcome:
    newest = subject.newest_batch
    if newest is None:
        return Outcome("skip", "no batch ingested yet (raw_batch was never materialized in this home)")
    batch, frame = newest
    return _contract_outcome(frame, subject.config, f"newest batch {batch['batch_id']}")


def _schema_match(subject: Subject, inputs: dict) -> Outcome:
    from ml_platform.lib.model_checks import compare_schemas

    newest = subject.newest_batch
    if newest is None:
        return Outcome("skip", "no batch ingested yet: nothing to compare the training snapshot with")
    return compare_schemas(subject.training_frame, newest[1], subject.config.data.columns)


# -- model ------------------------------------------------------------------------------------------------
def _training_converges(subject: Subject, inputs: dict) -> Outcome:
    from ml_platform.lib.model_checks import training_convergence

    split = subject.split
    return training_convergence(subject.model, split.X_train[subject.columns], split.y_train,
                                subject.config.data.positive_label)


def _promotion_gate(subject: Subject, inputs: dict) -> Outcome:
    from ml_platform.defs.evaluation.assets import evaluate_on_holdout, trivial_baseline
    from ml_platform.lib.gate import decide_promotion

    cfg, split = subject.training_config, subject.split
    metrics = evaluate_on_holdout(subject.model, split, cfg).metrics
    baseline = trivial_baseline(split, cfg)
    other = subject.compared_to
    champion = None
    if other is not None:
        champion = evaluate_on_holdout(subject.registry.load_model(subject.name, other), split, cfg,
                                       latency_rows=20).metrics
    decision = decide_promotion(gate=subject.config.gate, challenger=metrics, champion=champion, baseline=baseline)
    against = f"champion v{other}" if other else "the trivial baseline and the floor (first model)"
    return Outcome("pass" if decision.promote else "fail",
                   f"v{subject.version} {'passes' if decision.promote else 'fails'} the promotion gate against "
                   f"{against} on the frozen holdout", list(decision.reasons),
                   {"metric": decision.metric, "value": decision.challenger_value, "compared_to": other,
                    "champion_value": decision.champion_value, **{f"holdout_{k}": v for k, v in metrics.items()}})


def _slices(subject: Subject, inputs: dict) -> Outcome:
    import numpy as np

    from ml_platform.lib.model_checks import slice_outcome

    spec = subject.config.checks.slices
    if spec is None:
        return Outcome("skip", "no slice column configured (checks.slices)", numbers={"configured": False})
    if subject.config.model.task == "regression":  # the numeric target against the predicted values
        y = np.asarray(subject.split.y_holdout, dtype=float)
    else:
        y = (np.asarray(subject.split.y_holdout) == subject.config.data.positive_label).astype(int)
    return slice_outcome(subject.split.holdout, y, np.asarray(subject.holdout_scores), column=spec.column,
                         metric=spec.metric, floor=spec.floor, floors=spec.floors, min_rows=spec.min_rows)


def _robustness(subject: Subject, inputs: dict) -> Outcome:
    from ml_platform.lib.model_checks import perturbation_outcome

    spec = subject.config.checks.perturbation
    return perturbation_outcome(subject.model, subject.holdout_inputs, positive_label=subject.config.data.positive_label,
                                columns=spec.columns, noise=spec.noise, tolerance=spec.tolerance,
                                max_share=spec.max_share, rows=spec.rows, seed=subject.training_config.training.seed)


def _known_hard_cases(subject: Subject, inputs: dict) -> Outcome:
    import numpy as np
    import pandas as pd

    from ml_platform.lib.hard_cases import evaluate_hard_cases

    cases = inputs.get("hard_cases")
    if cases is None:
        return Outcome("skip", "no known-hard cases file configured (checks.known_hard_cases)",
                       numbers={"configured": False})
    from ml_platform.lib.modeling import model_inputs  # the frame every other path gives the model

    model, columns = subject.model, subject.columns

    def frame(rows: list[dict]) -> pd.DataFrame:
        return model_inputs(pd.DataFrame(rows, columns=columns), columns)

    if subject.config.model.task == "regression":
        classes: list[Any] = []

        def score(rows: list[dict]) -> tuple[list[float], list[Any]]:
            predicted = [float(v) for v in model.predict(frame(rows))]
            return predicted, predicted
    else:
        classes = [c.item() if hasattr(c, "item") else c for c in model.classes_]
        positive = classes.index(subject.config.data.positive_label)

        def score(rows: list[dict]) -> tuple[list[float], list[Any]]:
            proba = np.asarray(model.predict_proba(frame(rows)))
            return [float(p) for p in proba[:, positive]], [classes[i] for i in np.argmax(proba, axis=1)]

    outcome = evaluate_hard_cases(cases, score, classes)
    return Outcome(outcome.status, outcome.summary, [f"file {cases.path}", *outcome.details], outcome.numbers)


# -- infrastructure ---------------------------------------------------------------------------------------
def _artifact_digest(subject: Subject, inputs: dict) -> Outcome:
    from ml_platform.lib.artifacts import DIGEST_TAG, ArtifactIntegrityError, verify_digest

    failures, lines = [], []
    versions = [subject.version] + ([subject.champion] if subject.champion not in (None, subject.version) else [])
    for version in versions:
        role = "the version under check" if version == subject.version else "the champion (deployed)"
        recorded = subject.registry.version(subject.name, version).tags.get(DIGEST_TAG)
        with tempfile.TemporaryDirectory() as tmp:
            _, actual = subject.registry.fetch_model(subject.name, version, Path(tmp))
        try:
            verify_digest(subject.name, version, actual, recorded)
            lines.append(f"v{version} ({role}): files hash to {actual[:12]}…, as recorded at evaluation")
        except ArtifactIntegrityError as exc:
            failures.append(f"v{version} ({role}): {exc}")
    return Outcome.judged(failures, f"the registered artifact{'s are' if len(versions) > 1 else ' is'} the "
                          "evaluated one (digest recorded at evaluation)",
                          "a registered artifact is not the one that was evaluated", lines)


def _serving(subject: Subject, inputs: dict) -> list[tuple[str, Outcome]]:
    """The version loads and answers in a serving process (started here on loopback, pinned to the version and
    writing no prediction log; or the running `--endpoint`), and the regression set comes back as recorded."""
    timeout, endpoint = subject.config.checks.serve_timeout_seconds, inputs["endpoint"]
    context = contextlib.nullcontext(ServedModel(endpoint.rstrip("/"), None, None)) if endpoint \
        else serving_process(subject.version, timeout)
    with context as served:
        ready = served.wait_ready(timeout)
        return [("serving", _served_version_outcome(subject, served, ready)),
                ("regression_set", _regression_outcome(subject, served, ready, inputs["regression_set"]))]


def _served_version_outcome(subject: Subject, served: ServedModel, ready: dict) -> Outcome:
    where = served.url + (" (started by the check)" if served.process else "")
    if not ready.get("ready"):
        return Outcome("fail", f"the serving process at {where} did not become ready", [
            f"/ready: {ready.get('reason') or ready}", *served.log_tail()])
    answering = str(ready.get("champion_version"))
    if answering != subject.version:
        return Outcome("fail", f"{where} answers with v{answering}, not v{subject.version} (the version under check)")
    info = served.get("/version")
    return Outcome("pass", f"v{subject.version} loads and answers in the serving process at {where}",
                   [f"/ready: {ready}", f"refused versions: {info.get('refused_versions') or 'none'}"])


def _regression_outcome(subject: Subject, served: ServedModel, ready: dict, override: Path | None) -> Outcome:
    from ml_platform.lib.regression_set import compare_scores

    recorded = subject.regression_set(override)
    if recorded is None:
        return Outcome("fail", f"v{subject.version} has no regression set (recorded at evaluation since this "
                               "platform records them): re-run the lifecycle to evaluate a new version")
    if not ready.get("ready"):
        return Outcome("fail", "not replayed: the serving process is not ready")
    tolerance = subject.config.checks.regression.tolerance
    status, body = served.post("/predict", {"records": recorded.rows})
    if status != 200:
        return Outcome("fail", f"/predict answered {status}", [json.dumps(body)[:500]])
    predictions = body["predictions"]
    problems = compare_scores(recorded, [p["score"] for p in predictions], tolerance,
                              [p["model_version"] for p in predictions])
    worst = max(abs(p["score"] - s) for p, s in zip(predictions, recorded.scores, strict=True))
    source = str(override) if override else f"recorded with v{recorded.version} at evaluation"
    return Outcome.judged(problems, f"{len(recorded.rows)} rows answered as recorded (largest difference "
                          f"{worst:.2e} ≤ {tolerance:g})", f"{len(problems)} of {len(recorded.rows)} regression rows "
                          "differ from the recorded predictions", [f"regression set: {source}"],
                          rows=len(recorded.rows), largest_difference=worst)


def _rollback(subject: Subject, inputs: dict) -> Outcome:
    """The version a rollback would return to is ready: it passed the gate, its artifact is the evaluated
    one, it loads, and it answers its own regression set as recorded. Nothing is moved."""
    from ml_platform.lib.governance import PASSED_GATE
    from ml_platform.lib.regression_set import compare_scores, score_rows
    from ml_platform.resources.governance import PREVIOUS_CHAMPION

    registry, name = subject.registry, subject.name
    if subject.champion and subject.champion != subject.version:
        target, why = subject.champion, f"if v{subject.version} is promoted, a rollback returns to champion v{subject.champion}"
    else:
        target = registry.alias_version(name, PREVIOUS_CHAMPION)
        why = f"a rollback from champion v{subject.version} returns to previous_champion v{target}"
    if target is None or target == subject.version:
        return Outcome("skip", "no earlier champion to roll back to (a first model)")
    failures, lines = [], [why]
    decision = registry.version(name, target).tags.get("gate_decision", "not gated")
    if decision not in PASSED_GATE:
        failures.append(f"v{target} never passed the gate (gate_decision: {decision}): the rollback would be refused")
    model = registry.load_model(name, target, require_digest=True)  # as the serving process will load it
    lines.append(f"v{target} loads; its artifact is the evaluated one")
    recorded = recorded_regression_set(registry, name, target)
    if recorded is None:
        lines.append(f"v{target} has no regression set: its answers were not compared")
    else:
        problems = compare_scores(recorded, score_rows(model, recorded, subject.config.data.positive_label),
                                  subject.config.checks.regression.tolerance)
        failures.extend(f"v{target}: {p}" for p in problems)
        if not problems:
            lines.append(f"v{target} answers its {len(recorded.rows)} regression rows as recorded")
    return Outcome.judged(failures, f"rollback target v{target} is ready (passed the gate, loads, answers as recorded)",
                          f"rollback to v{target} would not work", lines, target=target)


def _reproduce(subject: Subject, inputs: dict) -> Outcome:
    from ml_platform.reproduce import reproduce_version

    if not subject.config.checks.reproduce:
        return Outcome("skip", "turned off (checks.reproduce: false)", numbers={"configured": False})
    result = reproduce_version(subject.name, subject.version)
    compared = result["compared"]
    lines = [f"{m}: registered {c['registered']} {'=' if c['equal'] else '≠'} reproduced {c['reproduced']}"
             for m, c in compared.items()] + [f"warning: {w}" for w in result["warnings"]]
    if result["match"]:
        return Outcome("pass", f"v{subject.version} retrained from its lineage gives identical holdout metrics "
                       f"({len(compared)} compared; run {result['reproduction_run_id']})", lines)
    return Outcome("fail", f"v{subject.version} does not reproduce: {', '.join(result['differences']) or 'nothing compared'} "
                   "differ", lines)


# -- the serving process ----------------------------------------------------------------------------------
@dataclass
class ServedModel:
    url: str
    process: subprocess.Popen | None
    log_path: Path | None

    def _request(self, path: str, payload: Any = None) -> tuple[int, Any]:
        from ml_platform.serving.traffic import CHECK_HEADER

        data = None if payload is None else json.dumps(payload).encode()
        # The check header: the endpoint answers with its champion and logs these rows apart from traffic.
        request = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET",
                                         headers={"Content-Type": "application/json", CHECK_HEADER: "1"})
        token = os.environ.get("ML_PLATFORM_SERVING_TOKEN")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body)
            except json.JSONDecodeError:
                return exc.code, body.decode(errors="replace")

    def get(self, path: str) -> Any:
        return self._request(path)[1]

    def post(self, path: str, payload: Any) -> tuple[int, Any]:
        return self._request(path, payload)

    def wait_ready(self, timeout: float) -> dict:
        """/ready's answer once ready; else the last answer, with its reason, when waiting cannot help: the
        process exited, the model was refused, the time is up (or, for a running endpoint, 10 s passed)."""
        deadline = time.time() + (timeout if self.process is not None else min(timeout, 10))
        last: dict = {"ready": False, "reason": "no answer"}
        while time.time() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return {"ready": False, "reason": f"the serving process exited with code {self.process.returncode}"}
            try:
                status, body = self._request("/ready")
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                last = {"ready": False, "reason": f"no answer from {self.url}: {exc}"}
            else:
                last = body if isinstance(body, dict) else {"ready": False, "reason": str(body)}
                if status == 200 or "refused" in str(last.get("reason", "")) or self.process is None:
                    return last
            time.sleep(0.25)
        return last

    def log_tail(self, lines: int = 8) -> list[str]:
        if self.log_path is None or not self.log_path.exists():
            return []
        return [f"log: {line}" for line in self.log_path.read_text(errors="replace").splitlines()[-lines:]]


@contextlib.contextmanager
def serving_process(version: str, timeout: float) -> Iterator[ServedModel]:
    """`ml-platform serve --version N --no-prediction-log` on a free loopback port, stopped on exit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    logs = settings.platform_paths().home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"check-serve-v{version}-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ml_platform.cli", "serve", "--port", str(port), "--version", str(version),
             "--no-prediction-log"],
            env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield ServedModel(f"http://127.0.0.1:{port}", process, log_path)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# -- readiness --------------------------------------------------------------------------------------------
def _readiness_evidence(subject: Subject, report: CheckReport) -> dict:
    """Each check's result, and the monitoring state, as evidence for the ML Test Score table."""
    from ml_platform.lib.readiness import Evidence

    evidence: dict[str, Evidence] = {}
    for r in report.results:
        state = {"pass": "pass", "fail": "fail"}.get(r.status) or (
            "absent" if r.numbers.get("configured") is False else "not run")
        evidence[r.key] = Evidence(state, r.summary)
    for key, probe in _FACTS.items():
        try:
            evidence[key] = probe(subject, report)
        except Exception as exc:  # a fact that cannot be read is not a reason to fail the check
            evidence[key] = Evidence("not run", f"could not be read: {exc}")
    return evidence


def _fact_sign_off(subject: Subject, report: CheckReport) -> Any:
    from ml_platform.lib.readiness import Evidence

    cfg = subject.config
    if not cfg.needs_approval:
        return Evidence("absent", f"risk tier {cfg.model.risk_tier}: a version that passes the gate needs no review")
    return Evidence("pass", f"risk tier {cfg.model.risk_tier}: promotion needs a sign-off by one of "
                            f"{', '.join(cfg.governance.approvers)}")


def _fact_live(subject: Subject, report: CheckReport) -> Any:
    from ml_platform.lib.readiness import Evidence

    live = subject.monitoring.get("live_performance")
    if not live or live.get("rolling_metric") is None:
        return Evidence("not run", "no labelled predictions yet (late labels feed the live metric)")
    breached = bool(live.get("sustained_breach"))
    return Evidence("fail" if breached else "pass", f"rolling {live['rolling_metric']:.4f} vs SLO floor "
                    f"{live.get('floor')}" + (f", breached since {live.get('breach_started')}" if breached else ""))


def _fact_live_vs_offline(subject: Subject, report: CheckReport) -> Any:
    from ml_platform.lib.readiness import Evidence

    live = subject.monitoring.get("live_performance")
    if not live or live.get("rolling_metric") is None:
        return Evidence("not run", "no labelled predictions yet: the live metric cannot be compared")
    champion = subject.champion
    if champion is None:
        return Evidence("not run", "no champion: nothing is served to compare")
    metric = subject.config.performance.metric
    logged = metric.removeprefix("neg_")  # MLflow holds holdout_rmse; the live metric is its negation, neg_rmse
    offline = subject.registry.run(subject.registry.version(subject.name, champion).run_id).data.metrics.get(
        f"holdout_{logged}")
    if offline is None:
        return Evidence("not run", f"champion v{champion} has no holdout_{logged}")
    rails = subject.config.serving.canary.guardrails
    if metric != logged:  # an error in the target's units: the allowed drop is relative, as the canary's
        offline = -offline
        allowed = round(rails.max_rmse_increase * abs(offline), 4)
    else:
        allowed = rails.max_metric_drop
    gap = offline - live["rolling_metric"]
    return Evidence("pass" if gap <= allowed else "fail", f"live {metric} {live['rolling_metric']:.4f} vs holdout "
                    f"{offline:.4f} (drop {gap:+.4f}, allowed {allowed})")


def _fact_fairness(subject: Subject, report: CheckReport) -> Any:
    from ml_platform.lib.readiness import Evidence

    column = subject.config.data.sensitive_column
    if not column:
        return Evidence("absent", "no data.sensitive_column: fairness is not measured")
    gate = next((r for r in report.results if r.key == "model.promotion_gate"), None)
    gap = gate.numbers.get("holdout_fairness_gap") if gate else None
    if gap is None:
        return Evidence("not run", "the promotion gate was not run")
    limit = subject.config.gate.max_fairness_gap
    what = "relative RMSE spread" if subject.config.model.task == "regression" else "ROC AUC gap"
    return Evidence("pass" if gap <= limit else "fail", f"{what} across {column} {gap:.4f} (max {limit})")


def _fact_dbt_tests(subject: Subject, report: CheckReport) -> Any:

    from ml_platform.lib.readiness import Evidence
    from ml_platform.runner import dagster_instance, load_definitions

    asset = keys.key(f"features/{subject.config.features.dbt_model}")
    check_keys = [k for k in load_definitions().resolve_asset_graph().asset_check_keys
            if k.asset_key == asset and k.name != "fresh"]
    if not check_keys:
        return Evidence("absent", f"the dbt model {subject.config.features.dbt_model} has no tests")
    with dagster_instance() as instance:
        records = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    judged = [r for r in records.values() if r.evaluation is not None]
    if not judged:
        return Evidence("not run", f"{len(check_keys)} dbt tests, never run yet")
    failed = [r.key.name for r in judged if not r.evaluation.passed]
    return Evidence("fail" if failed else "pass", f"{len(judged) - len(failed)} of {len(check_keys)} dbt tests passed "
                    "at the last build" + (f"; failing: {', '.join(failed[:3])}" if failed else ""))


def _fact_pipeline_run(subject: Subject, report: CheckReport) -> Any:
    from ml_platform.lib.readiness import Evidence
    from ml_platform.runner import dagster_instance

    run_id = subject.tags.get("dagster_run_id")
    if not run_id:
        return Evidence("not run", f"v{subject.version} was not trained by a lifecycle run")
    with dagster_instance() as instance:
        run = instance.get_run_by_id(run_id)
    if run is None:
        return Evidence("not run", f"the run {run_id} that trained v{subject.version} is not in this Dagster storage")
    ok = run.status.value == "SUCCESS"
    return Evidence("pass" if ok else "fail", f"the {run.job_name} run that trained v{subject.version}: {run.status.value}")


def _fact_lineage(subject: Subject, report: CheckReport) -> Any:
    from ml_platform.lib.readiness import Evidence
    from ml_platform.lineage import LineageError, lineage_for_version

    try:
        record = lineage_for_version(subject.name, subject.version, verify=True)
    except LineageError as exc:
        return Evidence("fail", str(exc))
    ok = record["data_snapshot"]["sha256_ok"]
    return Evidence("pass" if ok else "fail", f"`ml-platform lineage --version {subject.version}`: run, snapshot "
                    f"({'intact' if ok else 'missing or altered'}), config, commit {record['git_commit'][:12]}, seed")


def _fact_canary(subject: Subject, report: CheckReport) -> Any:
    from ml_platform.lib.readiness import Evidence

    mode = subject.config.serving.canary.mode
    if mode == "off":
        return Evidence("absent", "serving.canary.mode is off: a promoted version takes all traffic at once")
    return Evidence("pass", f"serving.canary.mode {mode} with guardrails and automatic rollback")


def _monitor_fact(key: str, judge: Callable[[dict], tuple[bool, str]], never: str) -> Callable:
    def probe(subject: Subject, report: CheckReport) -> Any:
        from ml_platform.lib.readiness import Evidence

        state = subject.monitoring.get(key)
        if not state:
            return Evidence("not run", never)
        ok, note = judge(state)
        return Evidence("pass" if ok else "fail", f"{note} (at {state.get('at', '-')})")

    return probe


def _fact_cost(subject: Subject, report: CheckReport) -> Any:
    from ml_platform.lib.readiness import Evidence

    cost = subject.monitoring.get("cost")
    if not cost or cost.get("latency_p99_ms") is None:
        return Evidence("not run", "no cost report with a latency yet")
    limit = subject.config.gate.max_latency_p99_ms
    latency = cost["latency_p99_ms"]
    return Evidence("pass" if latency <= limit else "fail", f"latency p99 {latency:.2f} ms (guardrail {limit:g} ms), "
                    f"{cost.get('predictions_24h', 0):.0f} predictions in 24 h (at {cost.get('at', '-')})")


def _fact_freshness(subject: Subject, report: CheckReport) -> Any:
    from ml_platform.lib.readiness import Evidence

    states = [s for s in subject.monitoring.get("freshness", []) if s.get("age_hours") is not None]
    if not states:
        return Evidence("not run", "nothing materialized yet")
    stale = [s["name"] for s in states if not s["fresh"]]
    return Evidence("fail" if stale else "pass", f"stale: {', '.join(stale)}" if stale else
                    f"{len(states)} freshness SLOs met")


_FACTS: dict[str, Callable] = {
    "sign_off": _fact_sign_off,
    "live_vs_offline": _fact_live_vs_offline,
    "fairness": _fact_fairness,
    "dbt_tests": _fact_dbt_tests,
    "pipeline_run": _fact_pipeline_run,
    "lineage": _fact_lineage,
    "canary": _fact_canary,
    "drift": _monitor_fact("drift", lambda d: (not d.get("dataset_drift"), f"newest batch: drifted share "
                           f"{d.get('drifted_share', 0):.2f}" + (" (DRIFT)" if d.get("dataset_drift") else "")),
                           "no drift report yet"),
    "traffic_drift": _monitor_fact("traffic_drift", lambda d: (not d.get("dataset_drift"), f"served traffic: drifted "
                                   f"share {d.get('drifted_share', 0):.2f}"),
                                   "no served traffic compared yet (traffic_drift_report needs logged predictions)"),
    "freshness": _fact_freshness,
    "prediction_drift": _monitor_fact("prediction_drift", lambda d: (not d.get("drifted"), f"score PSI "
                                      f"{d.get('psi', float('nan')):.3f} (threshold {d.get('psi_threshold')})"),
                                      "no score distribution compared yet"),
    "cost": _fact_cost,
    "live_performance": _fact_live,
}
