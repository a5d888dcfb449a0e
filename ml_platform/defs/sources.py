"""What changes outside Dagster, as observable source assets: the data source, late label files, the online
prediction log and the champion alias. Each observation is a cheap content version; an asset downstream of
one is stale when its version moved since the asset was last materialized. `ml-platform run` observes them
before deciding what to recompute (runner.py); in the UI, "Observe sources" does the same. Each asset that reads
a source also records it as read (observe_as_read), so that its materialization names what it read however it
was started.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import dagster as dg

from ml_platform import keys
from ml_platform.config import ProjectConfig
from ml_platform.lib.labels import is_label_file, label_landing
from ml_platform.resources import ProjectResource, Warehouse
from ml_platform.settings import AUDIT_TABLE, PREDICTION_LOG_TABLE, PlatformPaths

if TYPE_CHECKING:
    import pandas as pd


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:24]


def source_data_version(cfg: ProjectConfig, paths: PlatformPaths, warehouse: Warehouse, batch: str | None = None) -> str:
    """The batch the source would deliver now. Demo: its parameters and number (the next one, or `batch`);
    file: the SHA-256 of its bytes (and how a CSV is read); table: a hash of its rows."""
    from ml_platform.lib.snapshots import file_sha256
    from ml_platform.lib.sources import next_demo_batch

    source = cfg.data.source
    if source.kind == "demo":
        number = int(batch) if batch else next_demo_batch(warehouse.ingested_batch_ids(cfg.raw_table))
        return _digest({"demo": source.demo.model_dump(), "batch": number})
    if source.kind == "file":
        path = cfg.source_path()
        if not path.is_file():
            return "file:missing"
        # How the file is read is part of the batch: the same bytes read with other missing values are other data.
        read_as = "" if source.csv == type(source.csv)() else f":csv:{_digest(source.csv.model_dump())}"
        return f"file:{file_sha256(path)}{read_as}"
    if not warehouse.table_exists(source.table or ""):
        return "table:missing"
    return table_version(warehouse.query(f"select * from {source.table}"))


def table_version(frame: pd.DataFrame) -> str:
    """A `kind: table` source's version: a hash of its rows (raw_batch computes it from the rows it loaded)."""
    import pandas as pd

    return "table:" + hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).values.tobytes()).hexdigest()[:24]


def label_files_version(cfg: ProjectConfig, paths: PlatformPaths, warehouse: Warehouse, batch: str | None = None) -> str:
    """The label files waiting in the landing folder (name, size, modification time)."""
    landing = label_landing(cfg, paths)
    waiting = sorted(p for p in landing.iterdir() if is_label_file(p)) if landing.is_dir() else []
    return _digest([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in waiting])


def prediction_log_version(cfg: ProjectConfig, paths: PlatformPaths, warehouse: Warehouse, batch: str | None = None) -> str:
    """How much the online service has logged for this model (rows, newest time)."""
    if not warehouse.table_exists(PREDICTION_LOG_TABLE):
        return "empty"
    with warehouse.connect(read_only=True) as con:
        rows, newest = con.execute(f"select count(*), max(logged_at) from {PREDICTION_LOG_TABLE} where model_name = ?",
                                   [cfg.model.name]).fetchall()[0]
    return _digest([rows, newest])


def champion_version(cfg: ProjectConfig, paths: PlatformPaths, warehouse: Warehouse, batch: str | None = None) -> str:
    """The champion as the audit log last set it (every move of the alias is audited: governance.py), read from
    the warehouse so that observing needs no MLflow."""
    if not warehouse.table_exists(AUDIT_TABLE):
        return "none"
    with warehouse.connect(read_only=True) as con:
        row = con.execute(f"select to_version from {AUDIT_TABLE} where model_name = ? and to_version is not null "
                          "order by seq desc limit 1", [cfg.model.name]).fetchone()
    return f"v{row[0]}" if row else "none"


# Every observable source and how to version it: used by the assets below and by runner.observe_sources.
OBSERVERS: dict[str, Callable[..., str]] = {
    "source_data": source_data_version,
    "label_files": label_files_version,
    "prediction_log": prediction_log_version,
    "champion_alias": champion_version,
}
_GROUPS = {"source_data": "ingestion", "label_files": "monitoring", "prediction_log": "monitoring",
           "champion_alias": "registry"}
_DESCRIPTIONS = {
    "source_data": "The configured data source (data.source): demo generator, file or warehouse table. Its version "
                   "is the batch it would deliver now; raw_batch is stale when it moves.",
    "label_files": "Late label files waiting in the landing folder (performance.labels_path).",
    "prediction_log": "The online service's prediction log (serving.prediction_log) for this model.",
    "champion_alias": "The MLflow alias `champion`, as the audit log last moved it (promotion, sign-off, rollback).",
}


def observed_version(name: str, cfg: ProjectConfig, paths: PlatformPaths, warehouse: Warehouse, *,
                     batch: str | None = None) -> str:
    """Source `name`'s version now. Never raises: an unreadable source file is a version of its own, and raw_batch
    then runs and reports it clearly (an observation failing first would only say that observing failed)."""
    try:
        return OBSERVERS[name](cfg, paths, warehouse, batch=batch)
    except Exception as exc:
        return f"unobservable: {type(exc).__name__}: {exc}"


def record_observation(instance: dg.DagsterInstance, name: str, cfg: ProjectConfig, paths: PlatformPaths,
                       warehouse: Warehouse, *, batch: str | None = None, version: str | None = None) -> str:
    """Observe source `name` now and record its version if it moved (no run needed); returns the version."""
    from dagster._core.definitions.data_version import DATA_VERSION_TAG

    key = keys.key(name)
    version = version or observed_version(name, cfg, paths, warehouse, batch=batch)
    latest = instance.get_latest_data_version_record(key, is_source=True)
    observed = latest.asset_observation if latest is not None else None
    if observed is None or (observed.tags or {}).get(DATA_VERSION_TAG) != version:
        instance.report_runless_asset_event(dg.AssetObservation(asset_key=key, tags={DATA_VERSION_TAG: version}))
    return version


def observe_as_read(context: dg.AssetExecutionContext, project: ProjectResource, warehouse: Warehouse, *names: str,
                    batch: str | None = None, version: str | None = None) -> None:
    """Record the sources `names` as this step reads them (`version`: as the step computed it from what it read),
    and make its materialization name those versions. Dagster takes a step's input versions from the sources'
    last observations when the step starts: a run that did not observe them first (the asset graph's
    "Materialize", a selection of assets) or that ingests a chosen demo batch would name older ones. The next
    `ml-platform run` then redid work already done, or took a batch that was never ingested for one that was,
    and skipped it."""
    cfg, paths = project.config(), project.paths()
    step = context.op_execution_context._step_execution_context  # noqa: SLF001 (no public way to refresh it)
    for name in names:
        record_observation(context.instance, name, cfg, paths, warehouse, batch=batch, version=version)
        step.wipe_input_asset_version_info(keys.key(name))  # read again, with the observation just recorded


def _observable(name: str) -> dg.AssetsDefinition:
    spec = dg.AssetSpec(name, group_name=_GROUPS[name], description=_DESCRIPTIONS[name])

    @dg.multi_observable_source_asset(specs=[spec], name=f"observe_{name}")
    def _observed(project: ProjectResource, warehouse: Warehouse):
        version = observed_version(name, project.config(), project.paths(), warehouse)
        yield dg.ObserveResult(asset_key=keys.key(name), data_version=dg.DataVersion(version))

    return _observed


source_data, label_files, prediction_log, champion_alias = (_observable(n) for n in OBSERVERS)
