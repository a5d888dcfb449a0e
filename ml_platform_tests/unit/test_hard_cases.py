"""Known-hard cases: every mistake in the file is named (file, entry, field); expectations are judged exactly."""

from pathlib import Path

import pytest
import yaml

from ml_platform.config import ColumnContract
from ml_platform.lib.hard_cases import HardCasesError, evaluate_hard_cases, load_hard_cases
from ml_platform.settings import PROJECT_ROOT
from ml_platform_tests.conftest import demo_config_dict

INPUTS = {"tenure": "integer", "charges": "number", "plan": "text", "senior": "number"}
CONTRACT = {"plan": ColumnContract(type="category", allowed=["monthly", "yearly"])}


def good() -> dict:
    return {
        "base": {"tenure": 12, "charges": 50.0, "plan": "yearly", "senior": 0.0},
        "cases": [{"name": "new monthly", "row": {"tenure": 1, "plan": "monthly"}, "expect": {"min_score": 0.5}},
                  {"name": "loyal", "row": {"tenure": 60}, "expect": {"max_score": 0.2, "label": 0}}],
        "expectations": [
            {"name": "tenure lowers risk", "kind": "directional", "score": "lower", "min_change": 0.05,
             "change": {"tenure": {"add": 24}}, "cases": ["new monthly"]},
            {"name": "plan matters", "kind": "directional", "score": "not_lower",
             "change": {"plan": "monthly"}},
            {"name": "seniority does not matter", "kind": "invariance", "tolerance": 0.01,
             "change": {"senior": [0.0, 1.0]}},
        ],
    }


def write(tmp_path: Path, content: dict) -> Path:
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def error(tmp_path: Path, content: dict) -> str:
    with pytest.raises(HardCasesError) as caught:
        load_hard_cases(write(tmp_path, content), INPUTS, CONTRACT)
    return str(caught.value)


def toy_model(rows: list[dict]) -> tuple[list[float], list[int]]:
    """Risk falls with tenure, rises on the monthly plan; seniority does not matter."""
    scores = [min(1.0, max(0.0, 0.9 - 0.012 * r["tenure"] + (0.1 if r["plan"] == "monthly" else 0.0)))
              for r in rows]
    return scores, [int(s >= 0.5) for s in scores]


def test_a_good_file_loads_with_complete_rows_and_every_expectation_holds(tmp_path):
    cases = load_hard_cases(write(tmp_path, good()), INPUTS, CONTRACT)
    assert cases.rows["new monthly"] == {"tenure": 1, "charges": 50.0, "plan": "monthly", "senior": 0.0}
    outcome = evaluate_hard_cases(cases, toy_model, [0, 1])
    assert outcome.status == "pass", outcome
    assert outcome.numbers == {"cases": 2, "expectations": 3, "changed_cases": 1 + 2 + 4}


def test_a_broken_expectation_fails_naming_the_expectation_case_and_numbers(tmp_path):
    content = good()
    content["expectations"][0].update(score="higher")  # "a longer tenure raises risk": the model disagrees
    outcome = evaluate_hard_cases(load_hard_cases(write(tmp_path, content), INPUTS, CONTRACT), toy_model, [0, 1])
    assert outcome.status == "fail"
    assert outcome.details[0] == ("expectation 'tenure lowers risk' broken on 1 of 1: case 'new monthly' with "
                                  "tenure+24: 0.9880 → 0.7000 (expected higher by at least 0.05)")


def test_an_expected_outcome_that_is_not_met_fails(tmp_path):
    content = good()
    content["cases"][1]["expect"] = {"max_score": 0.1}
    outcome = evaluate_hard_cases(load_hard_cases(write(tmp_path, content), INPUTS, CONTRACT), toy_model, [0, 1])
    assert outcome.status == "fail"
    assert outcome.details[0] == "case 'loyal': score 0.1800 > max_score 0.1"


def test_invariance_within_tolerance_and_beyond(tmp_path):
    content = good()
    content["expectations"] = [{"name": "plan does not matter", "kind": "invariance", "tolerance": 0.05,
                                "change": {"plan": ["monthly", "yearly"]}}]
    outcome = evaluate_hard_cases(load_hard_cases(write(tmp_path, content), INPUTS, CONTRACT), toy_model, [0, 1])
    assert outcome.status == "fail"
    assert "moved -0.1000, more than the tolerance 0.05" in outcome.details[0]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda c: c["cases"][0]["row"].update(tenur=3),
     "cases[0] 'new monthly': row: column 'tenur' is not a model input (did you mean 'tenure'?)"),
    (lambda c: c["base"].pop("charges"),
     "cases[0] 'new monthly': no value for model input(s) ['charges'] (give them in the case's row or in base)"),
    (lambda c: c["expectations"][0]["change"].update(tenure_months=3),
     "expectations[0] 'tenure lowers risk': change: column 'tenure_months' is not a model input (did you mean 'tenure'?)"),
    (lambda c: c["cases"][0]["row"].update(tenure="long"),
     "cases[0] 'new monthly': row: column 'tenure' takes integer values, got 'long'"),
    (lambda c: c["cases"][0]["row"].update(plan="weekly"),
     "cases[0] 'new monthly': row: column 'plan': 'weekly' is not one of ['monthly', 'yearly']"),
    (lambda c: c["expectations"][1]["change"].update(plan={"add": 1}),
     "expectations[1] 'plan matters': change: column 'plan' is not numeric: it cannot be added to"),
])
def test_unknown_columns_and_wrong_values_are_named(tmp_path, mutate, message):
    content = good()
    mutate(content)
    assert f"cases.yaml: {message}" in error(tmp_path, content)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda c: c["expectations"][0].pop("score"),
     "expectations[0] 'tenure lowers risk': a directional expectation needs score: lower, higher, not_lower or not_higher"),
    (lambda c: c["expectations"][0].update(score="down"),
     "expectations[0] 'tenure lowers risk': score: Input should be 'lower', 'higher', 'not_lower' or 'not_higher'"),
    (lambda c: c["expectations"][0].update(tolerance=0.1),
     "expectations[0] 'tenure lowers risk': tolerance applies to not_lower, not_higher and invariance"),
    (lambda c: c["expectations"][2].update(kind="sameness"),
     "expectations[2] 'seniority does not matter': kind: Input should be 'directional' or 'invariance'"),
    (lambda c: c["expectations"][0].update(cases=["new montly"]),
     "expectations[0] 'tenure lowers risk': cases: no case named 'new montly' (did you mean 'new monthly'?)"),
    (lambda c: c["expectations"][1].update(change={}),
     "expectations[1] 'plan matters': change: Dictionary should have at least 1 item"),
    (lambda c: c["expectations"][0]["change"].update(tenure={"plus": 3}),
     "change.tenure: {'plus': 3} is not a value, a list of values or {add: <number>}"),
    (lambda c: c["cases"][1].update(expect={}),
     "cases[1] 'loyal': expect: expect needs min_score, max_score or label"),
    (lambda c: c["cases"][0]["expect"].update(min_score=1.5),
     "cases[0] 'new monthly': expect: min_score 1.5 is not a probability between 0 and 1 (the score of a "
     "classification)"),
    (lambda c: c["cases"].append({"name": "loyal"}), "cases: names must be unique (['loyal'] repeated)"),
    (lambda c: c.update(extra=1), "extra: Extra inputs are not permitted"),
])
def test_malformed_expectations_are_named(tmp_path, mutate, message):
    content = good()
    mutate(content)
    assert message in error(tmp_path, content)


def test_a_missing_or_unreadable_file(tmp_path):
    with pytest.raises(HardCasesError, match="known-hard cases file not found"):
        load_hard_cases(tmp_path / "nope.yaml", INPUTS, CONTRACT)
    (tmp_path / "bad.yaml").write_text("cases: [unclosed")
    with pytest.raises(HardCasesError, match="not readable YAML"):
        load_hard_cases(tmp_path / "bad.yaml", INPUTS, CONTRACT)
    # A key given twice in a case: YAML would keep the second tenure without a word.
    (tmp_path / "twice.yaml").write_text("cases:\n  - name: new\n    row:\n      tenure: 1\n      tenure: 60\n")
    with pytest.raises(HardCasesError, match=r"'tenure' is set twice in one section \(lines 4 and 5\)"):
        load_hard_cases(tmp_path / "twice.yaml", INPUTS, CONTRACT)


def test_the_demo_file_matches_the_demo_features():
    """The shipped file names only inputs of the demo feature table, with values the contract allows."""
    from ml_platform.config import ProjectConfig

    config = ProjectConfig.model_validate(demo_config_dict())
    inputs = {"tenure_months": "integer", "monthly_charges": "number", "total_charges": "number",
              "contract": "text", "payment_method": "text", "internet_service": "text", "support_calls": "integer",
              "num_products": "integer", "senior_citizen": "number", "region": "text",
              "avg_charge_per_month": "number", "charges_to_products": "number", "is_new_customer": "integer",
              "calls_per_tenure_year": "number", "is_month_to_month": "integer", "has_fiber": "integer"}
    cases = load_hard_cases(PROJECT_ROOT / config.checks.known_hard_cases, inputs, config.data.columns)
    assert len(cases.rows) == 6 and len(cases.spec.expectations) == 4


# -- a regression's score is the predicted value ------------------------------------------------------------
def regression_file() -> dict:
    return {
        "base": {"tenure": 12, "charges": 50.0, "plan": "yearly", "senior": 0.0},
        "cases": [{"name": "big spender", "row": {"charges": 120.0}, "expect": {"min_score": 200, "max_score": 260}},
                  {"name": "small spender", "row": {"charges": 20.0}}],
        "expectations": [
            {"name": "higher charges, higher spend", "kind": "directional", "score": "higher", "min_change": 15,
             "change": {"charges": {"add": 10}}},
            {"name": "seniority moves the spend by at most 5", "kind": "invariance", "tolerance": 5,
             "change": {"senior": [0.0, 1.0]}},
        ],
    }


def spend_model(rows: list[dict]) -> tuple[list[float], list[float]]:
    """Yearly spend: twice the monthly charges plus the tenure; seniority adds 3."""
    spend = [2.0 * r["charges"] + r["tenure"] + 3.0 * r["senior"] for r in rows]
    return spend, spend


def test_a_regression_case_expects_bounds_of_the_predicted_value_in_the_targets_units(tmp_path):
    cases = load_hard_cases(write(tmp_path, regression_file()), INPUTS, CONTRACT, task="regression")
    outcome = evaluate_hard_cases(cases, spend_model, [])
    assert outcome.status == "pass", outcome
    assert "case 'big spender': score 252.0000 as expected" in outcome.details

    too_high = regression_file()
    too_high["cases"][0]["expect"]["max_score"] = 250
    too_high["expectations"][1]["tolerance"] = 2
    failed = evaluate_hard_cases(load_hard_cases(write(tmp_path, too_high), INPUTS, CONTRACT, task="regression"),
                                 spend_model, [])
    assert failed.status == "fail"
    assert failed.details[:2] == [
        "case 'big spender': score 252.0000 > max_score 250.0",
        "expectation 'seniority moves the spend by at most 5' broken on 2 of 4: case 'big spender' with senior=1.0: "
        "252.0000 → 255.0000 (moved +3.0000, more than the tolerance 2); case 'small spender' with senior=1.0: "
        "52.0000 → 55.0000 (moved +3.0000, more than the tolerance 2)"]


def test_a_regression_case_with_a_label_is_refused(tmp_path):
    content = regression_file()
    content["cases"][0]["expect"] = {"label": 1}
    with pytest.raises(HardCasesError, match=r"cases\[0\] 'big spender': expect: a regression has no label: expect "
                                             r"min_score and/or max_score, bounds of the predicted value"):
        load_hard_cases(write(tmp_path, content), INPUTS, CONTRACT, task="regression")
