"""`ml-platform init`: a starter config and dbt model from a data file, and the clear refusals."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ml_platform.cli import main
from ml_platform.config import CsvFormat, load_config
from ml_platform.lib import starter


@pytest.fixture
def customers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # init adds the model's code location to ./workspace.yaml when there is one
    path = tmp_path / "customers.csv"
    pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(40)],
        "signup_date": pd.date_range("2026-01-01", periods=40).strftime("%Y-%m-%d"),
        "plan": ["basic", "pro", "team", "basic"] * 10,
        "seats": list(range(40)),
        "spend": [i * 1.5 if i % 10 else None for i in range(40)],
        "left": [0, 1] * 20,
    }).to_csv(path, index=False)
    return path


def test_init_writes_a_valid_commented_config_and_a_dbt_model(customers, tmp_path, capsys):
    config, dbt = tmp_path / "project" / "ml_platform.yaml", tmp_path / "dbt"
    code = main(["init", "--data", str(customers), "--target", "left", "--output", str(config),
                 "--dbt-project", str(dbt), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["columns"] == {"customer_id": "string", "signup_date": "date", "plan": "category",
                                 "seats": "integer", "spend": "number", "left": "integer"}
    assert (report["id_column"], report["timestamp_column"], report["positive_label"]) == ("customer_id", "signup_date", 1)

    loaded = load_config(config)  # the starter is a config the platform accepts as it is
    assert loaded.model.name == "customers" and loaded.features.dbt_model == "customers_features"
    assert loaded.data.source.kind == "file" and loaded.source_path() == customers.resolve()
    assert loaded.data.columns["plan"].allowed == ["basic", "pro", "team"]
    assert loaded.training.estimator.params["early_stopping"] is True  # a small file is not overfitted by 200 trees
    # the live SLO starts where the gate does: a model the gate accepts does not breach it on its first labels
    assert (loaded.performance.metric, loaded.performance.floor) == ("roc_auc", loaded.gate.floor)
    assert loaded.data.columns["spend"].max_null_fraction >= 0.1  # room above the 10% of nulls it has
    text = config.read_text()
    assert "# the column the model predicts" in text and "# seen 0 to 39" in text
    # the training window is offered (a file with a timestamp: exports pile up daily), off until a team sets it
    assert loaded.training.window_days is None and "window_days: null" in text and "days of signup_date" in text

    assert loaded.model.key_prefix  # a model of several: its asset keys under customers/
    assert "model_definitions(Path(__file__).with_name(\"ml_platform.yaml\"))" in (config.parent / "definitions.py").read_text()
    sql = (dbt / "models" / "features" / "customers_features.sql").read_text()
    assert "source('raw', 'customers_batches')" in sql and "partition by customer_id" in sql
    assert "raw" in (dbt / "models" / "sources" / "customers.yml").read_text()
    assert "unique" in (dbt / "models" / "features" / "customers_features.yml").read_text()


def test_a_numeric_target_with_more_than_two_values_makes_a_regression_starter(customers, tmp_path, capsys):
    config, dbt = tmp_path / "spend" / "ml_platform.yaml", tmp_path / "dbt"
    code = main(["init", "--data", str(customers), "--target", "seats", "--name", "seats", "--output", str(config),
                 "--dbt-project", str(dbt), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["task"], report["labels"], report["positive_label"]) == ("regression", [], None)

    loaded = load_config(config)  # accepted as it is: no labels, a regressor, a regression gate
    assert loaded.model.task == "regression" and loaded.data.labels is None and loaded.data.positive_label is None
    assert (loaded.gate.metric, loaded.gate.floor, loaded.performance.metric) == ("r2", 0.1, "r2")
    assert loaded.performance.floor == loaded.gate.floor
    assert loaded.training.estimator.class_ == "sklearn.ensemble.HistGradientBoostingRegressor"
    assert "# a regression has no labels" in config.read_text()
    assert "accepted_values" not in (dbt / "models" / "features" / "seats_features.yml").read_text()

    # The starter's estimator is a regressor the platform's pipeline accepts, and it fits the file's rows.
    from ml_platform.lib.modeling import build_pipeline, feature_columns, model_inputs

    frame = pd.read_csv(customers)
    X = model_inputs(frame, feature_columns(frame, loaded))
    fitted = build_pipeline(loaded, X).fit(X, frame["seats"])
    assert len(fitted.predict(X)) == 40


def test_the_starter_contract_accepts_the_file_it_was_written_from(tmp_path, monkeypatch):
    """Real Great Expectations on the file init read, or the first `ml-platform run` would refuse the team's own
    file: whole numbers written as 151.0 read as floats (a number), and a numeric id stays an integer."""
    from ml_platform.lib.sources import read_tabular
    from ml_platform.lib.validation import validate_batch

    monkeypatch.chdir(tmp_path)  # init adds a code location to ./workspace.yaml: not the repository's

    data = tmp_path / "visits.csv"
    pd.DataFrame({"patient_id": list(range(100, 160)), "visits": [float(i % 7) for i in range(60)],
                  "age": list(range(20, 80)), "cost": [100.0 + 3 * i for i in range(60)]}).to_csv(data, index=False)
    assert "1.0" in data.read_text()
    for target in ("cost", "visits"):  # a regression; a regression of whole-number floats
        config = tmp_path / target / "ml_platform.yaml"
        assert main(["init", "--data", str(data), "--target", target, "--output", str(config),
                     "--dbt-project", str(tmp_path / "dbt"), "--name", target]) == 0
        loaded = load_config(config)
        assert loaded.data.columns["visits"].type == "number" and loaded.data.columns["age"].type == "integer"
        assert loaded.data.id_column == "patient_id" and loaded.data.columns["patient_id"].type == "integer"
        report = validate_batch(read_tabular(data), loaded.data)
        assert report.passed, report.failures()


def test_init_with_a_teams_pipeline_and_an_approver(customers, tmp_path):
    config = tmp_path / "ml_platform.yaml"
    (tmp_path / "team_model.py").write_text(
        "def build():\n    from sklearn.pipeline import make_pipeline\n"
        "    from sklearn.linear_model import LogisticRegression\n    return make_pipeline(LogisticRegression())\n")
    assert main(["init", "--data", str(customers), "--output", str(config), "--dbt-project", str(tmp_path / "dbt"),
                 "--pipeline", "team_model:build", "--approver", "alice@example.com"]) == 0
    loaded = load_config(config)  # check_imports: the module next to the config is importable
    assert loaded.training.estimator.pipeline == "team_model:build"
    assert loaded.model.risk_tier == "medium" and loaded.governance.approvers == ["alice@example.com"]
    assert loaded.data.target == "left"  # suggested: the last column


def test_init_refuses_to_overwrite_unless_forced(customers, tmp_path, capsys):
    config = tmp_path / "ml_platform.yaml"
    config.write_text("# a team's own config\n")
    args = ["init", "--data", str(customers), "--output", str(config), "--dbt-project", str(tmp_path / "dbt")]
    assert main(args) == 2
    assert "refusing to overwrite" in capsys.readouterr().err and config.read_text() == "# a team's own config\n"
    assert not (tmp_path / "dbt").exists(), "nothing is written when one file would be overwritten"
    assert main([*args, "--force"]) == 0
    assert "model:" in config.read_text()


@pytest.mark.parametrize("content, expected", [
    (None, "no such file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "cannot be read as PARQUET"),
    (b"", "cannot be read as CSV"),
    (b"only_column\n1\n2\n", "has 1 column ('only_column')"),
    (b"x,label\n1,yes\n2,yes\n3,yes\n", "target 'label' has a single value ('yes') in 3 rows"),
    (b"x,label\n1,a\n2,b\n3,c\n", "has 3 distinct values that are not numbers ('a', 'b', 'c'), which looks like several classes"),
])
def test_init_on_bad_data_says_what_to_fix(tmp_path, capsys, content, expected):
    suffix = ".parquet" if content and content.startswith(b"\x89PNG") else ".csv"
    data = tmp_path / f"data{suffix}"
    if content is not None:
        data.write_bytes(content)
    code = main(["init", "--data", str(data), "--output", str(tmp_path / "c.yaml"), "--dbt-project", str(tmp_path / "dbt")])
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "c.yaml").exists()


def test_unknown_target_lists_the_columns(customers):
    frame = starter.read_data(customers)
    with pytest.raises(starter.InitError, match="'churn' is not a column of customers.csv; its columns: customer_id"):
        starter.inspect(frame, target="churn")


def test_init_adds_the_models_code_location_to_the_workspace_once(customers, tmp_path):
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text("load_from:\n  - python_module:\n      module_name: ml_platform.definitions\n")
    args = ["init", "--data", str(customers), "--output", "customers/ml_platform.yaml", "--dbt-project", "dbt"]
    assert main(args) == 0 and main([*args, "--force"]) == 0
    text = workspace.read_text()
    assert text.count("relative_path: customers/definitions.py") == 1 and "location_name: customers" in text


def _accounts(rows: int = 300) -> pd.DataFrame:
    """A team's export: whole and decimal numbers, an accented category, a yes/no label."""
    return pd.DataFrame({
        "account_id": list(range(5000, 5000 + rows)),
        "age": [18 + i % 60 for i in range(rows)],
        "income": [1234.5 + 37.25 * i for i in range(rows)],
        "city": ["Zürich", "São Paulo", "Köln"] * (rows // 3),
        "churn": ["yes", "no", "no"] * (rows // 3),
    })


def _init_json(data, tmp_path, capsys) -> tuple[dict, object]:
    config = tmp_path / "project" / "ml_platform.yaml"
    assert main(["init", "--data", str(data), "--output", str(config), "--dbt-project", str(tmp_path / "dbt"),
                 "--json"]) == 0
    return json.loads(capsys.readouterr().out), load_config(config)


def test_a_spreadsheet_saved_in_europe_on_windows_is_read_as_its_numbers(tmp_path, monkeypatch, capsys):
    """Semicolons, decimal commas, thousands points, cp1252 and '-' for "no value": init finds each, writes them
    as data.source.csv, and a run reads the file exactly as init did (its contract passes on the run's frame)."""
    from ml_platform.lib.sources import load_batch
    from ml_platform.lib.validation import validate_batch

    monkeypatch.chdir(tmp_path)
    frame = _accounts()
    written = frame.assign(
        income=[f"{v:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".") for v in frame.income],
        age=[("-" if i % 25 == 0 else str(v)) for i, v in enumerate(frame.age)])
    data = tmp_path / "accounts.csv"
    written.to_csv(data, sep=";", index=False, encoding="cp1252")
    assert "1.234,50" in data.read_text(encoding="cp1252")

    report, loaded = _init_json(data, tmp_path, capsys)
    assert report["csv"] == {"separator": ";", "decimal": ",", "thousands": ".", "encoding": "cp1252",
                             "missing_values": ["-"]}
    assert report["columns"]["income"] == "number" and report["columns"]["age"] == "number"
    assert report["notes"] == [
        "read as CSV with separator ';', decimal ',', thousands '.', encoding 'cp1252' (data.source.csv)",
        "age: 12 values '-' read as missing, the rest are numbers (data.source.csv.missing_values)"]
    assert loaded.data.source.csv.model_dump() == report["csv"]
    assert loaded.data.columns["city"].allowed == ["Köln", "São Paulo", "Zürich"]

    batch = load_batch(loaded, batch=None, ingested=[], read_table=None).frame  # what `ml-platform run` reads
    assert batch["income"].tolist() == frame["income"].tolist()
    assert batch["age"].isna().sum() == 12 and batch["city"].iloc[0] == "Zürich"
    report = validate_batch(batch, loaded.data)
    assert report.passed, report.failures()


@pytest.mark.parametrize("write, expected_csv, expected_note", [
    (lambda f, p: f.assign(income=f.income.astype(object).where(f.index % 50 != 0, "?")).to_csv(p, index=False),
     {"missing_values": ["?"]}, "income: 6 values '?' read as missing, the rest are numbers"),
    (lambda f, p: f.assign(income=[f"{v:,.2f}" for v in f.income]).to_csv(p, index=False),
     {"thousands": ","}, "read as CSV with thousands ','"),
    (lambda f, p: f.to_csv(p, sep="\t", index=False),
     {"separator": "\t"}, "read as CSV with separator '\\t'"),
])
def test_a_number_column_written_oddly_is_still_a_number(tmp_path, monkeypatch, capsys, write, expected_csv,
                                                         expected_note):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "accounts.csv"
    write(_accounts(), data)
    report, loaded = _init_json(data, tmp_path, capsys)
    assert report["columns"]["income"] == "number"
    assert {k: v for k, v in report["csv"].items() if v != getattr(CsvFormat(), k)} == expected_csv
    assert any(note.startswith(expected_note) for note in report["notes"]), report["notes"]
    assert loaded.data.source.csv.model_dump() == report["csv"]  # the YAML says it as init found it


def test_a_mostly_numeric_column_left_as_text_is_named(tmp_path, monkeypatch, capsys):
    """Values that are not markers ('12 kg') cannot be guessed away: init keeps the text and says so."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "accounts.csv"
    frame = _accounts()
    odd = ["1200 EUR"] * 10 + ["approx 900"] * 6 + ["n.a. (left)"] * 4 + ["1e3 est"] * 3  # 23 of 300 rows
    frame.assign(income=odd + frame.income.tolist()[len(odd):]).to_csv(data, index=False)
    report, loaded = _init_json(data, tmp_path, capsys)
    assert report["columns"]["income"] == "string" and report["csv"] == CsvFormat().model_dump()
    assert report["notes"] == [
        "income: read as text although 92% of its values are numbers (others: '1200 EUR', 'approx 900', "
        "'n.a. (left)'); if it is a number column, fix those values in the file, or list the ones that mean "
        "'no value' under data.source.csv.missing_values",
        "income: text with 281 distinct values in 300 rows, not a feature as it is (one column per value): excluded "
        "from the model (data.exclude_columns); derive features from it in the dbt model"]
    assert loaded.data.exclude_columns == ["income"]


def test_a_windows_character_past_the_first_megabyte_is_still_read(tmp_path, monkeypatch, capsys):
    """The encoding is judged on the file's first MB (a file can be large); a cp1252 'ü' further down still reads."""
    from ml_platform.lib import csv_format

    monkeypatch.chdir(tmp_path)
    frame = pd.concat([_accounts().assign(city="Basel")] * 150, ignore_index=True)
    frame["account_id"] = range(len(frame))
    frame.loc[len(frame) - 1, "city"] = "Zürich"
    data = tmp_path / "accounts.csv"
    frame.to_csv(data, index=False, encoding="cp1252")
    assert data.stat().st_size > csv_format.SAMPLE_BYTES
    report, loaded = _init_json(data, tmp_path, capsys)
    assert report["csv"]["encoding"] == "cp1252" and loaded.data.source.csv.encoding == "cp1252"


def test_free_text_and_dates_are_kept_out_of_the_model_and_dates_are_read_as_written(tmp_path, monkeypatch, capsys):
    """An email column would be one-hot encoded, one column per row (on 20,000 rows: 7.3 GB and 174 s to train
    instead of 0.7 GB and 25 s); dates as spreadsheets write them are dates, read the same way by every run."""
    from ml_platform.lib.sources import load_batch
    from ml_platform.lib.validation import validate_batch

    monkeypatch.chdir(tmp_path)
    frame = _accounts()
    days = pd.Timestamp("2026-01-01") + pd.to_timedelta([i % 90 for i in range(len(frame))], unit="D")
    frame = frame.assign(email=[f"user{i}@example.com" for i in range(len(frame))],
                         signed_up=days.strftime("%d.%m.%Y"), last_seen=days.strftime("%m/%d/%Y"),
                         renewal=(pd.Timestamp("2026-01-01") + pd.to_timedelta(
                             [i % 12 for i in range(len(frame))], unit="D")).strftime("%d/%m/%Y"))
    data = tmp_path / "accounts.csv"
    frame.to_csv(data, index=False)

    report, loaded = _init_json(data, tmp_path, capsys)
    contract = loaded.data.columns
    assert (contract["signed_up"].type, contract["signed_up"].format) == ("date", "%d.%m.%Y")
    assert (contract["last_seen"].type, contract["last_seen"].format) == ("date", "%m/%d/%Y")
    assert contract["renewal"].type == "string"  # 01/02/2026: the file cannot tell day from month
    assert loaded.data.timestamp_column == "signed_up"
    assert loaded.data.exclude_columns == ["email", "last_seen", "renewal"]
    assert report["notes"] == [
        "renewal: dates, but the file cannot tell day from month (e.g. '01/01/2026' fits both %d/%m/%Y and "
        "%m/%d/%Y): read as text; to use it as a date, set its type to date and its format to the right one",
        "email: text with 300 distinct values in 300 rows, not a feature as it is (one column per value): excluded "
        "from the model (data.exclude_columns); derive features from it in the dbt model",
        "last_seen: a date, not a feature as it is (one column per value): excluded from the model "
        "(data.exclude_columns); derive features from it in the dbt model, e.g. the days since it",
        "renewal: text with 12 distinct values in 300 rows, not a feature as it is (one column per value): "
        "excluded from the model (data.exclude_columns); derive features from it in the dbt model"]
    assert set(loaded.data.feature_columns_raw) == {"age", "income", "city"}

    batch = load_batch(loaded, batch=None, ingested=[], read_table=None).frame  # what `ml-platform run` reads
    assert batch["signed_up"].tolist() == list(days) and batch["last_seen"].tolist() == list(days)
    assert validate_batch(batch, loaded.data).passed


def test_an_export_with_trailing_separators_and_an_empty_column_passes_its_own_contract(tmp_path, monkeypatch, capsys):
    """A separator at the end of each line makes a column with no name and no value: it is not data, for init and
    for runs alike. A named column empty in every row cannot be typed: init leaves it out of the contract and says
    so (the contract refuses a column without any value, so the team's own file would fail its first run)."""
    from ml_platform.lib.sources import load_batch
    from ml_platform.lib.validation import validate_batch

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "accounts.csv"
    _accounts().assign(middle_name=None).to_csv(data, index=False)
    data.write_text("".join(line + ",\n" for line in data.read_text().splitlines()))
    assert data.read_text().startswith("account_id,age,income,city,churn,middle_name,\n5000,18,1234.5,Zürich,yes,,\n")

    report, loaded = _init_json(data, tmp_path, capsys)
    assert list(report["columns"]) == ["account_id", "age", "income", "city", "churn"]
    assert report["notes"] == ["middle_name: empty in every row: left out of the contract (runs keep it in the "
                               "batch's snapshot and name it); declare it under data.columns once it has values"]
    batch = load_batch(loaded, batch=None, ingested=[], read_table=None).frame
    assert list(batch.columns) == ["account_id", "age", "income", "city", "churn", "middle_name"]
    assert validate_batch(batch, loaded.data).passed
