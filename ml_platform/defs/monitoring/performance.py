"""Live performance from late labels: concept drift shows as a decaying live metric, and a sustained breach of
its SLO floor starts one gated retraining.

- `late_labels` ingests each new label file of the landing folder once (by content hash): the valid ones are
  appended to LABELS_TABLE in one transaction and moved to `ingested/`; a bad one is moved to `rejected/`
  with `<name>.error.txt` beside it and an alert, nothing stored is touched, and the run goes on.
- `live_performance` computes the metric per day and over the rolling window (lib/performance.py) into
  LIVE_PERFORMANCE_TABLE; its check `live_metric_slo` fails on a sustained breach, which is also alerted.
- `performance_sensor` turns a sustained breach into one `retraining` run per breach episode.

The rules (label format, a prediction's day, not-judged windows) are in lib/labels.py and lib/performance.py.
"""

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from ml_platform import keys
from ml_platform.defs.monitoring.sensors import (
    INPUTS_TAG,
    retraining_already_requested,
    retraining_cap_reached,
    retraining_job,
    training_inputs_version,
)
from ml_platform.defs.sources import observe_as_read
from ml_platform.lib.labels import (
    LABEL_COLUMNS,
    PREDICTION_COLUMNS,
    LabelError,
    ResolvedLabels,
    is_label_file,
    known_predictions_query,
    label_keys,
    label_landing,
    parse_label_file,
    resolve_labels,
)
from ml_platform.lib.performance import LivePerformance, assess_live_performance
from ml_platform.lib.snapshots import file_sha256
from ml_platform.resources import ProjectResource, Warehouse
from ml_platform.resources.alerts import Alerts
from ml_platform.settings import (
    LABELS_TABLE,
    LIVE_PERFORMANCE_TABLE,
    PREDICTION_LOG_TABLE,
    PREDICTIONS_TABLE,
    dagster_ui_url,
)

LABEL_FILES_TABLE = "monitoring.label_files"  # every label file ingested, by content hash: each is ingested once

_LABELS_DDL = f"""create table if not exists {LABELS_TABLE} (
    prediction_id varchar primary key, entity_id varchar, model_name varchar, model_version varchar,
    source varchar, score double precision, label varchar, is_positive boolean, prediction_day date,
    labeled_at timestamp, file_name varchar, file_sha256 varchar, ingested_at timestamp)"""
_LABEL_FILES_DDL = f"""create table if not exists {LABEL_FILES_TABLE} (
    file_sha256 varchar primary key, file_name varchar, model_name varchar, file_rows integer,
    new_labels integer, already_stored integer, ingested_at timestamp)"""
_LIVE_DDL = f"""create table if not exists {LIVE_PERFORMANCE_TABLE} (
    model_name varchar, day date, labelled_rows integer, daily_metric double precision, window_rows integer,
    rolling_metric double precision, below_floor boolean, metric varchar, floor double precision, computed_at timestamp)"""


