"""A team's notebook, as it was the day the model went to production: load the CSV, fit, look at the AUC.

The platform needs one thing from it: `build_pipeline`, a function returning the scikit-learn Pipeline
(preprocessing and model together). The config names it (`training.estimator.pipeline:
tumour_model:build_pipeline`); the platform then does the loading, splitting, tracking, evaluation and
gating that the `__main__` block below does by hand.
"""

from __future__ import annotations


def build_pipeline(C: float = 1.0):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([
        ("impute", SimpleImputer(strategy="median")),
        ("scale", StandardScaler()),
        ("model", LogisticRegression(C=C, max_iter=1000)),
    ])


if __name__ == "__main__":  # the notebook's cells
    import sys

    import pandas as pd
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    frame = pd.read_csv(sys.argv[1])
    X, y = frame.drop(columns=["patient_id", "diagnosis"]), frame["diagnosis"] == "malignant"
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    model = build_pipeline().fit(X_train, y_train)
    print(f"holdout ROC AUC: {roc_auc_score(y_test, model.predict_proba(X_test)[:, 1]):.3f}")
