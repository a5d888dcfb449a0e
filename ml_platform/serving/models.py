"""The models the service answers with, kept current by watching the registry aliases.

A background thread polls `champion` and `challenger`. A new version is loaded in that thread, then
swapped in by one reference assignment, so requests never wait for a load and never see a half-loaded
model. Loaded versions stay cached, and `previous_champion` (the last known-good version) is loaded
before it is needed, so a rollback is served as soon as the alias move is seen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.serving.schema import RequestSchema

log = logging.getLogger("ml_platform.serving")

_DTYPES = {"integer": "int64", "number": "float64", "string": object, "boolean": "bool"}
CACHED_VERSIONS = 4  # champion, challenger, the previous champion and one more


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    pipeline: Any
    schema: RequestSchema
    positive_index: int  # -1 for a regressor: no classes, the score is the predicted value
    tags: dict[str, str]
    fast: Any = None  # CompiledPreprocessing when it reproduced the pipeline exactly (fastpath.py)

    def frame(self, rows: list[dict]) -> pd.DataFrame:
        """Checked rows → the model's input frame (one typed array per column; no per-cell pandas work)."""
        data = {}
        for col in self.schema.columns:
            values = [r[col.name] for r in rows]
            dtype = _DTYPES[col.kind]
            if col.nullable and col.kind in ("integer", "boolean"):
                dtype = "float64"  # None → NaN, as pandas reads a nullable column from the warehouse
            elif col.nullable and dtype is object:
                values = [np.nan if v is None else v for v in values]  # as model_inputs: NaN is what imputers impute
            data[col.name] = np.array(values, dtype=dtype)
        return pd.DataFrame(data, columns=self.schema.names)

    def predict(self, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """(positive-class scores, predicted labels). Labels are the argmax class, as `predict` returns. A
        regressor answers its predicted value as both (MLflow's /invocations answers `predict`'s values)."""
        if self.positive_index < 0:
            if self.fast is not None:
                predicted = self.pipeline.steps[-1][1].predict(self.fast.transform(rows))
            else:
                predicted = self.pipeline.predict(self.frame(rows))
            predicted = np.asarray(predicted, dtype=float)
            return predicted, predicted
        if self.fast is not None:
            proba = self.pipeline.steps[-1][1].predict_proba(self.fast.transform(rows))
        else:
            proba = self.pipeline.predict_proba(self.frame(rows))
        classes = self.pipeline.classes_
        return proba[:, self.positive_index], classes[np.argmax(proba, axis=1)]


def load_version(registry: Any, config: Any, version: str) -> LoadedModel:
    """Load one registered version with its signature; the request schema comes from both. The files are
    hashed and must match the digest recorded when the version was evaluated (ArtifactIntegrityError):
    the service answers only with the artifact that was evaluated."""
    import tempfile
    from pathlib import Path

    from ml_platform.lib.artifacts import DIGEST_TAG, verify_digest

    mlflow = registry.mlflow()
    uri = f"models:/{config.model.name}/{version}"
    tags = registry.version(config.model.name, version).tags
    with tempfile.TemporaryDirectory() as tmp:
        local, digest = registry.fetch_model(config.model.name, version, Path(tmp))
        verify_digest(config.model.name, str(version), digest, tags.get(DIGEST_TAG))
        info = mlflow.models.get_model_info(str(local))  # from the hashed copy, as is the model itself
        if info.signature is None or info.signature.inputs is None:
            raise ValueError(f"{uri} has no input signature: the service cannot check requests against it")
        inputs = [(spec.name, spec.type.name if hasattr(spec.type, "name") else str(spec.type))
                  for spec in info.signature.inputs.inputs]
        pipeline = mlflow.sklearn.load_model(str(local))
    if config.model.task == "regression":
        if hasattr(pipeline, "predict_proba"):
            raise ValueError(f"{uri} is a classifier, but model.task is regression")
        positive_index = -1
    else:
        classes = list(pipeline.classes_)
        if config.data.positive_label not in classes:
            raise ValueError(f"{uri}: positive label {config.data.positive_label!r} is not among classes {classes}")
        positive_index = classes.index(config.data.positive_label)
    model = LoadedModel(config.model.name, str(version), pipeline, RequestSchema.build(inputs, config),
                        positive_index, dict(tags))
    return replace(model, fast=_verified_fast_path(model))


def _verified_fast_path(model: LoadedModel) -> Any:
    """The NumPy preprocessing, if it gives exactly the pipeline's own output on probe rows; else None."""
    from ml_platform.serving.fastpath import compile_preprocessing, probe_rows

    compiled = compile_preprocessing(model.pipeline)
    if compiled is None:
        return None
    rows = probe_rows(model.schema)
    try:
        expected = np.asarray(model.pipeline[:-1].transform(model.frame(rows)), dtype=float)
        same = np.array_equal(compiled.transform(rows), expected, equal_nan=True)
    except Exception as exc:
        log.warning("version %s: fast preprocessing not used (%s)", model.version, exc)
        return None
    if not same:
        log.warning("version %s: fast preprocessing differs from the pipeline on probe rows; not used", model.version)
        return None
    return compiled


class ModelWatcher:
    """Holds `champion` and `challenger` (LoadedModel or None) and keeps them in step with the registry."""

    def __init__(self, registry: Any, config: Any, *, poll_seconds: float,
                 on_change: Callable[[str, LoadedModel | None, LoadedModel | None], None] | None = None,
                 pinned_version: str | None = None):
        from ml_platform.resources.governance import PREVIOUS_CHAMPION
        from ml_platform.resources.registry import CHALLENGER, CHAMPION

        self._aliases = (CHAMPION, CHALLENGER)
        self._previous_alias = PREVIOUS_CHAMPION
        self.previous_version: str | None = None
        self.registry, self.config, self.poll_seconds = registry, config, poll_seconds
        self.on_change = on_change or (lambda alias, old, new: None)
        self.champion: LoadedModel | None = None
        self.challenger: LoadedModel | None = None
        self._cache: dict[str, LoadedModel] = {}
        self._failed: dict[str, float] = {}  # version -> when its load last failed (retried after a pause)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alias-watcher", daemon=True)
        self.first_poll_done = threading.Event()  # both aliases looked at once: the service may report ready
        self.last_poll: float | None = None
        self.last_error: str | None = None
        self.refused: dict[str, str] = {}  # version -> why it was not loaded (until it loads)
        self.wanted: dict[str, str | None] = {}  # alias -> the version the registry named at the last poll
        # `ml-platform serve --version N`: answer with that version as the champion, whatever the aliases say.
        self.pinned_version = str(pinned_version) if pinned_version is not None else None

    def start(self) -> None:
        try:
            self.refresh()  # the first load; the service reports ready once a champion is loaded
        except Exception as exc:  # e.g. the registry is down: keep polling, /ready says why
            self.last_error = f"registry poll failed: {exc}"
            log.error(self.last_error)
        self.first_poll_done.set()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def refresh(self) -> None:
        """One poll (one registry call): look up the aliases and swap in what moved."""
        if self.pinned_version is not None:
            aliases = {self._aliases[0]: self.pinned_version}
        else:
            aliases = self.registry.aliases(self.config.model.name)
        self.wanted = {alias: aliases.get(alias) for alias in self._aliases}
        for alias in self._aliases:
            version = aliases.get(alias)
            current = getattr(self, alias)
            if version == (current.version if current else None):
                continue
            new = self._get(version) if version else None
            if version and new is None:
                continue  # the load failed: keep answering with the last known-good model
            setattr(self, alias, new)  # the swap: one reference assignment
            log.warning("%s: %s → %s", alias, current.version if current else "none", version or "none")
            self.on_change(alias, current, new)
        # The rollback target, loaded before it is needed (a rollback then swaps without a load).
        previous = aliases.get(self._previous_alias)
        if previous and previous not in self._cache:
            self._get(previous)
        self.previous_version = previous
        self.last_poll, self.last_error = time.time(), None

    def _get(self, version: str) -> LoadedModel | None:
        if version in self._cache:
            model = self._cache.pop(version)
        else:
            if time.time() - self._failed.get(version, 0) < 10:
                return None
            try:
                model = load_version(self.registry, self.config, version)
            except Exception as exc:  # a broken or altered artifact must not take the service down
                self._failed[version] = time.time()
                self.refused[version] = f"{type(exc).__name__}: {exc}"
                self.last_error = f"version {version} refused: {exc}"
                log.error(self.last_error)
                return None
            self.refused.pop(version, None)
        self._cache[version] = model  # most recently used last
        keep = {m.version for m in (self.champion, self.challenger) if m} | {version, self.previous_version}
        while len(self._cache) > CACHED_VERSIONS:
            oldest = next(v for v in self._cache if v not in keep)
            del self._cache[oldest]
        return model

    def champion_refused(self) -> str | None:
        """Why the version named champion is not the one answering (None when it is)."""
        wanted = self.wanted.get(self._aliases[0])
        if wanted is None or (self.champion is not None and self.champion.version == wanted):
            return None
        reason = self.refused.get(wanted)
        return f"champion version {wanted} refused: {reason}" if reason else None

    def loaded_versions(self) -> list[str]:
        return list(self._cache)

    def _run(self) -> None:
        fingerprint, asked = None, 0.0
        while not self._stop.wait(self.poll_seconds):
            try:
                # The registry query costs ~10 ms of CPU (and the GIL) per poll; with a SQLite store,
                # ask only when the file changed, and at least every 30 s anyway.
                current = self.registry.store_fingerprint()
                if current is not None and current == fingerprint and time.time() - asked < 30:
                    self.last_poll = time.time()
                    continue
                self.refresh()
                fingerprint, asked = current, time.time()
            except Exception as exc:  # registry unreachable: keep serving what is loaded, say so
                self.last_error = f"registry poll failed: {exc}"
                log.error(self.last_error)