@dg.asset(
    group_name="monitoring",
    kinds={"duckdb"},
    deps=["batch_predictions", "label_files"],  # after scoring: a label file may name the predictions just made
    check_specs=[dg.AssetCheckSpec(
        "label_files_accepted", asset="late_labels", blocking=False,
        description="Every label file of this run was ingested: none was rejected to the rejected/ folder.")],
    description=f"Late labels: each new label file of the landing folder (performance.labels_path), once, checked "
    f"against the config and the logged predictions and appended to {LABELS_TABLE} (one row per labelled "
    "prediction); a bad file goes to rejected/ with its error.",
)
def late_labels(context: dg.AssetExecutionContext, project: ProjectResource, warehouse: Warehouse,
                alerts: Alerts):
    cfg = project.config()
    observe_as_read(context, project, warehouse, "label_files")
    landing = label_landing(cfg, project.paths())
    waiting = sorted(p for p in landing.iterdir() if is_label_file(p)) if landing.is_dir() else []
    accepted: list[tuple[Path, str, ResolvedLabels]] = []
    repeated: list[tuple[Path, str]] = []
    rejected: list[tuple[Path, str, LabelError]] = []
    if waiting:
        accepted, repeated, rejected = _ingest(cfg, warehouse, waiting)

    done = landing / "ingested"
    ingested_rows = []
    for path, sha, resolved in accepted:
        moved = _move(path, done, sha)
        ingested_rows.append({"file": path.name, "rows": resolved.file_rows, "new_labels": len(resolved.new),
                              "already_stored": resolved.already_stored, "moved_to": str(moved)})
    for path, sha in repeated:
        _move(path, done, sha)
    rejected_rows = []
    for path, sha, error in rejected:
        moved = _move(path, landing / "rejected", sha)
        error_file = moved.with_name(moved.name + ".error.txt")
        error_file.write_text(f"{error}\n\nProblems:\n" + "".join(f"- {p}\n" for p in error.problems)
                              + "\nFix the file and drop it into the landing folder again: nothing of it was stored.\n")
        context.log.error(str(error))
        rejected_rows.append({"file": path.name, "error": str(error), "moved_to": str(moved)})
        alerts.send("label_rejected", f"Label file {path.name} rejected: nothing of it was stored",
                    {"model": cfg.model.name, "file": path.name, "problems": "; ".join(error.problems),
                     "moved_to": str(moved), "error_file": str(error_file)},
                    links={"late_labels": f"{dagster_ui_url()}/assets/late_labels"})

    new_labels = sum(len(r.new) for _, _, r in accepted)
    summary = {"landing": str(landing), "new_labels": new_labels, "ingested": ingested_rows,
               "rejected": rejected_rows, "already_ingested": [p.name for p, _ in repeated]}
    yield dg.Output(summary, metadata={
        "new_labels": new_labels,
        "files_ingested": len(accepted),
        "files_rejected": len(rejected),
        "files_already_ingested": len(repeated),
        "landing": dg.MetadataValue.path(str(landing)),
        "ingested": dg.MetadataValue.md(_md_table(ingested_rows, ("file", "rows", "new_labels", "already_stored"))),
        "rejected": dg.MetadataValue.md("\n".join(f"- **{r['file']}**: {r['error']}" for r in rejected_rows) or "none"),
    })
    yield dg.AssetCheckResult(
        check_name="label_files_accepted", passed=not rejected, severity=dg.AssetCheckSeverity.WARN,
        metadata={"files_rejected": len(rejected), "files_ingested": len(accepted),
                  # `failures`: what `ml-platform run` prints under a failed check
                  "failures": dg.MetadataValue.md("\n".join(f"- {r['error']}" for r in rejected_rows) or "none")},
    )


def _ingest(cfg: Any, warehouse: Warehouse, files: list[Path]):
    """Check each file against the config, the logged predictions and the labels stored (and accepted
    earlier in this run); append the accepted ones in one transaction. Returns (accepted, repeated, rejected)."""
    now = pd.Timestamp(datetime.now(UTC).replace(tzinfo=None))
    accepted: list[tuple[Path, str, ResolvedLabels]] = []
    repeated: list[tuple[Path, str]] = []
    rejected: list[tuple[Path, str, LabelError]] = []
    with warehouse.connect() as con:
        con.execute("create schema if not exists monitoring")
        con.execute(_LABELS_DDL)
        con.execute(_LABEL_FILES_DDL)
        hashes = {path: file_sha256(path) for path in files}
        con.register("waiting_files", pd.DataFrame({"sha": list(hashes.values())}, dtype="string"))
        seen = {row[0] for row in con.execute(
            f"select file_sha256 from {LABEL_FILES_TABLE} where file_sha256 in (select sha from waiting_files)").fetchall()}
        con.unregister("waiting_files")
        tables = {t for t in (PREDICTIONS_TABLE, PREDICTION_LOG_TABLE, f"features.{cfg.features.dbt_model}")
                  if _exists(con, t)}
        pending = pd.DataFrame({"prediction_id": [], "label": [], "file_name": []}, dtype=object)
        for path in files:
            sha = hashes[path]
            if sha in seen or sha in {s for _, s, _ in accepted}:
                repeated.append((path, sha))
                continue
            try:
                labels, problems = parse_label_file(path, cfg.data)
                predictions, stored = _candidates(con, cfg, labels, tables)
                resolved = resolve_labels(labels, predictions, pd.concat([stored, pending], ignore_index=True),
                                          file=path.name, file_sha256=sha, model_name=cfg.model.name,
                                          data=cfg.data, ingested_at=now, problems=problems)
            except LabelError as error:
                rejected.append((path, sha, error))
                continue
            accepted.append((path, sha, resolved))
            pending = pd.concat([pending, resolved.new[["prediction_id", "label", "file_name"]]], ignore_index=True)
        if not accepted:
            return accepted, repeated, rejected
        new = pd.concat([r.new for _, _, r in accepted], ignore_index=True)
        ledger = pd.DataFrame([{"file_sha256": sha, "file_name": path.name, "model_name": cfg.model.name,
                                "file_rows": r.file_rows, "new_labels": len(r.new),
                                "already_stored": r.already_stored, "ingested_at": now}
                               for path, sha, r in accepted])
        # One transaction: every accepted file's labels and its ledger row are stored together, or nothing is.
        with con.transaction():
            con.insert_frame(LABELS_TABLE, new[list(LABEL_COLUMNS)])
            con.insert_frame(LABEL_FILES_TABLE, ledger)
    return accepted, repeated, rejected


