"""The feature code version: a hash of the dbt models a feature table is built from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


class FeatureModelError(KeyError):
    pass


def feature_code_version(manifest_path: Path, model_name: str) -> tuple[str, list[str]]:
    """SHA-256 over the manifest checksums of `model_name` and every model upstream of it.
    Returns (version, the models it covers). Changes when any SQL feeding the table changes."""
    manifest = json.loads(Path(manifest_path).read_text())
    nodes = manifest["nodes"]
    by_name = {n["name"]: uid for uid, n in nodes.items() if n["resource_type"] == "model"}
    if model_name not in by_name:
        raise FeatureModelError(
            f"features.dbt_model: '{model_name}' is not a model of the dbt project (models: {sorted(by_name)})"
        )
    seen: dict[str, str] = {}
    stack = [by_name[model_name]]
    while stack:
        uid = stack.pop()
        if uid in seen or uid not in nodes:
            continue
        node = nodes[uid]
        seen[uid] = node["checksum"]["checksum"]
        stack.extend(d for d in node["depends_on"]["nodes"] if d.startswith("model."))
    blob = json.dumps(sorted(seen.items())).encode()
    return hashlib.sha256(blob).hexdigest(), sorted(nodes[u]["name"] for u in seen)
