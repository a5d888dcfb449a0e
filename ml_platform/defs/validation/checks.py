"""Validation: the Great Expectations suite derived from the data contract, as blocking asset checks.

A failing batch is quarantined with its validation result; blocking checks stop everything
downstream of `raw_batch` in the run, so no feature, model or prediction is built from it.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from ml_platform import keys
from ml_platform.lib.alerting import ALERTS_ON_FAILURE
from ml_platform.lib.snapshots import read_snapshot
from ml_platform.lib.validation import CHECK_NAMES, validate_batch
from ml_platform.resources import ProjectResource
from ml_platform.resources.alerts import Alerts, dagster_run_url

_DESCRIPTIONS = {
    "schema": "Every contract column is present with the contracted type.",
    "row_count": "The batch has at least data.min_rows rows.",
    "nulls": "No column has more nulls than its max_null_fraction; none is entirely null.",
    "ranges": "Numeric columns stay within their contracted min/max.",
    "categories": "Category columns hold only their allowed values.",
    "target_labels": "The target is present, never null, with exactly the expected labels.",
    "unique_ids": "The id column is unique.",
}


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset="raw_batch", blocking=True, description=_DESCRIPTIONS[name],
                          metadata={ALERTS_ON_FAILURE: "validation_failure"})  # the run failure is not re-alerted
        for name in CHECK_NAMES
    ],
    ins={"raw_batch": dg.AssetIn("raw_batch")},
)
def raw_batch_contract(context: dg.AssetCheckExecutionContext, project: ProjectResource, alerts: Alerts,
                       raw_batch: dict):
    cfg = project.config()
    frame = read_snapshot(Path(raw_batch["path"]), raw_batch["sha256"])
    report = validate_batch(frame, cfg.data)
    if not report.passed:
        record = quarantine(project.paths().quarantine, raw_batch, report.to_json())
        context.log.error(f"batch {raw_batch['batch_id']} quarantined: {record}\n" + "\n".join(report.failures()))
        failed = [outcome.name for outcome in report.checks if not outcome.passed]
        alerts.send(
            "validation_failure", f"{cfg.model.name}: batch {raw_batch['batch_id']} quarantined, "
                                  f"{len(failed)} contract check{'s' if len(failed) != 1 else ''} failed",
            {"batch": raw_batch["batch_id"], "rows": report.rows, "failed checks": failed,
             "failures": report.failures()[:10], "snapshot": f"{raw_batch['path']} (sha256 {raw_batch['sha256']})",
             "downstream": "nothing built from this batch; champion and predictions unchanged"},
            severity="critical",
            links={"dagster_run": dagster_run_url(context.run.run_id), "quarantine_record": str(record)},
            group_key=f"validation_failure:{cfg.model.name}:{raw_batch['sha256']}",  # the same batch again
        )
    for outcome in report.checks:
        yield dg.AssetCheckResult(
            asset_key=keys.key("raw_batch"),
            check_name=outcome.name,
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "batch_id": raw_batch["batch_id"],
                "snapshot_sha256": raw_batch["sha256"],
                "expectations": dg.MetadataValue.text(str(outcome.expectations)),  # a count, not a series to plot
                # "none" as plain text: a person should not have to open a Markdown popup to read it.
                "failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in outcome.failures))
                if outcome.failures else "none",
            },
        )


def quarantine(directory: Path, batch: dict, result: dict) -> Path:
    """Record a failed batch beside its (untouched) snapshot: the validation result and where the data is."""
    directory.mkdir(parents=True, exist_ok=True)
    record = directory / f"{batch['sha256']}.json"
    record.write_text(json.dumps({
        "batch_id": batch["batch_id"],
        "snapshot_sha256": batch["sha256"],
        "snapshot_path": batch["path"],
        "quarantined_at": datetime.now(UTC).isoformat(),
        "validation": result,
    }, indent=2, default=str))
    return record
