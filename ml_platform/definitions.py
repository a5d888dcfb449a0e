"""The Dagster code location: loads the defs folder (one folder per lifecycle stage) and applies the
project-wide policies in one place."""

from pathlib import Path

import dagster as dg

from ml_platform import settings
from ml_platform.config import load_config


@dg.definitions
def defs() -> dg.Definitions:
    # Structural validation only (no estimator import): loading the definitions must stay cheap.
    config = load_config(settings.config_path(), check_imports=False)
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    return loaded.map_asset_specs(func=lambda spec: spec.replace_attributes(owners=[config.model.owner]))