def _candidates(con: Any, cfg: Any, labels: pd.DataFrame, tables: set[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The logged predictions a label file names (with their day), and the labels already stored for them."""
    feature_table = f"features.{cfg.features.dbt_model}"
    batch = PREDICTIONS_TABLE if PREDICTIONS_TABLE in tables else None
    log = PREDICTION_LOG_TABLE if PREDICTION_LOG_TABLE in tables else None
    empty_stored = pd.DataFrame({"prediction_id": [], "label": [], "file_name": []}, dtype=object)
    if not batch and not log:
        return pd.DataFrame(columns=list(PREDICTION_COLUMNS)), empty_stored
    con.register("label_keys", label_keys(labels).astype("string"))
    sql = known_predictions_query(batch_table=batch, log_table=log,
                                  feature_table=feature_table if feature_table in tables else None,
                                  id_column=cfg.data.id_column, timestamp_column=cfg.data.timestamp_column)
    predictions = con.frame(sql, [cfg.model.name] * (bool(batch) + bool(log)))
    con.unregister("label_keys")
    if predictions.empty:
        return predictions, empty_stored
    con.register("named_predictions", predictions[["prediction_id"]])
    stored = con.frame(f"select prediction_id, label, file_name from {LABELS_TABLE} "
                       "where prediction_id in (select prediction_id from named_predictions)")
    con.unregister("named_predictions")
    return predictions, stored


@dg.asset(
    group_name="monitoring",
    kinds={"duckdb"},
    deps=[late_labels],  # and so after batch_predictions
    check_specs=[dg.AssetCheckSpec(
        "live_metric_slo", asset="live_performance",
        description="The rolling live metric is not in a sustained breach of performance.floor "
        "(performance.consecutive_days judged days in a row below it).")],
    description=f"The live metric of the labelled predictions per day and over the rolling window "
    f"(performance.window_days), written to {LIVE_PERFORMANCE_TABLE}; a sustained breach of the SLO floor "
    "fails the check, is alerted and starts one retraining (performance_sensor).",
)
def live_performance(context: dg.AssetExecutionContext, project: ProjectResource, warehouse: Warehouse,
                     alerts: Alerts):
    cfg = project.config()
    slo = cfg.performance
    labelled = pd.DataFrame({"day": [], "score": [], "actual": []})
    if warehouse.table_exists(LABELS_TABLE):
        # What happened: 1 or 0 (the positive label or not) for a classification, the true value for a regression.
        actual = ("cast(label as double precision)" if cfg.model.task == "regression"
                  else "case when is_positive then 1 else 0 end")
        labelled = warehouse.query(f"select prediction_day as day, score, {actual} as actual from {LABELS_TABLE} "
                                   "where model_name = ?", [cfg.model.name])
    perf = assess_live_performance(labelled, slo)
    _write_days(warehouse, cfg.model.name, perf)

    latest = perf.latest_judged
    started = perf.breach_started.isoformat() if perf.breach_started else "none"
    evidence = [{"day": d.day.isoformat(), "rolling_metric": round(d.rolling_metric, 4), "window_rows": d.window_rows}
                for d in perf.streak_days]
    metadata: dict[str, Any] = {
        "metric": slo.metric,
        "floor": float(slo.floor),
        "window_days": slo.window_days,
        "consecutive_days": slo.consecutive_days,
        "min_labels": slo.min_labels,
        "labelled_rows": len(labelled),
        "streak": perf.streak,
        "sustained_breach": perf.sustained_breach,
        "breach_started": started,
        "latest_day": latest.day.isoformat() if latest else "none",
        "streak_days": dg.MetadataValue.json(evidence),
        "days": dg.MetadataValue.md(_days_markdown(perf)),
        "table": LIVE_PERFORMANCE_TABLE,
    }
    if latest is not None:
        metadata["rolling_metric"] = float(latest.rolling_metric)  # a float on every judged run: Dagster plots it
    yield dg.Output({"model": cfg.model.name, "sustained_breach": perf.sustained_breach, "breach_started": started,
                     "streak": perf.streak, "days": [dict(r, day=r["day"].isoformat()) for r in
                                                    perf.to_frame().to_dict("records")]},
                    metadata=metadata)
    yield dg.AssetCheckResult(
        check_name="live_metric_slo", passed=not perf.sustained_breach, severity=dg.AssetCheckSeverity.WARN,
        metadata={"streak": perf.streak, "consecutive_days": slo.consecutive_days, "floor": float(slo.floor),
                  "breach_started": started, "streak_days": dg.MetadataValue.json(evidence),
                  **({"rolling_metric": float(latest.rolling_metric)} if latest else {}),
                  **({"failures": f"rolling {slo.metric} below the floor {slo.floor} on {perf.streak} judged days "
                                  f"since {started}: " + ", ".join(f"{e['day']} {e['rolling_metric']:.4f}"
                                                                   for e in evidence)}
                     if perf.sustained_breach else {})},
    )
    if perf.sustained_breach:
        days = ", ".join(f"{e['day']}: {e['rolling_metric']:.4f} ({e['window_rows']} labels)" for e in evidence)
        alerts.send(
            "slo_breach",
            f"Live {slo.metric} of {cfg.model.name} below the SLO floor {slo.floor} for {perf.streak} days",
            {"model": cfg.model.name, "metric": slo.metric, "floor": slo.floor, "window_days": slo.window_days,
             "consecutive_days": slo.consecutive_days, "breach_started": started,
             "rolling metric per day of the streak": days,
             "next": "performance_sensor requests one gated retraining for this breach"},
            links={"live_performance": f"{dagster_ui_url()}/assets/live_performance"},
            group_key=f"slo_breach:{cfg.model.name}:{started}",  # one breach episode, one alert thread
        )


def _write_days(warehouse: Warehouse, model_name: str, perf: LivePerformance) -> None:
    """Replace this model's rows of LIVE_PERFORMANCE_TABLE with `perf`'s days, in one transaction."""
    frame = perf.to_frame().assign(model_name=model_name, metric=perf.metric, floor=perf.floor,
                                   computed_at=datetime.now(UTC).replace(tzinfo=None))
    frame["day"] = pd.to_datetime(frame["day"])
    with warehouse.connect() as con:
        con.execute("create schema if not exists monitoring")
        con.execute(_LIVE_DDL)
        with con.transaction():
            con.execute(f"delete from {LIVE_PERFORMANCE_TABLE} where model_name = ?", [model_name])
            con.insert_frame(LIVE_PERFORMANCE_TABLE, frame)


@dg.asset_sensor(asset_key=keys.key("live_performance"), job=retraining_job, minimum_interval_seconds=60,
                 default_status=dg.DefaultSensorStatus.RUNNING,
                 description="Requests one gated retraining per sustained breach of the live-performance SLO.")
def performance_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry,
                       project: ProjectResource):
    materialization = asset_event.asset_materialization
    metadata = materialization.metadata if materialization else {}

    def value(key: str, default: Any = None) -> Any:
        return getattr(metadata.get(key), "value", default)

    if not value("sustained_breach", False):
        return dg.SkipReason(f"live performance of run {asset_event.run_id or '-'} is not in a sustained breach "
                             f"(streak {value('streak', 0)} of {value('consecutive_days', '?')} days)")
    cfg = project.config()
    started, latest = str(value("breach_started")), str(value("latest_day"))
    # Late labels can move a streak's first day earlier: an earlier retraining whose breach started within
    # this streak was for the same episode.
    for run in context.instance.get_runs(filters=dg.RunsFilter(tags={"ml_platform/trigger": "performance",
                                                                     "ml_platform/model": cfg.model.name}), limit=50):
        earlier = run.tags.get("ml_platform/breach_started", "")
        if started <= earlier <= latest:
            return dg.SkipReason(f"the breach since {started} already started retraining run {run.run_id} "
                                 f"(breach started {earlier}): one retraining per breach episode")
    inputs = training_inputs_version(context.instance, cfg)
    duplicate = retraining_already_requested(context.instance, cfg, inputs)
    if duplicate:
        return dg.SkipReason(f"sustained SLO breach since {started}, but {duplicate}")
    capped = retraining_cap_reached(context.instance, cfg.automation.max_retrainings_per_day)
    if capped:
        return dg.SkipReason(f"sustained SLO breach since {started}, but {capped}")
    days = value("streak_days") or []
    return dg.RunRequest(
        run_key=f"performance-{cfg.model.name}-{started}",
        tags={"ml_platform/trigger": "performance", "ml_platform/model": cfg.model.name, INPUTS_TAG: inputs,
              "ml_platform/breach_started": started, "ml_platform/breach_latest_day": latest,
              "ml_platform/metric": str(value("metric")), "ml_platform/floor": str(value("floor")),
              "ml_platform/rolling_metric": str(value("rolling_metric")),
              "ml_platform/breach_days": ", ".join(f"{d['day']}={d['rolling_metric']}" for d in days)[:200]},
    )


@dg.definitions
def performance() -> dg.Definitions:
    return dg.Definitions(assets=[late_labels, live_performance], sensors=[performance_sensor])


def _exists(con: Any, table: str) -> bool:
    schema, name = table.split(".")
    return bool(con.execute("select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                            [schema, name]).fetchall()[0][0])


def _move(path: Path, folder: Path, sha: str) -> Path:
    """Move a processed label file into `folder`; a different file of the same name already there is kept."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists() and file_sha256(target) != sha:
        target = folder / f"{path.stem}.{sha[:12]}{path.suffix}"
    shutil.move(str(path), str(target))
    return target


def _md_table(rows: list[dict], columns: tuple[str, ...]) -> str:
    if not rows:
        return "none"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _days_markdown(perf: LivePerformance) -> str:
    if not perf.days:
        return "no labelled predictions yet"

    def number(v: float | None) -> str:
        return "–" if v is None or pd.isna(v) else f"{v:.4f}"

    lines = [f"| day | labelled | daily {perf.metric} | window rows | rolling {perf.metric} | vs floor {perf.floor} |",
             "|---|---|---|---|---|---|"]
    for d in perf.days:
        judged = "not judged" if d.below_floor is None else ("**below**" if d.below_floor else "ok")
        lines.append(f"| {d.day} | {d.labelled_rows} | {number(d.daily_metric)} | {d.window_rows} | "
                     f"{number(d.rolling_metric)} | {judged} |")
    return "\n".join(lines)
