"""The project config: one YAML file that describes the model a team runs.

Validated once into `ProjectConfig`. Every error is a `ConfigError` whose message names the file,
the field and what is wrong, e.g.
`ml_platform.yaml: training.estimator.class: 'sklearn.ensemble.RandomForest' is not importable
(did you mean RandomForestClassifier?)`.

Only the standard library, pydantic and yaml (lib/yaml_files.py) are imported here: the config is read by the CLI and
by runs, and must stay cheap.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ml_platform.lib.yaml_files import DuplicateKeyError, load_yaml

ColumnType = Literal["integer", "number", "category", "boolean", "string", "date", "datetime"]
Task = Literal["classification", "regression"]

# Gate metrics per task. Lower-is-better metrics are gated on their negation (neg_*), so "higher wins" everywhere.
CLASSIFICATION_GATE_METRICS = ("roc_auc", "f1", "neg_log_loss", "neg_brier")
REGRESSION_GATE_METRICS = ("neg_rmse", "neg_mae", "r2")
GateMetric = Literal["roc_auc", "f1", "neg_log_loss", "neg_brier", "neg_rmse", "neg_mae", "r2"]
# Live metrics per task: judged on late labels (lib/performance.py). F1 and accuracy threshold the score at 0.5.
CLASSIFICATION_LIVE_METRICS = ("roc_auc", "f1", "accuracy")
LiveMetric = Literal["roc_auc", "f1", "accuracy", "neg_rmse", "neg_mae", "r2"]


class ConfigError(ValueError):
    """The project config is missing, unreadable or invalid."""


class _Strict(BaseModel):
    # A typo in a field name is an error, not a silently ignored key.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Registered model name (snake_case).")
    owner: str = Field("team:ml-platform", description="Dagster asset owner: an email or 'team:<name>'.")
    description: str = ""
    risk_tier: Literal["low", "medium", "high"] = Field(
        "low", description="From medium up, a challenger that passed the gate also needs a human sign-off."
    )
    task: Task = Field(
        "classification", description="classification: scores are the positive label's probability; "
        "regression: scores are the predicted value of a numeric target."
    )
    intended_use: str = ""
    limitations: list[str] = []
    key_prefix: bool = Field(
        False, description="Put this model's Dagster asset keys under its name (tumours/raw_batch): for several "
        "models in one Dagster deployment, each in its own code location (docs/multiple-models.md)."
    )

    @field_validator("owner")
    @classmethod
    def _dagster_owner(cls, value: str) -> str:
        if not re.fullmatch(r"team:[A-Za-z0-9_.-]+|[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError(f"'{value}' must be an email or 'team:<name>' (Dagster's owner format)")
        return value


class GovernanceSection(_Strict):
    approvers: list[str] = Field([], description="Who may sign off a challenger (names as set in the MLflow tag).")


class DemoSource(_Strict):
    rows_per_batch: int = Field(5000, gt=0)
    seed: int = 7
    data_drift_from_batch: int | None = Field(None, ge=1)
    concept_drift_from_batch: int | None = Field(None, ge=1)


class CsvFormat(_Strict):
    """How a CSV source file is written: a spreadsheet saved in Europe or on Windows differs from pandas' defaults.
    `ml-platform init` writes what it found in the team's file; every run reads the file the same way."""

    separator: str = Field(",", min_length=1, max_length=1, description="The field separator, e.g. ';'.")
    decimal: str = Field(".", min_length=1, max_length=1, description="The decimal mark, e.g. ',' in 3,5.")
    thousands: str | None = Field(None, min_length=1, max_length=1, description="A thousands separator in numbers.")
    encoding: str = Field("utf-8", description="The text encoding, e.g. cp1252 for Excel on Windows.")
    missing_values: list[str] = Field(
        [], description="Values that mean 'no value' (e.g. '?'), besides pandas' own: empty, NA, N/A, null, NaN.")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r} (e.g. utf-8, cp1252, latin-1)") from None
        return value

    @model_validator(mode="after")
    def _distinct_marks(self) -> CsvFormat:
        if self.decimal == self.separator:
            raise ValueError(f"decimal and separator are both {self.separator!r}")
        if self.thousands == self.decimal:  # the separator may be: "1,234.5" quoted in a comma-separated file
            raise ValueError(f"thousands and decimal are both {self.decimal!r}")
        return self

    def read_options(self) -> dict[str, Any]:
        """Keyword arguments for pandas.read_csv."""
        return {"sep": self.separator, "decimal": self.decimal, "thousands": self.thousands,
                "encoding": self.encoding, "na_values": list(self.missing_values)}


