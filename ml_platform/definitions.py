"""The Dagster code location: loads the defs folder (one folder per lifecycle stage) and applies the
project-wide policies in one place."""

import warnings
from pathlib import Path

import dagster as dg

from ml_platform import settings
from ml_platform.config import load_config

# Dagster 1.13 warns about its own internals each time it attaches resources to a sensor; not ours to act on.
warnings.filterwarnings("ignore", message="Parameter `owners` of initializer `SensorDefinition", category=dg.BetaWarning)


@dg.definitions
def defs() -> dg.Definitions:
    # Structural validation only (no estimator import): loading the definitions must stay cheap.
    config = load_config(settings.config_path(), check_imports=False)
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    with warnings.catch_warnings():
        # map_asset_specs is marked "preview" in Dagster 1.13; it is the documented way to apply a policy
        # to every asset, and test_dg_sees_every_stage checks the owners it sets.
        warnings.filterwarnings("ignore", category=dg.PreviewWarning)
        return loaded.map_asset_specs(func=lambda spec: spec.replace_attributes(owners=[config.model.owner]))
