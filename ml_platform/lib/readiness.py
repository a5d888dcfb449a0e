"""Production readiness as an ML Test Score table (Breck et al., "The ML Test Score: A Rubric for ML
Production Readiness and Technical Debt Reduction", IEEE Big Data 2017).

The rubric's 28 tests in four sections. For each, the platform mechanism that answers it (the
`ml-platform check` tests and the monitoring state), or nothing: then the row says what is missing.

Scoring, as in the paper with one change (a present test that fails now earns half, not a full point):
a row is 1 point when the test is present, automated and passing; 0.5 when it is present but failing
or not yet exercised (e.g. no late labels yet); 0 when absent. A section's score is the sum of its rows;
the overall score is the lowest section score, because a system is as ready as its weakest area.
"""

from __future__ import annotations

from dataclasses import dataclass

SECTIONS = ("data", "model", "infrastructure", "monitoring")
POINTS = {"pass": 1.0, "fail": 0.5, "not run": 0.5, "absent": 0.0}
_WORST_FIRST = ("fail", "not run", "pass")

# (upper bound of the overall score, what the paper says it means)
BANDS = (
    (0.0, "more of a research project than a productionized system"),
    (1.0, "not totally untested, but serious holes in reliability are possible"),
    (2.0, "a first pass at basic productionization; more investment may be needed"),
    (3.0, "reasonably tested; more of the tests and procedures may be automated"),
    (5.0, "strong automated testing and monitoring, appropriate for mission-critical systems"),
    (float("inf"), "exceptional levels of automated testing and monitoring"),
)


@dataclass(frozen=True)
class ReadinessTest:
    section: str
    test: str                   # the paper's wording
    evidence: tuple[str, ...]   # check names ("layer.name") or monitoring facts; empty: the platform lacks it
    how: str                    # what answers it here, or what is missing


