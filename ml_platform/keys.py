"""Asset keys of the model this process runs. One model's keys are plain (`raw_batch`); a model whose config
sets `model.key_prefix: true` has its keys under its name (`tumours/raw_batch`), so that several models share
one Dagster deployment (one code location each, see docs/multiple-models.md) without a clash.

Code names assets by their plain name and turns it into a key here, and back with `name_of`."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from ml_platform import settings


def prefix() -> tuple[str, ...]:
    path = settings.config_path()
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return ()  # no config yet: the config loader reports that, where it is read
    return _prefix_of(str(path), stamp)


@lru_cache(maxsize=32)
def _prefix_of(path: str, stamp: int) -> tuple[str, ...]:
    from ml_platform.config import load_config

    model = load_config(Path(path), check_imports=False).model
    return (model.name,) if model.key_prefix else ()


def key(name: str) -> Any:
    """The AssetKey of the asset named `name` (e.g. "raw_batch", "features/churn_features")."""
    import dagster as dg

    return dg.AssetKey([*prefix(), *name.split("/")])


def name_of(asset_key: Any) -> str:
    """The plain name of one of this model's keys (the key as a string, for another model's key)."""
    path, own = list(asset_key.path), list(prefix())
    return "/".join(path[len(own):] if own and path[: len(own)] == own else path)
