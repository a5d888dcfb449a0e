"""Seeded synthetic churn batches: the demo source of the platform, its tests and its benchmarks.

One call makes one daily batch (`batch` is the 1-based day index) with exactly the columns, dtypes
and ranges of the demo data contract in ml_platform.yaml. The same arguments always give the same
frame: every column draws from its own random stream, spawned from (seed, batch), so switching
drift on changes the columns it targets and nothing else.

Two switches make the failure modes the platform has to catch:
- data drift (covariate shift): from `data_drift_from_batch` on, customers are newer, pay more,
  call support twice as often and are mostly on fiber. The feature -> label rule is unchanged.
- concept drift: from `concept_drift_from_batch` on, feature distributions are unchanged but the
  rule is not: the contract effect flips and support calls matter far more, so a model trained
  before loses accuracy.

`late_labels(k)` gives batch k's true labels as a label feed delivers them, later and keyed by customer:
scored without labels, a concept-drifted batch shows its decay only once they arrive (live performance).

Pure numpy/pandas, vectorized: a million rows take about a second.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENT_METHODS = ("card", "bank-transfer", "electronic-check", "mailed-check")
INTERNET_SERVICES = ("dsl", "fiber", "none")
REGIONS = ("north", "south", "east", "west")

COLUMNS = (
    "customer_id",
    "event_date",
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "contract",
    "payment_method",
    "internet_service",
    "support_calls",
    "num_products",
    "senior_citizen",
    "region",
    "churned",
)

# Share of total_charges left empty, as a billing system that has not caught up would (contract: < 5%).
TOTAL_CHARGES_NULL_FRACTION = 0.02

# One independent random stream per column, in this order (appending is safe, reordering is not).
_STREAMS = (
    "tenure",
    "contract",
    "payment",
    "internet",
    "products",
    "charges",
    "total",
    "total_null",
    "support",
    "senior",
    "region",
    "label",
)


def generate_batch(
    batch: int,
    *,
    rows: int = 5000,
    seed: int = 7,
    data_drift_from_batch: int | None = None,
    concept_drift_from_batch: int | None = None,
    start_date: datetime.date = datetime.date(2026, 1, 1),
) -> pd.DataFrame:
    """One day of customers with their churn label, as the demo source delivers it.

    Columns and dtypes follow ml_platform.yaml's `data.columns`. `event_date` is
    `start_date + (batch - 1)` days for every row; `customer_id` is unique across batches.
    """
    if batch < 1:
        raise ValueError(f"batch must be 1 or more (it is the 1-based day index), got {batch}")
    if rows < 1:
        raise ValueError(f"rows must be 1 or more, got {rows}")
    if seed < 0:
        raise ValueError(f"seed must be 0 or more, got {seed}")
    data_drift = data_drift_from_batch is not None and batch >= data_drift_from_batch
    concept_drift = concept_drift_from_batch is not None and batch >= concept_drift_from_batch
    streams = np.random.SeedSequence([seed, batch]).spawn(len(_STREAMS))
    rng = {name: np.random.default_rng(stream) for name, stream in zip(_STREAMS, streams, strict=True)}

    # Tenure: a wave of recent sign-ups on top of a long-standing base.
    r = rng["tenure"]
    recent = r.random(rows) < 0.55
    tenure = np.where(recent, r.exponential(10.0, rows), r.uniform(0, 73, rows))
    if data_drift:
        tenure = tenure * 0.6
    tenure_months = np.clip(np.floor(tenure), 0, 72).astype(np.int64)

    # Long-standing customers are more often on long contracts.
    p_monthly = 0.72 - 0.45 * tenure_months / 72
    p_one_year = 0.22 + 0.08 * tenure_months / 72
    contract_code = _pick(rng["contract"].random(rows), p_monthly, p_monthly + p_one_year)

    payment_code = _pick_fixed(rng["payment"].random(rows), (0.24, 0.22, 0.36, 0.18))
    internet_shares = (0.15, 0.75, 0.10) if data_drift else (0.36, 0.44, 0.20)
    internet_code = _pick_fixed(rng["internet"].random(rows), internet_shares)
    fiber = internet_code == 1
    no_internet = internet_code == 2

    num_products = (1 + rng["products"].binomial(5, 0.28, rows)).astype(np.int64)

    base_charge = np.choose(internet_code, (52.0, 82.0, 24.0))
    monthly = base_charge + 9.0 * (num_products - 1) + rng["charges"].normal(0, 11.0, rows)
    if data_drift:
        monthly = monthly + 25.0
    monthly_charges = np.round(np.clip(monthly, 15, 200), 2)

    total = monthly_charges * tenure_months * rng["total"].normal(1.0, 0.04, rows)
    total_charges = np.round(np.clip(total, 0, 15000), 2)
    total_charges[rng["total_null"].random(rows) < TOTAL_CHARGES_NULL_FRACTION] = np.nan

    calls_rate = 1.0 + 0.9 * fiber - 0.5 * no_internet + 0.015 * np.maximum(monthly_charges - 70, 0)
    if data_drift:
        calls_rate = calls_rate * 2.0
    support_calls = np.clip(rng["support"].poisson(calls_rate), 0, 30).astype(np.int64)

    senior_citizen = rng["senior"].random(rows) < 0.16
    region_code = rng["region"].integers(0, len(REGIONS), rows)

    monthly_contract = contract_code == 0
    two_year = contract_code == 2
    electronic_check = payment_code == 2
    if concept_drift:
        # Long contracts now lock in unhappy customers, and support experience dominates.
        intercept = -0.5
        contract_effect = -1.3 * monthly_contract + 1.4 * two_year
        calls_effect = 0.75 * (support_calls - 1.5)
    else:
        intercept = -1.7
        contract_effect = 1.3 * monthly_contract - 1.4 * two_year
        calls_effect = 0.3 * support_calls
    logit = (
        intercept
        - 0.055 * tenure_months
        + contract_effect
        + 0.65 * fiber
        + 0.5 * electronic_check
        + calls_effect
        + 0.012 * (monthly_charges - 70)
        - 0.35 * (num_products - 1)
        + 0.25 * senior_citizen
    )
    r = rng["label"]
    # Unobserved causes (a competitor's offer, a move): keeps the problem learnable but not trivial.
    logit = logit + r.normal(0, 0.5, rows)
    churned = (r.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)

    event_date = pd.Timestamp(start_date) + pd.Timedelta(days=batch - 1)
    return pd.DataFrame(
        {
            "customer_id": _customer_ids(batch, rows),
            "event_date": np.full(rows, event_date.to_datetime64(), dtype="datetime64[ns]"),
            "tenure_months": tenure_months,
            "monthly_charges": monthly_charges,
            "total_charges": total_charges,
            "contract": _labels(CONTRACTS, contract_code),
            "payment_method": _labels(PAYMENT_METHODS, payment_code),
            "internet_service": _labels(INTERNET_SERVICES, internet_code),
            "support_calls": support_calls,
            "num_products": num_products,
            "senior_citizen": senior_citizen,
            "region": _labels(REGIONS, region_code),
            "churned": churned,
        },
        columns=list(COLUMNS),
    )


def write_batches(
    directory: str | Path,
    batches: Iterable[int],
    fmt: Literal["parquet", "csv"] = "parquet",
    **kwargs,
) -> list[Path]:
    """Write `batch-0001.parquet` (or .csv), ... into `directory`; kwargs go to `generate_batch`."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for batch in batches:
        frame = generate_batch(batch, **kwargs)
        path = directory / f"batch-{batch:04d}.{fmt}"
        if fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        paths.append(path)
    return paths


