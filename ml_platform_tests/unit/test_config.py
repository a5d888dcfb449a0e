"""The project config: the demo config is valid; every invalid one names the file, the field and the fix."""

from pathlib import Path

import pytest

from ml_platform.config import ConfigError, load_config
from ml_platform_tests.conftest import DEMO_CONFIG, write_config


def test_demo_config_is_valid():
    config = load_config(DEMO_CONFIG)
    assert config.model.name == "churn"
    assert config.data.target == "churned"
    assert config.raw_table == "raw.churn_batches"
    assert len(config.fingerprint()) == 64


def error_for(tmp_path: Path, overrides: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, overrides))
    return str(caught.value)


def test_unknown_estimator_names_the_field_and_suggests_the_right_class(tmp_path):
    message = error_for(tmp_path, {"training": {"estimator": {"class": "sklearn.ensemble.RandomForest"}}})
    assert "ml_platform.yaml: training.estimator.class: 'sklearn.ensemble.RandomForest' is not importable" in message
    assert "did you mean RandomForestClassifier or RandomForestRegressor?" in message


def test_estimator_in_a_missing_module(tmp_path):
    message = error_for(tmp_path, {"training": {"estimator": {"class": "no_such_pkg.Model"}}})
    assert "module 'no_such_pkg' not found" in message


def test_missing_pipeline_function(tmp_path):
    message = error_for(tmp_path, {"training": {"estimator": {"class": None, "pipeline": "ml_platform.lib.modeling:nope"}}})
    assert "training.estimator.pipeline" in message and "not importable" in message


def test_unknown_column_is_named_with_a_suggestion(tmp_path):
    message = error_for(tmp_path, {"data": {"target": "churn"}})
    assert "ml_platform.yaml: data: target: column 'churn' is not in data.columns (did you mean 'churned'?)" in message


def test_unknown_excluded_column(tmp_path):
    message = error_for(tmp_path, {"data": {"exclude_columns": ["favourite_colour"]}})
    assert "exclude_columns: column 'favourite_colour' is not in data.columns" in message


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"training": {"holdout_fraction": 1.5}}, "training.holdout_fraction"),
        ({"gate": {"floor": 2}}, "gate.floor"),
        ({"gate": {"max_latency_p99_ms": -1}}, "gate.max_latency_p99_ms"),
        ({"drift": {"drifted_share_threshold": 0}}, "drift.drifted_share_threshold"),
        ({"gate": {"metric": "accuracy"}}, "gate.metric"),
    ],
)
def test_bad_thresholds_name_the_field_and_the_value(tmp_path, overrides, field):
    message = error_for(tmp_path, overrides)
    assert f"ml_platform.yaml: {field}:" in message
    assert "got" in message


def test_a_source_table_is_schema_dot_name(tmp_path):
    message = error_for(tmp_path, {"data": {"source": {"kind": "table", "table": "customers"}}})
    assert "data.source" in message and "table 'customers' must be schema.name" in message


def test_a_typo_in_a_field_name_is_an_error_not_ignored(tmp_path):
    message = error_for(tmp_path, {"gate": {"min_improvment": 0.1}})
    assert "gate.min_improvment: Extra inputs are not permitted" in message


def test_inverted_range_in_the_contract(tmp_path):
    message = error_for(tmp_path, {"data": {"columns": {"tenure_months": {"type": "integer", "min": 10, "max": 1}}}})
    assert "data.columns.tenure_months" in message and "greater than max" in message


def test_positive_label_must_be_a_label(tmp_path):
    message = error_for(tmp_path, {"data": {"positive_label": "yes"}})
    assert "positive_label 'yes' is not one of labels [0, 1]" in message


def test_file_source_needs_a_path(tmp_path):
    message = error_for(tmp_path, {"data": {"source": {"kind": "file"}}})
    assert "data.source: kind 'file' needs a 'path'" in message


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(scalar)


def test_the_checks_section_of_the_demo_config():
    checks = load_config(DEMO_CONFIG).checks
    assert (checks.slices.column, checks.slices.floor, checks.perturbation.tolerance) == ("contract", 0.55, 0.25)
    assert checks.known_hard_cases == "checks/known_hard_cases.yaml"
    assert load_config(DEMO_CONFIG).resolve_path(checks.known_hard_cases).is_file()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"checks": {"slices": {"column": "customer_id"}}},
         "checks.slices.column: 'customer_id' is the id column, not a way to slice the holdout"),
        ({"checks": {"slices": {"column": "contract", "floors": {"two-year": 1.5}}}},
         "checks.slices.floors: Value error, slice 'two-year': floor 1.5 is not between 0 and 1"),
        ({"checks": {"perturbation": {"tolerance": 0}}}, "checks.perturbation.tolerance: Input should be greater than 0"),
        ({"checks": {"regression": {"row": 10}}}, "checks.regression.row: Extra inputs are not permitted"),
        ({"checks": {"slices": {"column": "churned"}}}, "checks.slices.column: 'churned' is the target"),
    ],
)
def test_a_bad_checks_section_names_the_field(tmp_path, overrides, expected):
    message = error_for(tmp_path, overrides)
    assert expected.replace("Value error, ", "") in message