TESTS = (
    ReadinessTest("data", "Feature expectations are captured in a schema",
                  ("data.training_snapshot_contract", "data.newest_batch_contract", "data.schema_match"),
                  "the data contract as a Great Expectations suite, on every batch and on the training snapshot"),
    ReadinessTest("data", "All features are beneficial", (), "missing: no feature-importance or ablation test"),
    ReadinessTest("data", "No feature's cost is too much", (), "missing: feature cost (latency, memory) is not measured"),
    ReadinessTest("data", "Features adhere to meta-level requirements", (),
                  "missing: no rule on which columns may be inputs (e.g. the sensitive column)"),
    ReadinessTest("data", "The data pipeline has appropriate privacy controls", (),
                  "missing: no PII classification or access control on snapshots"),
    ReadinessTest("data", "New features can be added quickly", (),
                  "missing: not measured (dbt models make it a SQL change)"),
    ReadinessTest("data", "All input feature code is tested", ("dbt_tests",),
                  "dbt tests on the feature model, run as asset checks"),
    ReadinessTest("model", "Model specs are reviewed and submitted", ("sign_off",),
                  "sign-off by an approver before promotion (risk tier medium and up)"),
    ReadinessTest("model", "Offline and online metrics correlate", ("live_vs_offline",),
                  "the live metric from late labels against the holdout metric"),
    ReadinessTest("model", "All hyperparameters have been tuned", (), "missing: no hyperparameter search"),
    ReadinessTest("model", "The impact of model staleness is known", (),
                  "missing: no study of metric decay with model age"),
    ReadinessTest("model", "A simpler model is not better", ("model.promotion_gate",),
                  "the promotion gate: beat a prior-only baseline and the champion on the frozen holdout"),
    ReadinessTest("model", "Model quality is sufficient on important data slices",
                  ("model.slices", "model.known_hard_cases"), "a floor per slice, and the known-hard cases"),
    ReadinessTest("model", "The model is tested for considerations of inclusion", ("fairness",),
                  "the fairness-gap guardrail on data.sensitive_column"),
    ReadinessTest("infrastructure", "Training is reproducible", ("infrastructure.reproduce",),
                  "the version retrained from its recorded snapshot, config and seed gives the same metrics"),
    ReadinessTest("infrastructure", "Model specs are unit tested", ("model.training_converges", "model.robustness"),
                  "training converges; scores are robust to small input perturbations"),
    ReadinessTest("infrastructure", "The ML pipeline is integration tested",
                  ("pipeline_run", "infrastructure.serving", "infrastructure.regression_set"),
                  "the lifecycle ran end to end for the version; a serving process answers the regression set"),
    ReadinessTest("infrastructure", "Model quality is validated before serving",
                  ("model.promotion_gate", "infrastructure.artifact_digest"),
                  "the gate before promotion; the served artifact is the evaluated one (digest)"),
    ReadinessTest("infrastructure", "The model is debuggable", ("lineage",),
                  "lineage from a prediction to its version, run, data snapshot, config, commit and seed"),
    ReadinessTest("infrastructure", "Models are canaried before serving", ("canary",),
                  "serving.canary: a share of traffic (or a shadow) with guardrails and automatic rollback"),
    ReadinessTest("infrastructure", "Serving models can be rolled back", ("infrastructure.rollback",),
                  "one-step rollback to a known-good version that loads and answers as recorded"),
    ReadinessTest("monitoring", "Dependency changes result in notification", (),
                  "missing: package changes are reported by `ml-platform reproduce`, not alerted"),
    ReadinessTest("monitoring", "Data invariants hold for inputs", ("data.newest_batch_contract", "drift"),
                  "the contract on every batch (blocking); data drift of the newest batch"),
    ReadinessTest("monitoring", "Training and serving are not skewed", ("traffic_drift",),
                  "served traffic (the prediction log) against the champion's training rows"),
    ReadinessTest("monitoring", "Models are not too stale", ("freshness",),
                  "freshness SLOs on the raw data, features and predictions; drift and SLO retraining"),
    ReadinessTest("monitoring", "Models are numerically stable", ("model.robustness",),
                  "scores are finite and stable under small input noise (checked per version, not watched live)"),
    ReadinessTest("monitoring", "Computing performance has not regressed", ("cost",),
                  "latency p99 and model size per day against the gate's latency guardrail"),
    ReadinessTest("monitoring", "Prediction quality has not regressed", ("live_performance", "prediction_drift"),
                  "the rolling live metric against its SLO floor; before labels, each batch's score distribution "
                  "against the holdout (PSI)"),
)


@dataclass(frozen=True)
class Evidence:
    state: str  # pass | fail | not run | absent
    note: str


def readiness_table(evidence: dict[str, Evidence]) -> dict:
    """Rows (one per test) with their state and points, the score of each section, and the overall score.

    A test's state is the worst of its present evidence (fail, then not run, then pass); evidence that is
    absent (not configured) is ignored when some other evidence is present; with none present it is absent.
    Evidence missing from `evidence` (e.g. a layer that was not run) counts as not run."""
    rows = []
    for test in TESTS:
        found = [(key, evidence.get(key, Evidence("not run", "not run in this check"))) for key in test.evidence]
        present = [(k, e) for k, e in found if e.state != "absent"]
        if not present:
            state = "absent"
        else:
            state = next(s for s in _WORST_FIRST if any(e.state == s for _, e in present))
        rows.append({"section": test.section, "test": test.test, "state": state, "points": POINTS[state],
                     "how": test.how, "evidence": {k: {"state": e.state, "note": e.note} for k, e in found}})
    sections = {s: sum(r["points"] for r in rows if r["section"] == s) for s in SECTIONS}
    overall = min(sections.values())
    return {"rows": rows, "sections": sections, "overall": overall, "meaning": meaning(overall),
            "max_per_section": {s: sum(1 for t in TESTS if t.section == s) for s in SECTIONS}}


def meaning(score: float) -> str:
    return next(text for bound, text in BANDS if score <= bound)
