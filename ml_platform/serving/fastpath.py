"""The preprocessing of a served pipeline as plain NumPy, when it has the shape the platform builds.

Scoring a few rows through a fitted ColumnTransformer costs ~10 ms of per-call overhead (pandas
column selection and sklearn's input checks in every step), several times the model itself. For the
steps the platform's default pipeline uses (SimpleImputer, StandardScaler, OneHotEncoder with
handle_unknown='ignore', inside a ColumnTransformer that drops the rest and outputs dense) the same
arithmetic is a few array operations on the fitted statistics.

Nothing is assumed: `compile_preprocessing` returns None for any other shape, and the service uses the
compiled path only after it reproduced the pipeline's own output exactly on probe rows (see
`models.load_version`). Any other pipeline is served through sklearn, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class _Numeric:
    columns: tuple[str, ...]
    fill: np.ndarray | None  # imputer statistics, per column
    mean: np.ndarray | None
    scale: np.ndarray | None

    width = property(lambda self: len(self.columns))

    def write(self, rows: list[dict], out: np.ndarray) -> None:
        X = np.array([[r[c] for c in self.columns] for r in rows], dtype=float)  # None -> NaN
        if self.fill is not None:
            missing = np.isnan(X)
            if missing.any():
                X[missing] = np.broadcast_to(self.fill, X.shape)[missing]
        if self.mean is not None:
            X -= self.mean
        if self.scale is not None:
            X /= self.scale
        out[:] = X


@dataclass(frozen=True)
class _OneHot:
    columns: tuple[str, ...]
    fill: tuple[Any, ...] | None  # imputer statistics (most frequent), per column
    index: tuple[dict[Any, int], ...]  # category -> output column, per input column
    width: int

    def write(self, rows: list[dict], out: np.ndarray) -> None:
        out[:] = 0.0
        for j, column in enumerate(self.columns):
            lookup = self.index[j]
            for i, row in enumerate(rows):
                value = row[column]
                if value is None and self.fill is not None:
                    value = self.fill[j]
                position = lookup.get(value)
                if position is not None:  # an unknown category is all zeros (handle_unknown='ignore')
                    out[i, position] = 1.0


class CompiledPreprocessing:
    def __init__(self, blocks: list[_Numeric | _OneHot]):
        self.blocks = blocks
        self.width = sum(b.width for b in blocks)

    def transform(self, rows: list[dict]) -> np.ndarray:
        out = np.empty((len(rows), self.width))
        start = 0
        for block in self.blocks:
            block.write(rows, out[:, start:start + block.width])
            start += block.width
        return out


def compile_preprocessing(pipeline: Any) -> CompiledPreprocessing | None:
    """The first step of `pipeline` as NumPy, or None if it is not a shape this module knows."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        return None
    transformer = pipeline.steps[0][1]
    if not isinstance(transformer, ColumnTransformer) or transformer.sparse_threshold != 0:
        return None
    if not (isinstance(transformer.remainder, str) and transformer.remainder == "drop"):
        return None
    blocks = []
    for name, step, columns in transformer.transformers_:
        if name == "remainder":
            if step != "drop":
                return None
            continue
        if step == "drop" or not len(columns):
            continue
        if not all(isinstance(c, str) for c in columns):
            return None
        block = _compile_step_chain(step.steps if isinstance(step, Pipeline) else [(name, step)], tuple(columns))
        if block is None:
            return None
        blocks.append(block)
    return CompiledPreprocessing(blocks) if blocks else None


def _compile_step_chain(steps: list[tuple[str, Any]], columns: tuple[str, ...]) -> _Numeric | _OneHot | None:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    kinds = [type(step) for _, step in steps]
    imputer = steps[0][1] if kinds and kinds[0] is SimpleImputer else None
    rest = steps[1:] if imputer is not None else steps
    if imputer is not None:
        stats = imputer.statistics_
        missing_is_nan = imputer.missing_values is np.nan or (
            isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values))
        if imputer.add_indicator or not missing_is_nan or len(stats) != len(columns):
            return None
    if len(rest) == 1 and type(rest[0][1]) is StandardScaler:
        if imputer is not None and np.asarray(imputer.statistics_).dtype.kind not in "fiu":
            return None
        scaler = rest[0][1]
        if scaler.n_features_in_ != len(columns):
            return None
        fill = None if imputer is None else np.asarray(imputer.statistics_, dtype=float)
        if fill is not None and np.isnan(fill).any():
            return None  # an all-missing column, which sklearn drops: not this fast path
        return _Numeric(columns, fill, scaler.mean_ if scaler.with_mean else None,
                        scaler.scale_ if scaler.with_std else None)
    if len(rest) == 1 and type(rest[0][1]) is OneHotEncoder:
        encoder = rest[0][1]
        if (encoder.handle_unknown != "ignore" or encoder.drop is not None
                or getattr(encoder, "_infrequent_enabled", False) or len(encoder.categories_) != len(columns)):
            return None
        index, offset = [], 0
        for categories in encoder.categories_:
            index.append({_plain(c): offset + k for k, c in enumerate(categories)})
            offset += len(categories)
        fill = None if imputer is None else tuple(_plain(v) for v in imputer.statistics_)
        return _OneHot(columns, fill, tuple(index), offset)
    return None


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def probe_rows(schema: Any) -> list[dict]:
    """Rows that exercise every branch: nulls where allowed, every known category, an unknown one."""
    values = {}
    for col in schema.columns:
        if col.kind == "number":
            choices = [0.0, 1.5, -2.25, 1000.0, 37.0]
        elif col.kind == "integer":
            choices = [0, 1, 7, 100]
        elif col.kind == "boolean":
            choices = [True, False]
        else:
            choices = [*(sorted(col.allowed) if col.allowed else ["a", "b"]), "__unknown__"]
        values[col.name] = choices + ([None] if col.nullable else [])
    n = max(len(v) for v in values.values()) * 3
    return [{name: choices[(i + k) % len(choices)] for k, (name, choices) in enumerate(values.items())}
            for i in range(n)]
