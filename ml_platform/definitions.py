"""The Dagster code location: loads the defs folder (one folder per lifecycle stage) and applies the
project-wide policies in one place: owners from the config, code versions, the executor."""

import logging
import os
import sys
import warnings
from pathlib import Path

import dagster as dg

from ml_platform import keys, settings
from ml_platform.config import ProjectConfig, load_config
from ml_platform.lib.code_version import asset_code_version

# Dagster 1.13 warns about its own internals each time it attaches resources to a sensor; not ours to act on.
warnings.filterwarnings("ignore", message="Parameter `owners` of initializer `SensorDefinition", category=dg.BetaWarning)


class _ModelLocationsShareOneProject(logging.Filter):
    """Each model's code location (`<folder>/definitions.py`, written by `ml-platform init`) loads this one dg
    project, whose [tool.dg.project] code_location_name is `ml_platform`. On every load of any other location
    Dagster logs that the names differ (40-odd warnings per `make ui` start for one model): by design here, and
    harmless, since this project has no app-managed components. Only that message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "configured on this project does not match the name" not in record.getMessage()


logging.getLogger("dagster.components.core.component_tree").addFilter(_ModelLocationsShareOneProject())

# What each asset reads of the project config. A change there changes the asset's code version, so Dagster
# shows it (and everything downstream) stale and `ml-platform run` recomputes it; a change elsewhere does not
# (new training params retrain, they do not re-ingest). An asset not listed here depends on the whole config.
CONFIG_READ: dict[str, tuple[str, ...]] = {
    "raw_batch": ("model.name", "data"),
    "validated_batches": ("model.name", "data"),
    "training_data": ("model.name", "data", "features", "training.window_days"),
    "trained_model": ("model.name", "model.task", "data", "features", "training"),
    "model_evaluation": ("model.name", "model.task", "data", "features", "training", "gate"),
    "champion_model": ("model", "data", "features", "training", "gate", "governance"),
    "batch_predictions": ("model.name", "model.task", "data", "features"),
    "online_features": ("model.name", "data", "features"),
    "drift_report": ("model.name", "data", "features", "training", "drift"),
    "prediction_drift": ("model.name", "model.task", "data", "features", "training", "drift"),
    "traffic_drift_report": ("model.name", "data", "features", "training", "drift"),
    "late_labels": ("model.name", "model.task", "data", "features", "performance"),
    "live_performance": ("model.name", "model.task", "data", "features", "performance"),
    "cost_report": ("model.name",),
}


@dg.definitions
def defs() -> dg.Definitions:
    # Structural validation only (no estimator import): loading the definitions must stay cheap.
    settings.check_environment()  # a code location started by Dagster (dg dev, a deployment) skips the CLI's check
    config = load_config(settings.config_path(), check_imports=False)
    _stages_for(config)
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    versions = _code_versions(loaded, config)
    with warnings.catch_warnings():
        # map_asset_specs is marked "preview" in Dagster 1.13; it is the documented way to apply a policy
        # to every asset, and test_dg_sees_every_stage checks the owners it sets.
        warnings.filterwarnings("ignore", category=dg.PreviewWarning)
        mapped = loaded.map_asset_specs(func=lambda spec: spec.replace_attributes(
            owners=[config.model.owner],
            code_version=spec.code_version or versions.get(keys.name_of(spec.key)),
        ))
    return dg.Definitions.merge(_under_model_prefix(mapped), dg.Definitions(executor=_executor()))


def model_definitions(config_file: str | Path) -> dg.Definitions:
    """The code location of one model of several: `<folder>/definitions.py` (written by `ml-platform init`)
    calls this with its config, and workspace.yaml lists it as a location of its own. A location is a process
    of its own, so the config set here is the one its runs, sensors and schedules read."""
    os.environ["ML_PLATFORM_CONFIG"] = str(Path(config_file).resolve())
    return defs()


def _under_model_prefix(loaded: dg.Definitions) -> dg.Definitions:
    """With model.key_prefix, every asset key (and every key an asset depends on or a check targets) goes under
    the model's name. Keys the code already built with ml_platform.keys (dbt's, the freshness checks') are
    prefixed once; jobs and sensors name their keys through ml_platform.keys too."""
    prefix = keys.prefix()
    if not prefix:
        return loaded
    defs = [*(loaded.assets or []), *(loaded.asset_checks or [])]
    seen = {k for d in defs for k in (*d.keys, *d.dependency_keys, *(c.asset_key for c in d.check_keys))}
    renamed = {k: dg.AssetKey([*prefix, *k.path]) for k in seen if tuple(k.path[: len(prefix)]) != prefix}
    return dg.Definitions(
        assets=[d.with_attributes(asset_key_replacements=renamed) for d in loaded.assets or []],
        asset_checks=[d.with_attributes(asset_key_replacements=renamed) for d in loaded.asset_checks or []],
        jobs=loaded.jobs, schedules=loaded.schedules, sensors=loaded.sensors, resources=loaded.resources,
    )


def _stages_for(config: ProjectConfig) -> None:
    """The stages' modules are built for one feature model and one model's keys (defs/features/assets.py reads
    the config when imported, and the later stages depend on its assets). A process that loads the definitions for a config
    with another feature model (a test session, a notebook) imports them afresh."""
    features = sys.modules.get("ml_platform.defs.features.assets")
    if features is not None and (features.FEATURE_MODEL != config.features.dbt_model
                                 or features.KEY_PREFIX != keys.prefix()):
        for name in [m for m in sys.modules if m == "ml_platform.defs" or m.startswith("ml_platform.defs.")]:
            del sys.modules[name]


def _executor() -> dg.ExecutorDefinition:
    """Every job's executor, from ML_PLATFORM_EXECUTOR (settings.executor)."""
    chosen = settings.executor()
    if chosen == "celery":
        from ml_platform.workers import executor_definition

        return executor_definition()
    return dg.multiprocess_executor if chosen == "multiprocess" else dg.in_process_executor


def _code_versions(loaded: dg.Definitions, config: ProjectConfig) -> dict[str, str]:
    """Our assets' code versions (dbt's models carry their own: the SQL's checksum)."""
    plain = config.model_dump(mode="json", by_alias=True)
    versions = {}
    for assets_def in loaded.assets or []:
        if not isinstance(assets_def, dg.AssetsDefinition) or not assets_def.is_materializable:
            continue
        module = assets_def.op.compute_fn.decorated_fn.__module__
        for key in assets_def.keys:
            name = keys.name_of(key)
            read = CONFIG_READ.get(name)
            parts = {path: _at(plain, path) for path in read} if read is not None else plain
            versions[name] = asset_code_version(module, parts)
    return versions


def _at(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree
