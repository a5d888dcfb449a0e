"""Features: the dbt project builds the feature table from the validated batches; dbt tests are asset checks."""

import difflib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from ml_platform import keys, settings
from ml_platform.config import ConfigError, load_config
from ml_platform.defs.features.project import feature_project
from ml_platform.prefetch import training_tasks, while_waiting
from ml_platform.resources import ModelRegistry, ProjectResource
from ml_platform.storage import dbt_environment


class _NoAdapterHandleWarning(logging.Filter):
    """dagster-dbt tries to open a dbt-core adapter in this process to fetch extra column metadata; dbt
    runs from its own virtualenv here (see pyproject's `dbt` extra), so that attempt always fails.
    The build itself is unaffected: hide the traceback it logs on every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "creating a handle to the dbt adapter" not in str(record.msg)


logging.getLogger("dagster.builtin").addFilter(_NoAdapterHandleWarning())

PARTIAL_PARSE = "partial_parse.msgpack"  # dbt's parsed project, reused while the project files are unchanged


class FeatureTranslator(DagsterDbtTranslator):
    """All dbt key, group and owner decisions live here."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: Any) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if unique_id.startswith("source."):
            # The dbt source raw.<model>_batches is the table the validation stage writes.
            return spec.replace_attributes(key=keys.key("validated_batches"))
        return spec.replace_attributes(key=keys.key(spec.key.to_user_string()), group_name="features")


def manifest_for(manifest: dict, dbt_model: str) -> dict:
    """The manifest cut down to `dbt_model`, the models it depends on (`+<dbt_model>` in dbt's selection
    syntax) and their tests. dbt-core lives in its own virtualenv, so dagster-dbt cannot evaluate a selection
    string in this process: the cut is made here, from the manifest's own dependency lists."""
    nodes = manifest["nodes"]
    wanted = [uid for uid, n in nodes.items() if n["resource_type"] == "model" and n["name"] == dbt_model]
    keep: set[str] = set()
    while wanted:
        uid = wanted.pop()
        if uid in keep:
            continue
        if uid in manifest.get("sources", {}):
            keep.add(uid)
        elif uid in nodes:
            keep.add(uid)
            wanted.extend(nodes[uid].get("depends_on", {}).get("nodes", []))
    sources = {uid for uid in keep if uid.startswith("source.")}
    models = keep - sources
    tests = {uid for uid, n in nodes.items() if n["resource_type"] == "test"
             and set(n.get("depends_on", {}).get("nodes", [])) <= keep
             and set(n.get("depends_on", {}).get("nodes", [])) & models}
    kept = models | tests | sources

    def cut(graph: dict | None) -> dict | None:
        return None if graph is None else {k: [v for v in vs if v in kept] for k, vs in graph.items() if k in kept}

    return {**manifest, "nodes": {uid: nodes[uid] for uid in models | tests},
            "sources": {uid: src for uid, src in manifest.get("sources", {}).items() if uid in sources},
            "child_map": cut(manifest.get("child_map")), "parent_map": cut(manifest.get("parent_map"))}


@cache
def feature_models_for(dbt_model: str) -> dg.AssetsDefinition:
    """The dbt assets that build `dbt_model` and what it depends on (`dbt build --select +<dbt_model>`), and
    nothing else: another model's features (the churn demo's, a second example's) neither run nor show."""
    manifest = json.loads(Path(feature_project().manifest_path).read_text())
    models = sorted(n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "model")
    if dbt_model not in models:
        raise ConfigError(f"{settings.config_path().name}: features.dbt_model: '{dbt_model}' is not a model of the "
                          f"dbt project {settings.dbt_project_dir()}{_hint(dbt_model, models)} (its models: "
                          f"{', '.join(models)})")

    @dbt_assets(
        manifest=manifest_for(manifest, dbt_model),
        project=feature_project(),
        # Every node of the cut manifest; and no default `--select` for dbt, which would mean the whole project.
        select="",
        name="feature_models",
        dagster_dbt_translator=FeatureTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
    )
    def feature_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, project: ProjectResource,
                       registry: ModelRegistry):
        paths = project.paths()
        os.environ.update(dbt_environment())  # dbt's profile reads the target and warehouse from the environment
        # dbt's per-run build files go under the home, and are removed once the build succeeded (a failed
        # build keeps them for debugging); otherwise each run leaves ~2 MB in dbt_project/target.
        target = paths.home / "dbt" / context.run.run_id
        assets_def = context.assets_def
        whole = (assets_def.keys_by_output_name == assets_def.node_keys_by_output_name
                 and assets_def.check_specs_by_output_name == assets_def.node_check_specs_by_output_name)
        # A run of a subset gets dagster-dbt's own `--select` of exactly those models and tests; the whole set is
        # `+<dbt_model>`, said here (dagster-dbt would otherwise pass none, and dbt would build every model).
        args = ["build", "--select", f"+{dbt_model}"] if whole else ["build"]
        # dbt's parse of the project, kept per home: the copy dagster-dbt brings from dbt_project/target was made
        # for another profile (the warehouse path is the home's), which makes dbt parse everything again (~1 s).
        parsed = paths.home / "dbt" / PARTIAL_PARSE
        if parsed.exists():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(parsed, target / PARTIAL_PARSE)
        # While dbt builds in its own process, this one prepares what training needs next (ml_platform/prefetch.py).
        with while_waiting(training_tasks(project.config().training.estimator.class_, registry.open)):
            yield from dbt.cli(args, context=context, target_path=target).stream()
        if (target / PARTIAL_PARSE).exists():
            os.replace(target / PARTIAL_PARSE, parsed)
        shutil.rmtree(target, ignore_errors=True)

    return feature_models


def _hint(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


# The configured model's feature assets, chosen when this module is imported (the config's features.dbt_model):
# what training, scoring, online features and drift depend on. definitions.py imports the stages afresh when
# a process loads the definitions for a config with another feature model.
FEATURE_MODEL = load_config(settings.config_path(), check_imports=False).features.dbt_model
KEY_PREFIX = keys.prefix()  # the stages' keys, jobs and sensors are built for this model's keys
feature_models = feature_models_for(FEATURE_MODEL)
