"""Turning a feature table into a fitted scikit-learn Pipeline, reproducibly.

sklearn is imported inside the functions: this module is imported by the Dagster code location.
"""

from __future__ import annotations

import inspect
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ml_platform.config import ProjectConfig

# Columns the platform adds to every feature table; never model inputs.
FEATURE_TABLE_META = ("snapshot_hash", "batch_id")

# The one list of types skops may load beyond its safe defaults (MLflow saves sklearn models with
# skops). Each entry was reviewed: TreePredictor holds the fitted trees of HistGradientBoosting*.
SKOPS_TRUSTED_TYPES = (
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)


class ModelSpecError(ValueError):
    """The configured estimator or pipeline factory cannot produce a usable model."""


def trusted_types(config: ProjectConfig) -> list[str]:
    return [*SKOPS_TRUSTED_TYPES, *config.training.trusted_types]


def feature_columns(frame: pd.DataFrame, config: ProjectConfig) -> list[str]:
    data = config.data
    skip = {data.target, data.id_column, data.timestamp_column, *data.exclude_columns, *FEATURE_TABLE_META}
    return [c for c in frame.columns if c not in skip]


def model_inputs(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The model's input frame. Booleans become 0/1 so imputers and encoders treat them alike everywhere; a
    missing text value is NaN, whether the source said None (the warehouse's null string) or NaN: scikit-learn's
    SimpleImputer imputes NaN but keeps None as a category of its own, so a None would be scored one way in
    training and batch scoring and another way online."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"model input columns missing from the data: {missing}")
    X = frame.reindex(columns=columns)  # one copy (frame[columns].copy() made two)
    for col in X.columns:
        if X[col].dtype == bool or str(X[col].dtype) == "boolean":
            X[col] = X[col].astype("float64")
        elif X[col].dtype == object:
            nulls = X[col].isna()
            if nulls.any():
                X[col] = X[col].mask(nulls, np.nan)
    return X


def holdout_mask(frame: pd.DataFrame, config: ProjectConfig) -> np.ndarray:
    """True for holdout rows. With an id column the split hashes the id, so an entity stays on the
    same side across retrainings (the holdout is frozen as data grows); otherwise a seeded shuffle.

    The last mask is remembered for its frame (training and evaluation split the same snapshot frame, which
    read_snapshot caches): hashing a million ids takes about a second."""
    fraction = config.training.holdout_fraction
    id_col = config.data.id_column
    rule = (id_col if id_col and id_col in frame.columns else None, config.training.seed, fraction, len(frame))
    last_frame, last_rule, last_mask = _last_holdout_mask
    if last_frame() is frame and last_rule == rule:
        return last_mask.copy()
    if rule[0]:
        salt = str(config.training.seed)
        hashed = pd.util.hash_pandas_object(frame[id_col].astype(str) + salt, index=False).to_numpy()
        mask = (hashed % 10_000) < int(fraction * 10_000)
    else:
        mask = np.random.default_rng(config.training.seed).random(len(frame)) < fraction
    _last_holdout_mask[:] = [weakref.ref(frame), rule, mask]
    return mask.copy()


_last_holdout_mask: list = [lambda: None, None, None]  # [weak reference to the frame, its rule, its mask]


NEAR_UNIQUE_SAMPLE = 10_000  # rows looked at: enough to tell free text from a category, cheap on any batch


def _refuse_near_unique(X: pd.DataFrame, categorical: list[str]) -> None:
    """The one-hot encoder makes one column per distinct value: free text (an email, a comment) would make about
    one per row, a model that learns nothing from it, and on a large batch a matrix that does not fit in memory
    (20,000 rows with an email column: 7.3 GB). A category has far fewer values than rows."""
    sample = X.head(NEAR_UNIQUE_SAMPLE)
    for column in categorical:
        distinct = sample[column].nunique()
        if distinct > max(100, len(sample) // 2):
            raise ModelSpecError(
                f"data: column {column!r} is text with {distinct:,} distinct values in its first {len(sample):,} "
                "rows, not a category: one-hot encoded it would add a column per value. Add it to "
                "data.exclude_columns, or derive features from it in the dbt model")


def build_pipeline(config: ProjectConfig, X: pd.DataFrame) -> Any:
    """The configured model as an unfitted sklearn Pipeline.

    `estimator.class` gets the platform's preprocessing (impute + scale numbers, one-hot categories);
    `estimator.pipeline` is a team's own factory and must return a complete Pipeline itself.
    """
    from sklearn.base import clone, is_classifier, is_regressor
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from ml_platform.config import resolve_estimator

    spec = config.training.estimator
    target = resolve_estimator(config)
    seed = config.training.seed
    if spec.pipeline:
        try:
            pipeline = target(**spec.params)
        except TypeError as exc:
            raise ModelSpecError(f"training.estimator.pipeline: calling {spec.pipeline}(**params) failed: {exc}") from None
        if not isinstance(pipeline, Pipeline):
            raise ModelSpecError(
                f"training.estimator.pipeline: {spec.pipeline} returned {type(pipeline).__name__}, "
                "expected a sklearn.pipeline.Pipeline"
            )
        pipeline = clone(pipeline)
    else:
        params = dict(spec.params)
        if "random_state" in inspect.signature(target).parameters:
            params.setdefault("random_state", seed)
        try:
            estimator = target(**params)
        except TypeError as exc:
            raise ModelSpecError(f"training.estimator.params: {spec.class_} rejected them: {exc}") from None
        numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
        categorical = [c for c in X.columns if c not in numeric]
        _refuse_near_unique(X, categorical)
        preprocess = ColumnTransformer(
            [
                ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
                ("categorical", Pipeline([
                    ("impute", SimpleImputer(strategy="most_frequent")),
                    ("one_hot", OneHotEncoder(handle_unknown="ignore")),
                ]), categorical),
            ],
            sparse_threshold=0.0,  # HistGradientBoosting wants dense input
        )
        pipeline = Pipeline([("preprocess", preprocess), ("model", estimator)])
    field = "training.estimator.pipeline" if spec.pipeline else "training.estimator.class"
    given = spec.pipeline or spec.class_
    if config.model.task == "regression":
        if is_classifier(pipeline):
            raise ModelSpecError(f"{config.source_file.name}: {field}: '{given}' is a classifier, but model.task is "
                                 "regression: use a regressor (e.g. sklearn.linear_model.Ridge or "
                                 "sklearn.ensemble.HistGradientBoostingRegressor)")
        if not is_regressor(pipeline):
            raise ModelSpecError(f"{config.source_file.name}: {field}: '{given}' is not a regressor (model.task is "
                                 "regression)")
    elif not is_classifier(pipeline):
        hint = (" but a regressor: set model.task: regression for a numeric target, or use a classifier"
                if is_regressor(pipeline) else " (it has no predict_proba)")
        raise ModelSpecError(f"{config.source_file.name}: {field}: '{given}' is not a classifier{hint}")
    return pipeline


@dataclass(frozen=True)
class TrainingSplit:
    X_train: pd.DataFrame
    y_train: pd.Series
    X_holdout: pd.DataFrame
    y_holdout: pd.Series
    holdout: pd.DataFrame  # the full holdout rows (ids, sensitive column) for evaluation
    feature_columns: list[str]


def split_training_data(frame: pd.DataFrame, config: ProjectConfig) -> TrainingSplit:
    cols = feature_columns(frame, config)
    target = config.data.target
    mask = holdout_mask(frame, config)
    train, holdout = frame[~mask], frame[mask]
    if train.empty or holdout.empty:
        raise ModelSpecError(
            f"the training data ({len(frame)} rows) is too small to split with holdout_fraction "
            f"{config.training.holdout_fraction}"
        )
    return TrainingSplit(
        X_train=model_inputs(train, cols),
        y_train=train[target],
        X_holdout=model_inputs(holdout, cols),
        y_holdout=holdout[target],
        holdout=holdout.reset_index(drop=True),
        feature_columns=cols,
    )


def positive_scores(model: Any, X: pd.DataFrame, positive_label: Any) -> np.ndarray:
    """Probability of the positive label, for any fitted classifier with classes_. A regression config has no
    positive label (None, enforced by the config): the score is then the regressor's predicted value."""
    if positive_label is None:
        return np.asarray(model.predict(X), dtype=float)
    proba = model.predict_proba(X)
    classes = list(model.classes_)
    return proba[:, classes.index(positive_label)]

