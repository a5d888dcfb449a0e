"""Known-hard cases: rows whose outcome a team knows, and how the score must move when one thing changes.

The file (YAML; `checks.known_hard_cases` in the project config) is written in the model's inputs, the
columns of the feature table that `/invocations` takes:

    base: {column: value, ...}            # optional: what every case starts from
    cases:
      - name: brand-new fiber customer with many support calls
        row: {column: value, ...}         # over `base`; together they give every model input
        expect: {min_score: 0.5}          # optional: min_score, max_score and/or label (see below)
    expectations:
      - name: a longer tenure does not raise churn risk
        kind: directional                 # the score moves one way when `change` is applied ...
        score: not_higher                 # lower | higher (by at least min_change) | not_higher | not_lower (within tolerance)
        change: {tenure_months: {add: 36}, is_new_customer: 0}
        cases: all                        # or a list of case names
      - name: the region does not change a clear-cut decision
        kind: invariance                  # ... or stays within `tolerance`
        change: {region: [north, south, east, west]}   # a list: each value in turn
        tolerance: 0.1
        cases: [...]

The score is the probability of the positive label for a classification (min_score and max_score between
0 and 1; `label` the expected class), and the predicted value for a regression (min_score, max_score,
min_change and tolerance in the target's units; no `label`).

A change sets a column to a value, adds to it (`{add: n}`), or tries each value of a list. Columns that
are computed from others (dbt features) are the file's to change along: the model sees its inputs only.
Every problem in the file is a `HardCasesError` naming the file, the entry and the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ml_platform.lib.model_checks import CheckInputError, Outcome, did_you_mean
from ml_platform.lib.yaml_files import load_yaml


class HardCasesError(CheckInputError):
    """The known-hard cases file is missing, malformed, or names what the model does not have."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Expected(_Strict):
    min_score: float | None = None  # a probability (classification) or a predicted value (regression)
    max_score: float | None = None
    label: Any = None  # classification only

    @model_validator(mode="after")
    def _something(self) -> Expected:
        if self.min_score is None and self.max_score is None and self.label is None:
            raise ValueError("expect needs min_score, max_score or label")
        if self.min_score is not None and self.max_score is not None and self.min_score > self.max_score:
            raise ValueError(f"min_score {self.min_score} is above max_score {self.max_score}")
        return self


class Case(_Strict):
    name: str = Field(min_length=1)
    row: dict[str, Any] = {}
    expect: Expected | None = None


class Add(_Strict):
    add: float


class Expectation(_Strict):
    name: str = Field(min_length=1)
    kind: Literal["directional", "invariance"]
    change: dict[str, Any] = Field(min_length=1)
    cases: list[str] | Literal["all"] = "all"
    score: Literal["lower", "higher", "not_lower", "not_higher"] | None = None
    min_change: float | None = Field(None, ge=0, description="lower/higher: by at least this much (default 0)")
    tolerance: float | None = Field(None, ge=0, description="not_*: this much the wrong way; invariance: either way")

    @model_validator(mode="after")
    def _fits_its_kind(self) -> Expectation:
        if self.kind == "directional" and self.score is None:
            raise ValueError("a directional expectation needs score: lower, higher, not_lower or not_higher")
        if self.kind == "invariance" and self.score is not None:
            raise ValueError("an invariance expectation has no score direction (it takes a tolerance)")
        if self.min_change is not None and self.score not in ("lower", "higher"):
            raise ValueError("min_change applies to score: lower or higher only")
        if self.tolerance is not None and self.score in ("lower", "higher"):
            raise ValueError("tolerance applies to not_lower, not_higher and invariance; lower/higher take min_change")
        lists = [c for c, v in self.change.items() if isinstance(v, list)]
        if len(lists) > 1:
            raise ValueError(f"change: only one column may list values to try in turn (got {lists})")
        for column, value in self.change.items():
            if isinstance(value, list) and not value:
                raise ValueError(f"change.{column}: an empty list of values")
            if isinstance(value, dict):
                try:
                    Add.model_validate(value)
                except ValidationError:
                    raise ValueError(f"change.{column}: {value!r} is not a value, a list of values or "
                                     "{add: <number>}") from None
        return self


class HardCasesFile(_Strict):
    base: dict[str, Any] = {}
    cases: list[Case] = Field(min_length=1)
    expectations: list[Expectation] = []

    @model_validator(mode="after")
    def _names(self) -> HardCasesFile:
        names = [c.name for c in self.cases]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"cases: names must be unique ({twice} repeated)")
        for i, e in enumerate(self.expectations):
            if e.cases != "all":
                for name in e.cases:
                    if name not in names:
                        raise ValueError(f"expectations[{i}] '{e.name}': cases: no case named '{name}'"
                                         f"{did_you_mean(name, names)}")
        return self


