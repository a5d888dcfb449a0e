"""Batch validation on the real Great Expectations: a good batch passes every check; each kind of bad
batch fails the check that guards against it, with a line that names the column and the numbers."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ml_platform.config import DataSection, ProjectConfig, load_config
from ml_platform.lib.validation import CHECK_NAMES, ValidationReport, build_expectations, validate_batch
from ml_platform_tests.conftest import DEMO_CONFIG

ROWS = 500  # so that 1 row is 0.2%


@pytest.fixture(scope="module")
def data() -> DataSection:
    return load_config(DEMO_CONFIG, check_imports=False).data


def contract_with(**data_overrides) -> DataSection:
    """The demo contract with some `data` fields replaced (columns are merged per column)."""
    raw = load_config(DEMO_CONFIG, check_imports=False).model_dump(mode="json", by_alias=True)
    columns = data_overrides.pop("columns", {})
    for name, spec in columns.items():
        raw["data"]["columns"][name] = {**raw["data"]["columns"][name], **spec}
    raw["data"].update(data_overrides)
    return ProjectConfig.model_validate(raw).data


def good_batch(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """A batch that meets every clause of the demo contract (ml_platform.yaml)."""
    rng = np.random.default_rng(seed)

    def choice(values: list[str]) -> np.ndarray:
        return rng.choice(np.array(values, dtype=object), rows)

    return pd.DataFrame(
        {
            "customer_id": [f"c{i:08d}" for i in range(rows)],
            "event_date": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, rows), unit="D"),
            "tenure_months": rng.integers(0, 73, rows),
            "monthly_charges": rng.uniform(15, 200, rows),
            "total_charges": np.where(np.arange(rows) % 50 == 0, np.nan, rng.uniform(0, 15000, rows)),
            "contract": choice(["month-to-month", "one-year", "two-year"]),
            "payment_method": choice(["card", "bank-transfer", "electronic-check", "mailed-check"]),
            "internet_service": choice(["dsl", "fiber", "none"]),
            "support_calls": rng.integers(0, 31, rows),
            "num_products": rng.integers(1, 7, rows),
            "senior_citizen": rng.random(rows) < 0.2,
            "region": choice(["north", "south", "east", "west"]),
            "churned": np.arange(rows) % 2,
        }
    )


def failed(report: ValidationReport) -> dict[str, list[str]]:
    return {check.name: check.failures for check in report.checks if not check.passed}


def test_good_batch_passes_every_check(data):
    report = validate_batch(good_batch(), data)

    assert report.passed, report.failures()
    assert [check.name for check in report.checks] == list(CHECK_NAMES)
    assert all(check.passed and check.failures == [] for check in report.checks)
    assert report.failures() == []
    assert report.rows == ROWS
    counts = {check.name: check.expectations for check in report.checks}
    # 13 columns: exists + type each; one null rule each; 5 ranges; 4 category sets.
    assert counts == {
        "schema": 26, "row_count": 1, "nulls": 13, "ranges": 5,
        "categories": 4, "target_labels": 4, "unique_ids": 1,
    }  # fmt: skip
    assert report.gx_result["success"] is True
    assert len(report.gx_result["results"]) == sum(counts.values())
    assert json.loads(json.dumps(report.to_json()))["passed"] is True


def test_build_expectations_covers_every_check(data):
    expectations = build_expectations(data)
    assert list(expectations) == list(CHECK_NAMES)
    ranges = expectations["ranges"]
    assert [(e.column, e.min_value, e.max_value) for e in ranges][0] == ("tenure_months", 0, 72)
    assert expectations["unique_ids"][0].column == "customer_id"


def test_missing_target_column(data):
    report = validate_batch(good_batch().drop(columns=["churned"]), data)

    assert failed(report) == {
        "schema": ["churned: column is missing (the contract declares it as integer)"],
        "target_labels": ["churned: target column is missing"],
    }
    # The other target expectations are skipped, not crashed.
    assert report.check("target_labels").expectations == 1


def test_target_with_an_unexpected_label(data):
    batch = good_batch()
    batch.loc[[3, 7, 11], "churned"] = 2

    report = validate_batch(batch, data)

    assert failed(report) == {
        "target_labels": ["churned: 3 values (0.6%) not among the labels [0, 1], e.g. [2]"]
    }


def test_target_missing_a_label(data):
    report = validate_batch(good_batch().assign(churned=0), data)

    assert failed(report) == {"target_labels": ["churned: label(s) [1] never occur (expected labels [0, 1])"]}


def test_numbers_stored_as_strings(data):
    batch = good_batch()
    batch["monthly_charges"] = batch["monthly_charges"].round(2).astype(str)

    report = validate_batch(batch, data)

    problems = failed(report)
    assert set(problems) == {"schema", "ranges"}
    [schema_line] = problems["schema"]
    assert schema_line.startswith(
        "monthly_charges: expected number, got object (500 values (100%) of type str"
    )
    assert problems["ranges"] == [
        "monthly_charges: range [15, 200] not checked, the column holds object, not numbers"
    ]


def test_integer_column_with_nulls_hints_at_the_nullable_dtype(data):
    batch = good_batch()
    batch["tenure_months"] = batch["tenure_months"].where(batch.index != 0)

    problems = failed(validate_batch(batch, data))

    assert problems["schema"] == [
        "tenure_months: expected integer, got float64 (whole numbers with nulls need the nullable Int64 dtype)"
    ]
    assert problems["nulls"] == ["tenure_months: 1 null (0.2%), more than the allowed 0% (max_null_fraction)"]


def test_all_null_column_fails_although_some_nulls_are_allowed(data):
    assert data.columns["total_charges"].max_null_fraction == 0.05
    report = validate_batch(good_batch().assign(total_charges=np.nan), data)

    assert failed(report) == {"nulls": ["column total_charges is entirely null"]}


def test_all_null_column_fails_even_when_every_value_may_be_null():
    contract = contract_with(columns={"total_charges": {"max_null_fraction": 1}})

    assert validate_batch(good_batch().assign(total_charges=np.nan), contract).check("nulls").failures == [
        "column total_charges is entirely null"
    ]
    some_nulls = good_batch().assign(total_charges=lambda b: b["total_charges"].where(b.index > 400))
    assert validate_batch(some_nulls, contract).passed


def test_too_many_nulls(data):
    batch = good_batch()
    batch.loc[:49, "total_charges"] = np.nan  # rows 0..49 plus the good batch's every-50th row

    report = validate_batch(batch, data)

    assert failed(report) == {
        "nulls": ["total_charges: 59 nulls (11.8%), more than the allowed 5% (max_null_fraction)"]
    }


def test_duplicate_ids(data):
    batch = good_batch()
    batch.loc[1, "customer_id"] = batch.loc[0, "customer_id"]

    report = validate_batch(batch, data)

    assert failed(report) == {
        "unique_ids": ["customer_id: 2 rows (0.4%) share their id with another row, e.g. ['c00000000']"]
    }


def test_value_out_of_range(data):
    batch = good_batch()
    batch.loc[[5, 6, 9], "tenure_months"] = [-3, 99, -3]

    report = validate_batch(batch, data)

    assert failed(report) == {"ranges": ["tenure_months: 3 values (0.6%) outside [0, 72], e.g. [-3, 99]"]}


def test_unknown_category(data):
    batch = good_batch()
    batch.loc[4, "contract"] = "monthly"

    report = validate_batch(batch, data)

    assert failed(report) == {
        "categories": [
            "contract: 1 value (0.2%) not in the allowed set ['month-to-month', 'one-year', 'two-year'], e.g. ['monthly']"
        ]
    }


def test_too_few_rows(data):
    report = validate_batch(good_batch(rows=50), data)

    assert failed(report) == {"row_count": ["table has 50 rows, fewer than the 100 required (data.min_rows)"]}


def test_missing_contract_column_fails_schema_and_is_skipped_elsewhere(data):
    report = validate_batch(good_batch().drop(columns=["region"]), data)

    assert failed(report) == {"schema": ["region: column is missing (the contract declares it as category)"]}
    assert report.check("schema").expectations == 25  # region's type is not checked
    assert report.check("categories").expectations == 3
    assert report.check("nulls").expectations == 12


def test_extra_columns_are_allowed_and_named(data):
    report = validate_batch(good_batch().assign(notes="n/a"), data)

    assert report.passed
    assert report.check("schema").description.endswith("extra columns not in the contract (allowed): notes")


def test_no_id_column_skips_unique_ids():
    batch = good_batch()
    batch.loc[1, "customer_id"] = batch.loc[0, "customer_id"]

    report = validate_batch(batch, contract_with(id_column=None))

    assert report.passed
    assert report.check("unique_ids").expectations == 0


def test_nullable_categorical_text_and_timezone_dtypes_pass(data):
    batch = good_batch().assign(
        tenure_months=lambda b: b["tenure_months"].astype("Int64"),
        contract=lambda b: b["contract"].astype("category"),
        region=lambda b: b["region"].astype("string"),
        senior_citizen=lambda b: b["senior_citizen"].astype("boolean"),
        event_date=lambda b: b["event_date"].dt.tz_localize("UTC"),
    )

    report = validate_batch(batch, data)

    assert report.passed, report.failures()


def test_writes_no_files_and_prints_nothing(data, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)

    validate_batch(good_batch(), data)

    assert list(tmp_path.iterdir()) == []
    assert capfd.readouterr() == ("", "")


def test_importing_the_module_does_not_import_great_expectations():
    code = "import sys, ml_platform.lib.validation; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def type_check_rows(report: ValidationReport, column: str) -> int:
    """How many rows GX type-checked in `column` (one when pandas found only text)."""
    [result] = [
        r
        for r in report.gx_result["results"]
        if r["expectation_config"]["type"] == "expect_column_values_to_be_in_type_list"
        and r["expectation_config"]["kwargs"]["column"] == column
    ]
    return result["result"]["element_count"]


def objects(values: list, rows: int = ROWS) -> pd.Series:
    return pd.Series((values * rows)[:rows], dtype=object)


def test_numbers_among_text_fail_the_schema_check(data):
    report = validate_batch(good_batch().assign(region=objects(["north", 1, "south", 2.5])), data)

    assert failed(report)["schema"] == [
        "region: expected category, got object (250 values (50%) of type float, int, e.g. [1, 2.5])"
    ]
    assert type_check_rows(report, "region") == ROWS


def test_object_column_of_python_floats_is_a_number_but_not_an_integer(data):
    batch = good_batch().assign(monthly_charges=objects([20.5, 30.0]), tenure_months=objects([1.0, 2.0]))

    problems = failed(validate_batch(batch, data))

    assert problems["schema"] == [
        "tenure_months: expected integer, got object (500 values (100%) of type float, e.g. [1, 2])"
    ]


def test_text_columns_are_type_checked_on_one_row_when_pandas_finds_only_text(data):
    batch = good_batch().assign(region=objects([None, np.nan, pd.NA, "north"]))
    batch.index = [f"row-{i}" for i in range(ROWS)]  # the check names its row by position

    report = validate_batch(batch, data)

    assert report.check("schema").passed, report.failures()
    assert type_check_rows(report, "region") == 1
    assert type_check_rows(report, "customer_id") == 1
    assert batch.index[0] == "row-0"  # the caller's frame keeps its index


def test_text_with_a_value_pandas_does_not_skip_as_null_is_checked_value_by_value(data):
    report = validate_batch(good_batch().assign(region=objects(["north", pd.NaT])), data)

    assert report.check("schema").passed  # GX skips NaT as null, as before
    assert type_check_rows(report, "region") == ROWS


def test_a_column_named_index_keeps_the_full_type_check(data):
    report = validate_batch(good_batch().assign(index=7), data)

    assert report.passed, report.failures()
    assert type_check_rows(report, "region") == ROWS