def late_labels(batch: int, *, delay_days: int = 30, **kwargs) -> pd.DataFrame:
    """The late labels of demo batch `batch`, as a label feed delivers them once the outcome is known: each
    customer's true `churned` value keyed by `customer_id`, with `labeled_at` `delay_days` after the event.
    kwargs go to `generate_batch` and must be the ones the batch was generated with (drift changes labels)."""
    frame = generate_batch(batch, **kwargs)
    return pd.DataFrame({"customer_id": frame["customer_id"], "churned": frame["churned"],
                         "labeled_at": frame["event_date"] + pd.Timedelta(days=delay_days)})


def write_late_labels(directory: str | Path, batch: int, fmt: Literal["parquet", "csv"] = "csv",
                      **kwargs) -> Path:
    """Write `labels-0001.csv` (or .parquet) with the late labels of demo batch `batch` into `directory`
    (e.g. the label landing folder); kwargs go to `late_labels`. Written beside and renamed into place, so
    that a reader of the folder never sees half a file."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"labels-{batch:04d}.{fmt}"
    partial = directory / f".{path.name}.partial"
    frame = late_labels(batch, **kwargs)
    if fmt == "parquet":
        frame.to_parquet(partial, index=False)
    else:
        frame.to_csv(partial, index=False)
    partial.replace(path)
    return path


def _pick(u: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Code 0 below `first`, 1 below `second`, else 2 (per-row cumulative thresholds)."""
    return (u >= first).astype(np.int64) + (u >= second)


def _pick_fixed(u: np.ndarray, shares: tuple[float, ...]) -> np.ndarray:
    return np.searchsorted(np.cumsum(shares[:-1]), u, side="right").astype(np.int64)


def _labels(levels: tuple[str, ...], codes: np.ndarray) -> np.ndarray:
    return np.array(levels, dtype=object)[codes]


def _customer_ids(batch: int, rows: int) -> np.ndarray:
    # numpy's vectorized string functions: formatting per row in Python is slow at a million rows.
    numbers = np.strings.zfill(np.arange(1, rows + 1).astype(str), 7)
    return np.strings.add(f"C{batch:04d}-", numbers).astype(object)