class SourceSection(_Strict):
    kind: Literal["demo", "file", "table"] = "demo"
    demo: DemoSource = DemoSource()
    path: str | None = Field(None, description="CSV or Parquet file (kind: file); relative to the config file.")
    csv: CsvFormat = CsvFormat()
    table: str | None = Field(None, description="Warehouse table (kind: table), e.g. landing.customers.")

    @model_validator(mode="after")
    def _location_given(self) -> SourceSection:
        if self.kind == "file" and not self.path:
            raise ValueError("kind 'file' needs a 'path'")
        if self.kind == "table" and not self.table:
            raise ValueError("kind 'table' needs a 'table'")
        if self.table and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*", self.table):
            raise ValueError(f"table {self.table!r} must be schema.name (letters, digits and _), e.g. landing.customers")
        return self


class ColumnContract(_Strict):
    type: ColumnType
    max_null_fraction: float = Field(0.0, ge=0, le=1)
    min: float | None = None
    max: float | None = None
    allowed: list[Any] | None = Field(None, description="Allowed values (category columns).")
    format: str | None = Field(None, description="How a CSV file writes this date or time, as a strptime format "
                               "(e.g. %d.%m.%Y for 31.12.2026); default: ISO (2026-12-31).")

    @model_validator(mode="after")
    def _range_ordered(self) -> ColumnContract:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.format is not None:
            if self.type not in {"date", "datetime"}:
                raise ValueError(f"format {self.format!r} is for a date or datetime column, not {self.type}")
            if "%" not in self.format:
                raise ValueError(f"format {self.format!r} is not a strptime format (e.g. %d.%m.%Y)")
        return self


class DataSection(_Strict):
    source: SourceSection = SourceSection()
    target: str
    labels: list[Any] | None = Field(
        None, description="The exact set of target labels expected (classification only; required there)."
    )
    positive_label: Any = Field(None, description="The label scores are the probability of (classification only).")
    id_column: str | None = None
    timestamp_column: str | None = None
    exclude_columns: list[str] = []
    sensitive_column: str | None = None
    min_rows: int = Field(1, ge=1)
    columns: dict[str, ColumnContract] = Field(min_length=1, description="The data contract, one entry per column.")

    @model_validator(mode="after")
    def _columns_known(self) -> DataSection:
        known = set(self.columns)
        named = {
            "target": [self.target],
            "id_column": [self.id_column],
            "timestamp_column": [self.timestamp_column],
            "sensitive_column": [self.sensitive_column],
            "exclude_columns": self.exclude_columns,
        }
        for field, cols in named.items():
            for col in cols:
                if col is not None and col not in known:
                    hint = difflib.get_close_matches(col, known, n=1)
                    raise ValueError(
                        f"{field}: column '{col}' is not in data.columns"
                        + (f" (did you mean '{hint[0]}'?)" if hint else "")
                    )
        if self.labels is not None and self.positive_label is not None and self.positive_label not in self.labels:
            raise ValueError(f"positive_label {self.positive_label!r} is not one of labels {self.labels}")
        return self

    @property
    def feature_columns_raw(self) -> list[str]:
        """Columns of the raw batch that are inputs (not target, id, timestamp or excluded)."""
        skip = {self.target, self.id_column, self.timestamp_column, *self.exclude_columns}
        return [c for c in self.columns if c not in skip]


class FeaturesSection(_Strict):
    dbt_model: str = Field(description="The dbt model that builds the feature table.")