@pytest.mark.parametrize(("csv", "expected"), [
    ({"encoding": "klingon"}, "data.source.csv.encoding: unknown encoding 'klingon' (e.g. utf-8, cp1252"),
    ({"separator": ";;"}, "data.source.csv.separator: String should have at most 1 character"),
    ({"separator": ";", "decimal": ";"}, "data.source.csv: decimal and separator are both ';'"),
    ({"separator": ";", "decimal": ",", "thousands": ","}, "data.source.csv: thousands and decimal are both ','"),
])
def test_a_bad_csv_format_names_the_field(tmp_path, csv, expected):
    message = error_for(tmp_path, {"data": {"source": {"kind": "file", "path": "batch.csv", "csv": csv}}})
    assert expected in message, message


def test_how_a_csv_is_read_is_part_of_the_source_version(tmp_path):
    """The same bytes read with other csv settings are other data: the next `ml-platform run` ingests them again.
    With the default settings the version is the file's hash alone, as before the settings existed."""
    from ml_platform.defs.sources import source_data_version
    from ml_platform.lib.snapshots import file_sha256

    (tmp_path / "batch.csv").write_text("id,x,y\n1,?,0\n2,3,1\n")

    def version(csv: dict | None) -> str:
        source = {"kind": "file", "path": "batch.csv", **({"csv": csv} if csv is not None else {})}
        return source_data_version(load_config(write_config(tmp_path, {"data": {"source": source}})), None, None)

    plain = version(None)
    assert plain == f"file:{file_sha256(tmp_path / 'batch.csv')}" == version({"separator": ","})
    assert version({"missing_values": ["?"]}) not in {plain, version({"missing_values": ["-"]})}


@pytest.mark.parametrize(("column", "expected"), [
    ({"type": "integer", "format": "%d.%m.%Y"}, "format '%d.%m.%Y' is for a date or datetime column, not integer"),
    ({"type": "date", "format": "DD.MM.YYYY"}, "format 'DD.MM.YYYY' is not a strptime format (e.g. %d.%m.%Y)"),
])
def test_a_bad_date_format_names_the_column(tmp_path, column, expected):
    message = error_for(tmp_path, {"data": {"columns": {"event_date": column}}})
    assert "data.columns.event_date" in message and expected in message, message


def test_a_training_window_needs_a_timestamp_column(tmp_path):
    message = error_for(tmp_path, {"data": {"timestamp_column": None}, "training": {"window_days": 30}})
    assert "training.window_days: needs data.timestamp_column" in message
    assert "ml_platform.yaml: training.window_days:" in error_for(tmp_path, {"training": {"window_days": 0}})


def test_a_misspelt_environment_setting_is_refused_with_the_name_it_resembles(tmp_path, monkeypatch, capsys):
    # A deployment's misspelt ML_PLATFORM_DATABASE_URL used to run the platform on the embedded SQLite stores.
    import re

    from ml_platform import cli, settings

    monkeypatch.setenv("ML_PLATFORM_DATABASE_URI", "postgresql://ml:secret@db/ml")
    code = cli.main(["--config", str(write_config(tmp_path)), "--home", str(tmp_path / "home"), "status"])
    error = capsys.readouterr().err
    assert code == 2
    assert "unknown environment variable ML_PLATFORM_DATABASE_URI (did you mean ML_PLATFORM_DATABASE_URL?)" in error
    assert "secret" not in error and not (tmp_path / "home").exists()  # refused before anything was made
    monkeypatch.setenv("ML_PLATFORM_FOO", "1")
    with pytest.raises(ValueError, match=r"variables ML_PLATFORM_DATABASE_URI \(did you mean .*\), ML_PLATFORM_FOO: the"):
        settings.check_environment()

    # Every name the platform's code or docs mention is a known one (a new setting must be added to the list).
    mentioned = set()
    for path in [*(settings.PROJECT_ROOT / "ml_platform").rglob("*.py"), *(settings.PROJECT_ROOT / "docs").rglob("*.md"),
                 settings.PROJECT_ROOT / "README.md", settings.PROJECT_ROOT / "dbt_project" / "profiles.yml"]:
        # (?!_\*): not a family such as ML_PLATFORM_PG_*
        mentioned |= set(re.findall(r"ML_PLATFORM_[A-Z][A-Z0-9_]*[A-Z0-9](?!_\*)", path.read_text()))
    assert mentioned - settings.ENVIRONMENT_VARIABLES == {"ML_PLATFORM_DATABASE_URI"}  # the docs' misspelt example


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    # YAML keeps the last of two equal keys without a word: the first min_improvement here would not count.
    text = write_config(tmp_path).read_text().replace("gate:\n", "gate:\n  min_improvement: 0.5\n", 1)
    (tmp_path / "ml_platform.yaml").write_text(text)
    line = text.splitlines().index("  min_improvement: 0.5") + 1
    second = next(i for i, row in enumerate(text.splitlines(), 1) if i > line and row.startswith("  min_improvement:"))
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "ml_platform.yaml")
    assert str(caught.value) == (f"{tmp_path / 'ml_platform.yaml'}: 'min_improvement' is set twice in one section "
                                 f"(lines {line} and {second}); YAML would keep only the last: remove one")
