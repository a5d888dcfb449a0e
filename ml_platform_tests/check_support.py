"""Models that fail `ml-platform check` on purpose, as a team's `training.estimator.pipeline` factory would
return them: real scikit-learn pipelines, trained, logged and evaluated by the platform's own lifecycle."""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier

DEMO_NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls", "num_products",
                "senior_citizen", "avg_charge_per_month", "charges_to_products", "is_new_customer",
                "calls_per_tenure_year", "is_month_to_month", "has_fiber"]
DEMO_CATEGORICAL = ["contract", "payment_method", "internet_service", "region"]


def step_function_pipeline(random_state: int = 0) -> Pipeline:
    """A fully grown decision tree: it fits every training row, so its score is a step function of the inputs
    with thresholds between neighbouring rows, and a tiny change in a charge can flip a score from 0 to 1."""
    preprocess = ColumnTransformer([("numeric", "passthrough", DEMO_NUMERIC),
                                    ("categorical", OneHotEncoder(handle_unknown="ignore"), DEMO_CATEGORICAL)],
                                   sparse_threshold=0.0)
    return Pipeline([("preprocess", preprocess), ("model", DecisionTreeClassifier(random_state=random_state))])
