"""The diabetes team's model, as it left their notebook: a function returning a complete scikit-learn Pipeline.

The config names it as `training.estimator.pipeline: diabetes_model:ridge_pipeline` (a module beside the config
file is importable); `training.estimator.params` are its keyword arguments.
"""

from __future__ import annotations

NUMERIC = ["age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", "bmi_x_bp", "s5_to_s4"]
CATEGORICAL = ["sex"]


def ridge_pipeline(alpha: float = 1.0):
    """Standardized measurements and a one-hot sex into a ridge regression (regularization `alpha`)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    preprocess = ColumnTransformer([
        ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), NUMERIC),
        ("sex", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
    ], sparse_threshold=0.0)
    return Pipeline([("preprocess", preprocess), ("model", Ridge(alpha=alpha))])