class EstimatorSpec(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    class_: str | None = Field(None, alias="class", description="Import path of a scikit-learn estimator.")
    pipeline: str | None = Field(
        None, description="Import path 'module:function' of a function returning a scikit-learn Pipeline."
    )
    params: dict[str, Any] = {}

    @model_validator(mode="after")
    def _one_of(self) -> EstimatorSpec:
        if bool(self.class_) == bool(self.pipeline):
            raise ValueError("give exactly one of 'class' (an estimator) or 'pipeline' (a factory function)")
        return self


class TrainingSection(_Strict):
    seed: int = 42
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    window_days: int | None = Field(
        None, ge=1, description="Train on the feature rows of the last N days of event time (data.timestamp_column, "
        "counted back from the newest), not on all history. Default: all rows."
    )
    estimator: EstimatorSpec
    trusted_types: list[str] = Field(
        [], description="Extra types skops may load for this model (your own transformers)."
    )


def _floor_on_the_metric_scale(cls, value: float, info: ValidationInfo) -> float:
    """A floor must be on its metric's scale (the gate's and the slices' floors)."""
    problem = floor_problem(info.data.get("metric"), value)
    if problem:
        raise ValueError(f"got {value}: {problem}")
    return value


class GateSection(_Strict):
    metric: GateMetric = Field(
        "roc_auc", description="Higher is better for every one: lower-is-better metrics are negated (neg_*). "
        "Default: roc_auc for classification, r2 for regression."
    )
    min_improvement: float = Field(0.0, ge=0, description="Margin by which a challenger must beat the champion.")
    floor: float = Field(0.5, description="The first model's metric must reach this (on the metric's scale: "
                         "-60 with neg_rmse means RMSE at most 60). Default: 0.5, for r2 0.")
    baseline_margin: float = Field(0.01, ge=0, description="How much the first model must beat a trivial baseline.")
    max_latency_p99_ms: float = Field(200.0, gt=0)
    max_calibration_error: float = Field(0.1, gt=0, le=1, description="Classification only.")
    max_fairness_gap: float = Field(0.2, gt=0, le=1, description="Classification: max - min ROC AUC across the "
                                    "sensitive groups; regression: (max - min RMSE across them) / overall RMSE.")

    _floor_on_the_metric_scale = field_validator("floor")(_floor_on_the_metric_scale)


def floor_problem(metric: str | None, value: float) -> str | None:
    """Why `value` cannot be a floor of `metric` (None when it can): floors are on the metric's own scale."""
    if metric in (*CLASSIFICATION_GATE_METRICS, "accuracy") and not 0 <= value <= 1:
        return f"the floor of {metric} must be between 0 and 1"
    if metric == "r2" and value > 1:
        return "R² is at most 1"
    if metric in ("neg_rmse", "neg_mae") and value > 0:
        unit = metric[4:].upper()
        return (f"{metric} is the negated {unit} (higher is better), so its floor is at most 0 (did you mean "
                f"{-value:g}, i.e. {unit} at most {value:g}?)")
    return None


DriftMethod = Literal["auto", "wasserstein", "jensenshannon", "psi", "ks", "chisquare"]


class FeatureDriftRule(_Strict):
    """A per-feature override of the drift test or its threshold."""

    method: DriftMethod | None = Field(None, description="Default: drift.method.")
    threshold: float | None = Field(None, gt=0, description="Default: drift.threshold, else the method's own.")


class DriftSection(_Strict):
    drifted_share_threshold: float = Field(0.3, gt=0, le=1, description="Dataset drift when this share of columns drift.")
    method: DriftMethod = Field(
        "auto", description="auto: Evidently's choice per column type and size; or one test for every column."
    )
    threshold: float | None = Field(None, gt=0, description="Drift threshold for every column (default: the method's).")
    features: dict[str, FeatureDriftRule] = Field({}, description="Per-feature method/threshold overrides.")
    sample_rows: int = Field(20000, gt=100, description="Rows per side in the HTML report (decisions use every row).")
    prediction_psi_threshold: float = Field(
        0.2, gt=0, description="Prediction drift: PSI of the batch's scores against the champion's holdout scores."
    )


class PerformanceSection(_Strict):
    """Live performance from late labels, and the SLO whose sustained breach starts a retraining."""

    metric: LiveMetric = Field(
        "roc_auc", description="Classification: roc_auc, f1, accuracy; regression (default r2): neg_rmse, neg_mae, r2."
    )
    floor: float = Field(0.7, description="The SLO: the rolling live metric must stay at or above this, on the "
                         "metric's scale (-60 with neg_rmse means RMSE at most 60). Default: 0.7, for r2 0.")
    window_days: int = Field(3, ge=1, description="The live metric pools the labelled predictions of this many days.")
    consecutive_days: int = Field(2, ge=1, description="A breach is sustained after this many days below the floor.")
    min_labels: int = Field(50, ge=1, description="A window with fewer labelled predictions is not judged.")
    labels_path: str | None = Field(
        None, description="Folder where late label files land (default: <ML_PLATFORM_HOME>/landing/labels)."
    )

    _floor_on_the_metric_scale = field_validator("floor")(_floor_on_the_metric_scale)


class FreshnessSection(_Strict):
    """Freshness SLOs: the maximum age of each kind of data before it is stale."""

    raw_batch_max_age_hours: float = Field(26, gt=0)
    features_max_age_hours: float = Field(26, gt=0)
    predictions_max_age_hours: float = Field(26, gt=0)


class AutomationSection(_Strict):
    daily_schedule: str = Field(
        "0 6 * * *", description="Cron for ingestion -> validation -> features -> scoring -> monitoring."
    )
    timezone: str = "UTC"
    max_retrainings_per_day: int = Field(
        3, ge=0, description="Cap on automatic (drift and SLO) retrainings in any 24 h; 0 turns them off."
    )

    @field_validator("daily_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"'{value}' is not a 5-field cron expression like '0 6 * * *'")
        return value


class AlertsSection(_Strict):
    group_minutes: float = Field(
        60, ge=0, description="Repeats of the same alert within this window are grouped, not sent again."
    )
    attempts: int = Field(3, ge=1, description="Webhook delivery attempts (with backoff) before giving up.")
    backoff_seconds: float = Field(0.5, ge=0, description="First retry delay; doubles each attempt.")
    runbook_base_url: str | None = Field(
        None, description="Where runbooks are linked from (default: the docs/operations folder of this project)."
    )


class CanaryGuardrails(_Strict):
    """Challenger vs champion on the same traffic, over the current step. Fixed when the canary starts."""

    max_error_rate_increase: float = Field(0.02, ge=0, le=1, description="Challenger error rate minus champion's.")
    max_latency_p99_ratio: float = Field(2.0, gt=0, description="Challenger p99 over champion p99 (model time).")
    latency_slack_ms: float = Field(5.0, ge=0, description="p99 differences below this are noise, never a breach.")
    max_score_psi: float = Field(0.25, gt=0, description="PSI of challenger scores against champion scores.")
    max_metric_drop: float = Field(0.05, ge=0, description="Classification: live AUC drop allowed once labels arrive.")
    max_rmse_increase: float = Field(0.1, ge=0, description="Regression: how much higher than the champion's the "
                                     "challenger's live RMSE may be once labels arrive, as a fraction (0.1 = 10 %).")
    min_requests: int = Field(50, ge=1, description="Rows each variant needs in a step before it is judged.")


class CanarySection(_Strict):
    mode: Literal["off", "canary", "shadow"] = Field(
        "off", description="canary: a share of traffic goes to the challenger; shadow: it scores every "
        "request but its answers are only logged.",
    )
    steps: list[float] = Field([5, 25, 50, 100], min_length=1, description="Traffic percentages, in order.")
    step_seconds: float = Field(300, gt=0, description="Minimum time at each step before it ramps up.")
    guardrails: CanaryGuardrails = CanaryGuardrails()

    @field_validator("steps")
    @classmethod
    def _increasing_percentages(cls, value: list[float]) -> list[float]:
        if any(not 0 < s <= 100 for s in value) or value != sorted(set(value)):
            raise ValueError(f"{value} must be increasing percentages in (0, 100]")
        return value


class ServingSection(_Strict):
    max_body_bytes: int = Field(1_048_576, gt=0, description="Larger request bodies get 413.")
    batch_window_ms: float = Field(2.0, ge=0, description="How long a request waits for others to share a model call.")
    max_batch_rows: int = Field(512, ge=1, description="Most rows in one model call.")
    alias_poll_seconds: float = Field(0.25, gt=0, description="How often the service checks the registry aliases.")
    log_flush_seconds: float = Field(
        5.0, gt=0, description="Prediction-log flush interval (each flush opens the warehouse: ~30 ms of CPU)."
    )
    canary: CanarySection = CanarySection()


class SliceChecks(_Strict):
    """The model's metric on each slice of the holdout (each value of one column), each with a floor."""

    column: str = Field(description="A column of the feature table; each of its values is a slice.")
    metric: Literal["roc_auc", "f1", "accuracy", "neg_rmse", "neg_mae", "r2"] = Field(
        "roc_auc", description="Classification: roc_auc, f1, accuracy; regression (default r2): neg_rmse, neg_mae, r2."
    )
    floor: float = Field(0.5, description="Every slice's metric must reach this (on the metric's scale) ...")
    floors: dict[str, float] = Field({}, description="... unless the slice has its own floor here (by value).")
    min_rows: int = Field(30, ge=1, description="A smaller slice (or one with a single class) is listed, not judged.")

    _floor_on_the_metric_scale = field_validator("floor")(_floor_on_the_metric_scale)

    @field_validator("floors")
    @classmethod
    def _floors_are_metrics(cls, value: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        metric = info.data.get("metric")
        for name, floor in value.items():
            if metric in ("roc_auc", "f1", "accuracy") and not 0 <= floor <= 1:
                raise ValueError(f"slice '{name}': floor {floor} is not between 0 and 1")
            problem = floor_problem(metric, floor)
            if problem:
                raise ValueError(f"slice '{name}': floor {floor}: {problem}")
        return value


class PerturbationChecks(_Strict):
    """Robustness: scores on holdout rows with small noise added to the numeric inputs."""

    noise: float = Field(0.01, gt=0, le=1, description="Noise standard deviation, as a share of each column's "
                         "standard deviation on the holdout.")
    tolerance: float = Field(0.25, gt=0, le=1, description="A score may move by at most this much ...")
    max_share: float = Field(0.01, ge=0, lt=1, description="... on all but this share of the rows.")
    rows: int = Field(2000, ge=10, description="Holdout rows perturbed (the first ones, in id order).")
    columns: list[str] | None = Field(None, description="Inputs to perturb (default: every float input with more "
                                      "than two distinct values; integer inputs change by whole units, which "
                                      "the known-hard cases test).")


class RegressionChecks(_Strict):
    """The regression set replayed against a running endpoint."""

    rows: int = Field(50, ge=1, le=10_000, description="Holdout rows recorded with their scores at evaluation.")
    tolerance: float = Field(1e-6, ge=0, description="Largest difference allowed between a recorded and a served score.")
    path: str | None = Field(None, description="A regression set file to replay instead of the one recorded with "
                             "the version under check; relative to the config file.")


class ChecksSection(_Strict):
    """`ml-platform check`: the model and infrastructure tests a change must pass (docs/checks.md)."""

    slices: SliceChecks | None = Field(None, description="Metric per slice with floors; none: no slice test.")
    perturbation: PerturbationChecks = PerturbationChecks()
    known_hard_cases: str | None = Field(None, description="YAML file of known-hard cases with expected outcomes "
                                         "and behavioural expectations; relative to the config file.")
    regression: RegressionChecks = RegressionChecks()
    reproduce: bool = Field(True, description="Retrain the version from its lineage and compare (the slowest test).")
    serve_timeout_seconds: float = Field(120, gt=0, description="How long the check waits for the serving process.")


class ProjectConfig(_Strict):
    model: ModelSection
    data: DataSection
    features: FeaturesSection
    training: TrainingSection
    gate: GateSection = GateSection()
    drift: DriftSection = DriftSection()
    performance: PerformanceSection = PerformanceSection()
    freshness: FreshnessSection = FreshnessSection()
    automation: AutomationSection = AutomationSection()
    alerts: AlertsSection = AlertsSection()
    governance: GovernanceSection = GovernanceSection()
    serving: ServingSection = ServingSection()
    checks: ChecksSection = ChecksSection()
    # Where the config was read from; relative paths in it resolve against this folder.
    source_file: Path = Field(Path("ml_platform.yaml"), exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, raw: Any) -> Any:
        """A regression model's gate, slice and live metrics default to r2 with floor 0 (_regression_floor)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
            return raw
        if raw["model"].get("task") != "regression":
            return raw
        gate = raw.get("gate")
        if gate is not None and not isinstance(gate, dict):
            return raw  # not a mapping: the field's own validation says so
        raw = {**raw, "gate": _regression_floor("gate", gate or {})}
        checks = raw.get("checks")
        if isinstance(checks, dict) and isinstance(checks.get("slices"), dict):
            raw["checks"] = {**checks, "slices": _regression_floor("checks.slices", checks["slices"])}
        performance = raw.get("performance")
        if performance is None or isinstance(performance, dict):
            raw["performance"] = _regression_floor("performance", performance or {})
        return raw

    @model_validator(mode="after")
    def _task_fits(self) -> ProjectConfig:
        data, task = self.data, self.model.task
        if task == "classification":
            if data.labels is None:
                raise ValueError("data.labels: required for a classification model (the exact set of target labels); "
                                 "for a numeric target set model.task: regression")
            if len(data.labels) < 2:
                raise ValueError(f"data.labels: a classification needs at least 2 labels, got {data.labels}")
            if data.positive_label is None:
                raise ValueError("data.positive_label: required for a classification model (the label scores are "
                                 "the probability of)")
            if self.gate.metric not in CLASSIFICATION_GATE_METRICS:
                raise ValueError(f"gate.metric: '{self.gate.metric}' is a regression metric; a classification is "
                                 f"gated on one of {', '.join(CLASSIFICATION_GATE_METRICS)}")
            if self.checks.slices is not None and self.checks.slices.metric in REGRESSION_GATE_METRICS:
                raise ValueError(f"checks.slices.metric: '{self.checks.slices.metric}' is a regression metric; a "
                                 "classification's slices are judged on roc_auc, f1 or accuracy")
            if self.performance.metric not in CLASSIFICATION_LIVE_METRICS:
                raise ValueError(f"performance.metric: '{self.performance.metric}' is a regression metric; a "
                                 f"classification's live performance is judged on one of "
                                 f"{', '.join(CLASSIFICATION_LIVE_METRICS)}")
            return self
        for field in ("labels", "positive_label"):
            if getattr(data, field) is not None:
                raise ValueError(f"data.{field}: a regression model (model.task: regression) has no labels; remove it")
        kind = data.columns[data.target].type
        if kind not in ("number", "integer"):
            raise ValueError(f"data.columns.{data.target}: the target of a regression must be 'number' or 'integer', "
                             f"not '{kind}'")
        if self.gate.metric not in REGRESSION_GATE_METRICS:
            raise ValueError(f"gate.metric: '{self.gate.metric}' is a classification metric; a regression is gated "
                             f"on one of {', '.join(REGRESSION_GATE_METRICS)}")
        if self.checks.slices is not None and self.checks.slices.metric not in REGRESSION_GATE_METRICS:
            raise ValueError(f"checks.slices.metric: '{self.checks.slices.metric}' is a classification metric; a "
                             f"regression's slices are judged on one of {', '.join(REGRESSION_GATE_METRICS)}")
        if self.performance.metric not in REGRESSION_GATE_METRICS:
            raise ValueError(f"performance.metric: '{self.performance.metric}' is a classification metric; a "
                             f"regression's live performance is judged on one of {', '.join(REGRESSION_GATE_METRICS)}")
        return self

    @model_validator(mode="after")
    def _window_has_a_clock(self) -> ProjectConfig:
        if self.training.window_days is not None and not self.data.timestamp_column:
            raise ValueError("training.window_days: needs data.timestamp_column (the window counts days of event "
                             "time); set it, or remove window_days to train on all rows")
        return self

    @model_validator(mode="after")
    def _approvers_for_risky_models(self) -> ProjectConfig:
        if self.model.risk_tier != "low" and not self.governance.approvers:
            raise ValueError(
                f"governance.approvers: risk tier '{self.model.risk_tier}' needs at least one approver"
            )
        return self

    @model_validator(mode="after")
    def _drift_features_known(self) -> ProjectConfig:
        for name in self.drift.features:
            if name not in self.data.columns:
                hint = difflib.get_close_matches(name, self.data.columns, n=1)
                raise ValueError(f"drift.features: column '{name}' is not in data.columns"
                                 + (f" (did you mean '{hint[0]}'?)" if hint else ""))
        return self

    @model_validator(mode="after")
    def _slice_column_is_a_slice(self) -> ProjectConfig:
        slices = self.checks.slices
        if slices is not None:
            data = self.data
            if slices.column in (data.id_column, data.target, data.timestamp_column):
                role = {data.id_column: "the id column", data.target: "the target",
                        data.timestamp_column: "the timestamp column"}[slices.column]
                raise ValueError(f"checks.slices.column: '{slices.column}' is {role}, not a way to slice the "
                                 "holdout (use a category column such as one of data.columns)")
        return self

    @property
    def needs_approval(self) -> bool:
        return self.model.risk_tier != "low"

    @property
    def raw_table(self) -> str:
        """Warehouse table of validated raw batches (the dbt source)."""
        return f"raw.{self.model.name}_batches"

    def source_path(self) -> Path:
        assert self.data.source.path is not None
        return self.resolve_path(self.data.source.path)

    def resolve_path(self, value: str) -> Path:
        """A path from the config: relative paths resolve against the config file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.source_file.parent / path).resolve()

    def fingerprint(self) -> str:
        """SHA-256 of the config content (recorded with each model version)."""
        blob = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


def load_config(path: str | Path, *, check_imports: bool = True) -> ProjectConfig:
    """Read and validate a config file. `check_imports` also checks the estimator import path."""
    path = Path(path)
    name = str(path)
    try:
        raw = load_yaml(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{name}: config file not found (set --config or ML_PLATFORM_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read config file: {exc.strerror}") from None
    except DuplicateKeyError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        config = ProjectConfig.model_validate({**raw, "source_file": path.resolve()})
    except ValidationError as exc:
        raise ConfigError(_format_errors(name, exc)) from None
    if check_imports:
        resolve_estimator(config)
    return config


def resolve_estimator(config: ProjectConfig) -> Any:
    """Import the configured estimator class or pipeline factory; a clear ConfigError if it is not importable."""
    spec = config.training.estimator
    field = "training.estimator.class" if spec.class_ else "training.estimator.pipeline"
    target = spec.class_ or spec.pipeline or ""
    module_name, sep, attr = target.partition(":") if ":" in target else target.rpartition(".")
    where = f"{config.source_file.name}: {field}: '{target}'"
    if not module_name or not attr:
        raise ConfigError(f"{where} is not an import path like 'package.module.Name' or 'package.module:function'")
    try:
        module = _import_module(module_name, config.source_file.parent)
    except ImportError as exc:
        raise ConfigError(f"{where} is not importable: module '{module_name}' not found ({exc})") from None
    obj = getattr(module, attr, None)
    if obj is None:
        public = [n for n in dir(module) if not n.startswith("_")]
        hint = sorted(n for n in public if n.startswith(attr))[:2] or difflib.get_close_matches(attr, public, n=2)
        raise ConfigError(
            f"{where} is not importable"
            + (f" (did you mean {' or '.join(hint)}?)" if hint else f": no '{attr}' in {module_name}")
        )
    if not callable(obj):
        raise ConfigError(f"{where} is not callable")
    return obj


def _regression_floor(field: str, section: dict) -> dict:
    """A regression's metric defaults to r2 with floor 0 (the classification defaults mean nothing there); a
    neg_rmse/neg_mae floor is in the target's units, so it has no default and must be given."""
    section = {**section}
    section.setdefault("metric", "r2")
    if "floor" not in section:
        if section["metric"] in ("neg_rmse", "neg_mae"):
            unit = str(section["metric"])[4:].upper()
            raise ValueError(f"{field}.floor: required with metric {section['metric']} (the target's units, negated: "
                             f"-60 means {unit} at most 60)")
        section["floor"] = 0.0
    return section


def _import_module(module_name: str, config_dir: Path) -> Any:
    """Import a module; one that is not installed may also sit beside the config file (a team keeps its model
    code next to its config, e.g. docs/examples/diabetes/diabetes_model.py)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.split(".")[0]
        beside = config_dir / top
        if exc.name != top or not (beside.with_suffix(".py").is_file() or (beside / "__init__.py").is_file()):
            raise
    if str(config_dir) not in sys.path:
        sys.path.append(str(config_dir))  # appended: an installed module of the same name still wins
    return importlib.import_module(module_name)


def _format_errors(name: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p != "__root__")
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        detail = f" (got {got!r})" if err["type"] not in {"missing", "value_error"} and not isinstance(got, dict) else ""
        lines.append(f"{name}: {loc or '(top level)'}: {msg}{detail}")
    return "\n".join(lines)