@dataclass(frozen=True)
class HardCases:
    path: Path
    rows: dict[str, dict[str, Any]]  # case name -> the complete model input row
    spec: HardCasesFile
    notes: list[str] = field(default_factory=list)


def load_hard_cases(path: Path, inputs: dict[str, str], contract: dict[str, Any],
                    task: str = "classification") -> HardCases:
    """Read and check the file against the model's inputs (`{column: 'number'|'integer'|'text'|'boolean'}`),
    the data contract's allowed categories and the task (what a score is). Raises HardCasesError naming the
    entry and field."""
    where = str(path)
    try:
        raw = load_yaml(Path(path).read_text())
    except FileNotFoundError:
        raise HardCasesError(f"{where}: known-hard cases file not found (checks.known_hard_cases)") from None
    except (OSError, yaml.YAMLError) as exc:
        raise HardCasesError(f"{where}: not readable YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise HardCasesError(f"{where}: expected a mapping with 'cases' (and 'base', 'expectations')")
    try:
        spec = HardCasesFile.model_validate(raw)
    except ValidationError as exc:
        raise HardCasesError("\n".join(_describe(where, raw, err) for err in exc.errors())) from None

    known = list(inputs)

    def check_value(entry: str, column: str, value: Any) -> None:
        if column not in inputs:
            raise HardCasesError(f"{where}: {entry}: column '{column}' is not a model input"
                                 f"{did_you_mean(column, known)}")
        if not _fits(inputs[column], value):
            raise HardCasesError(f"{where}: {entry}: column '{column}' takes {inputs[column]} values, got {value!r}")
        allowed = getattr(contract.get(column), "allowed", None)
        if allowed and inputs[column] == "text" and value not in allowed:
            raise HardCasesError(f"{where}: {entry}: column '{column}': {value!r} is not one of {allowed}")

    for column, value in spec.base.items():
        check_value("base", column, value)
    rows = {}
    for i, case in enumerate(spec.cases):
        entry = f"cases[{i}] '{case.name}'"
        if problem := _expect_problem(case.expect, task):
            raise HardCasesError(f"{where}: {entry}: expect: {problem}")
        for column, value in case.row.items():
            check_value(f"{entry}: row", column, value)
        row = {**spec.base, **case.row}
        missing = [c for c in known if c not in row]
        if missing:
            raise HardCasesError(f"{where}: {entry}: no value for model input(s) {missing} (give them in the "
                                 "case's row or in base)")
        rows[case.name] = row
    for i, e in enumerate(spec.expectations):
        entry = f"expectations[{i}] '{e.name}': change"
        for column, value in e.change.items():
            if isinstance(value, dict):  # {add: n}: only a numeric column can be added to
                if column in inputs and inputs[column] not in ("number", "integer"):
                    raise HardCasesError(f"{where}: {entry}: column '{column}' is not numeric: it cannot be added to")
                check_value(entry, column, value["add"])
            for v in value if isinstance(value, list) else ([] if isinstance(value, dict) else [value]):
                check_value(entry, column, v)
    return HardCases(path=Path(path), rows=rows, spec=spec)


def _expect_problem(expect: Expected | None, task: str) -> str | None:
    if expect is None:
        return None
    if task == "regression":
        if expect.label is not None:
            return ("a regression has no label: expect min_score and/or max_score, bounds of the predicted value")
        if expect.min_score is None and expect.max_score is None:
            return "expect needs min_score or max_score"
        return None
    for name in ("min_score", "max_score"):
        value = getattr(expect, name)
        if value is not None and not 0 <= value <= 1:
            return f"{name} {value:g} is not a probability between 0 and 1 (the score of a classification)"
    return None


def evaluate_hard_cases(cases: HardCases, score: Any, classes: list[Any]) -> Outcome:
    """Score every case and every changed case (`score(rows) -> (scores, labels)`), and judge each expectation.
    `classes` are a classifier's (empty for a regression, whose labels are its scores)."""
    names = list(cases.rows)
    scores, labels = score([cases.rows[n] for n in names])
    base = dict(zip(names, scores, strict=True))
    failures, lines = [], []
    for name, s, label in zip(names, scores, labels, strict=True):
        expect = cases.spec.cases[names.index(name)].expect
        if expect is None:
            lines.append(f"case '{name}': score {s:.4f}")
            continue
        problems = []
        if expect.min_score is not None and s < expect.min_score:
            problems.append(f"score {s:.4f} < min_score {expect.min_score}")
        if expect.max_score is not None and s > expect.max_score:
            problems.append(f"score {s:.4f} > max_score {expect.max_score}")
        if expect.label is not None:
            if expect.label not in classes:
                raise HardCasesError(f"{cases.path}: case '{name}': expect.label {expect.label!r} is not one of the "
                                     f"model's classes {classes}")
            if label != expect.label:
                problems.append(f"label {label!r}, expected {expect.label!r}")
        if problems:
            failures.append(f"case '{name}': " + "; ".join(problems))
        else:
            lines.append(f"case '{name}': score {s:.4f} as expected")

    checked = 0
    for e in cases.spec.expectations:
        targets = names if e.cases == "all" else list(e.cases)
        variants = _variants(e.change)
        changed_rows = [_apply(cases.rows[n], change) for n in targets for change in variants]
        changed, _ = score(changed_rows)
        problems = []
        for k, (name, change) in enumerate((n, c) for n in targets for c in variants):
            before, after = base[name], float(changed[k])
            checked += 1
            ok, rule = _holds(e, before, after)
            if not ok:
                shown = ", ".join(f"{c}{v['add']:+g}" if isinstance(v, dict) else f"{c}={v}" for c, v in change.items())
                problems.append(f"case '{name}' with {shown}: {before:.4f} → {after:.4f} ({rule})")
        if problems:
            failures.append(f"expectation '{e.name}' broken on {len(problems)} of {len(targets) * len(variants)}: "
                            + "; ".join(problems[:5]) + (" …" if len(problems) > 5 else ""))
        else:
            lines.append(f"expectation '{e.name}': holds on {len(targets) * len(variants)} changed case(s)")
    return Outcome.judged(
        failures, f"{len(names)} cases and {len(cases.spec.expectations)} expectations ({checked} changed cases) hold",
        f"{len(failures)} known-hard case(s) or expectation(s) broken", lines,
        cases=len(names), expectations=len(cases.spec.expectations), changed_cases=checked)


def _variants(change: dict[str, Any]) -> list[dict[str, Any]]:
    listed = [c for c, v in change.items() if isinstance(v, list)]
    if not listed:
        return [dict(change)]
    column = listed[0]
    return [{**change, column: value} for value in change[column]]


def _apply(row: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for column, value in change.items():
        out[column] = out[column] + value["add"] if isinstance(value, dict) else value
    return out


def _holds(e: Expectation, before: float, after: float) -> tuple[bool, str]:
    delta = after - before
    if e.kind == "invariance":
        tolerance = 0.05 if e.tolerance is None else e.tolerance
        return abs(delta) <= tolerance, f"moved {delta:+.4f}, more than the tolerance {tolerance:g}"
    need = e.min_change or 0.0
    slack = e.tolerance or 0.0
    if e.score in ("lower", "higher"):
        moved = -delta if e.score == "lower" else delta
        ok = moved > 0 if need == 0 else moved >= need  # no min_change: any move the right way
        return ok, f"expected {e.score}" + (f" by at least {need:g}" if need else "")
    wrong_way = delta if e.score == "not_higher" else -delta
    return wrong_way <= slack, f"expected {e.score.replace('_', ' ')} (tolerance {slack:g})"


def _fits(kind: str, value: Any) -> bool:
    if kind == "text":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return kind == "number" or float(value).is_integer()


def _describe(where: str, raw: dict, err: dict) -> str:
    """A pydantic error as `file: expectations[2] 'name': score: message`."""
    text, node = "", raw
    for key in err["loc"]:
        if isinstance(key, int):
            item = node[key] if isinstance(node, list) and key < len(node) else None
            text += f"[{key}]" + (f" '{item['name']}':" if isinstance(item, dict) and item.get("name") else "")
            node = item
        elif "[" in str(key) or str(key).startswith("function-"):
            continue  # pydantic's names for union branches say nothing to a person
        else:
            text += (" " if text.endswith(":") else "." if text else "") + str(key)
            node = node.get(key) if isinstance(node, dict) else None
    message = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    shown = f" (got {got!r})" if err["type"] not in ("missing", "value_error") and not isinstance(got, dict | list) else ""
    return f"{where}: {text.rstrip(':') or '(top level)'}: {message}{shown}"
