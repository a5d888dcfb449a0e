"""Code versions for the assets: what makes an asset's output change besides its inputs' data.

An asset's code version is a hash of the source of the module that defines it, of every `ml_platform.lib`
module that module imports (transitively: the logic that decides the output), and of the config sections
the asset reads. Dagster compares it with the version recorded at the last materialization: a changed
hash marks the asset, and everything downstream of it, stale. Whitespace-only edits count as changes:
the rule is simple and errs towards recomputing.
"""

from __future__ import annotations

import ast
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

_LOGIC_PACKAGE = "ml_platform.lib"
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the ml_platform package folder


def asset_code_version(module: str, config_parts: dict[str, Any]) -> str:
    """The code version of an asset defined in `module` that reads `config_parts` (config section name -> value)."""
    digest = hashlib.sha256()
    for name in sorted(_with_logic_imports(module)):
        digest.update(name.encode() + b"\0" + _source(name) + b"\0")
    digest.update(json.dumps(config_parts, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


@cache
def _source(module: str) -> bytes:
    path = _module_path(module)
    if path is None:
        raise LookupError(f"module {module} not found under {_PACKAGE_ROOT}")
    return path.read_bytes()


def _module_path(module: str) -> Path | None:
    """The file of an ml_platform module, found by path: nothing is imported (the definitions load stays cheap)."""
    if module != "ml_platform" and not module.startswith("ml_platform."):
        return None
    base = _PACKAGE_ROOT.parent.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _with_logic_imports(module: str) -> frozenset[str]:
    """`module` and the ml_platform.lib modules it imports, transitively (parsed, not imported)."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(i for i in _imports(name) if i.startswith(_LOGIC_PACKAGE + ".") and i not in seen)
    return frozenset(seen)


def _imports(module: str) -> set[str]:
    """The ml_platform modules `module` imports (`from pkg import module` counts as importing pkg.module)."""
    found = set()
    for node in ast.walk(ast.parse(_source(module))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if _module_path(name) is not None}
