"""Model cards: every section in both formats, the numbers and the sign-off on them, and safe escaping."""

import html
import re

import pytest

from ml_platform.config import load_config
from ml_platform.lib.model_card import build_model_card, render_html, render_markdown, write_model_card

SECTIONS = ["Summary", "Intended use", "Training data", "Evaluation", "Fairness", "Limitations", "Promotion",
            "Approval record", "Lineage"]


@pytest.fixture(scope="module")
def config():
    return load_config("/work/main/ml_platform.yaml", check_imports=False)


def make_card(config, **overrides):
    kwargs = dict(
        version="3",
        training_data={"sha256": "ab12" * 16, "path": "/data/snapshots/churn.parquet", "rows": 15000,
                       "feature_code_version": "fcv-9f8e", "feature_table": "main.churn_features"},
        lineage={"mlflow_run_id": "run-42", "git_commit": "deadbeef", "config_sha256": "c0ffee",
                 "seed": 42, "packages": {"scikit-learn": "1.5.2"}},
        evaluation={"metrics": {"roc_auc": 0.84567, "f1": 0.6, "log_loss": 0.41, "brier": 0.13, "ece": 0.021,
                                "latency_p99_ms": 3.5, "fairness_gap": 0.0312, "rows": 3000.0},
                    "by_group": {"False": {"roc_auc": 0.851, "rows": 2500.0},
                                 "True": {"roc_auc": 0.8198, "rows": 500.0}},
                    "baseline": {"roc_auc": 0.5, "log_loss": 0.58, "brier": 0.19, "f1": 0.0}},
        gate={"decision": "promoted", "reasons": ["roc_auc 0.8457 ≥ floor 0.6500", "latency p99 3.50 ms ≤ 100 ms"],
              "compared_to": "none (first model)", "decided_at": "2025-01-02T03:04:05+00:00"},
        approval={"state": "approved", "approver": "alice@example.com", "approved_at": "2025-01-03T09:00:00+00:00",
                  "reason": "reviewed fairness table"},
        generated_at="2025-01-03T10:00:00+00:00",
    )
    kwargs.update(overrides)
    return build_model_card(config, **kwargs)


def html_headings(page):
    return re.findall(r"<h2>(.*?)</h2>", page)


def md_headings(text):
    return re.findall(r"^## (.*)$", text, flags=re.M)


def test_every_section_is_in_both_renderings_in_order(config):
    card = make_card(config)
    assert md_headings(render_markdown(card)) == SECTIONS
    assert html_headings(render_html(card)) == SECTIONS
    assert render_markdown(card).startswith("# Model card: churn v3\n")
    assert "<h1>Model card: churn v3</h1>" in render_html(card)


def test_metrics_baseline_and_fairness_appear_to_four_decimals(config):
    card = make_card(config)
    md = render_markdown(card)
    assert "| roc_auc | 0.8457 | 0.5000 |" in md
    assert "| ece | 0.0210 | — |" in md  # no baseline value: a dash, not a crash
    assert "| rows | 3000 | — |" in md
    assert "| True | 0.8198 | 500 |" in md
    assert "Sensitive column: senior_citizen." in md
    assert "0.0312" in md
    page = render_html(card)
    assert "<tr><td>roc_auc</td><td>0.8457</td><td>0.5000</td></tr>" in page


def test_training_data_and_lineage_reference_the_snapshot_and_run(config):
    md = render_markdown(make_card(config))
    assert f"| Snapshot SHA-256 | {'ab12' * 16} |" in md
    assert "| Snapshot path | /data/snapshots/churn.parquet |" in md
    assert "| Rows | 15000 |" in md
    assert "| Feature code version | fcv-9f8e |" in md
    assert "| MLflow run id | run-42 |" in md
    assert "| Git commit | deadbeef |" in md
    assert "| Config SHA-256 | c0ffee |" in md
    assert "| Seed | 42 |" in md
    assert "| packages | scikit-learn==1.5.2 |" in md


def test_promotion_and_approval_record_appear(config):
    card = make_card(config)
    md, page = render_markdown(card), render_html(card)
    assert "| Decision | promoted |" in md
    assert "- roc_auc 0.8457 ≥ floor 0.6500" in md
    assert "| State | approved |" in md
    assert "| Approver | alice@example.com |" in md
    assert "| When | 2025-01-03T09:00:00+00:00 |" in md
    assert "| Reason | reviewed fairness table |" in md
    assert "<tr><th>Approver</th><td>alice@example.com</td></tr>" in page
    assert "<li>latency p99 3.50 ms ≤ 100 ms</li>" in page


def test_gate_reasons_stored_as_a_json_tag_are_listed(config):
    card = make_card(config, gate={"decision": "rejected", "reasons": '["fairness gap 0.3000 > 0.15"]'})
    assert "- fairness gap 0.3000 &gt; 0.15" in render_markdown(card)
    assert "<li>fairness gap 0.3000 &gt; 0.15</li>" in render_html(card)


def test_hostile_description_is_escaped_in_html_and_markdown(config):
    hostile = '<script>alert("x")</script> | & more'
    cfg = config.model_copy(update={"model": config.model.model_copy(update={"description": hostile})})
    card = make_card(cfg, approval={"state": "approved", "approver": "<img src=x onerror=alert(1)>"})
    page = render_html(card)
    assert "<script>" not in page and "<img" not in page
    assert html.escape(hostile) in page
    md = render_markdown(card)
    assert "<script>" not in md
    assert "| Description | &lt;script&gt;alert(\"x\")&lt;/script&gt; \\| & more |" in md


def test_pipes_and_newlines_do_not_break_markdown_tables(config):
    card = make_card(config, lineage={"git_commit": "a|b\nc"})
    md = render_markdown(card)
    assert "| Git commit | a\\|b c |" in md
    table_lines = [line for line in md.splitlines() if line.startswith("|")]
    # Two-column tables have 3 unescaped pipes per line, three-column tables 4.
    assert {len(re.findall(r"(?<!\\)\|", line)) for line in table_lines} == {3, 4}


def test_no_sensitive_column_no_limitations_and_low_risk_say_so_plainly(config):
    model = config.model.model_copy(update={"limitations": [], "risk_tier": "low"})
    data = config.data.model_copy(update={"sensitive_column": None})
    cfg = config.model_copy(update={"model": model, "data": data})
    card = make_card(cfg, approval={"state": "not required"},
                     evaluation={"metrics": {"roc_auc": 0.8}, "baseline": {"roc_auc": 0.5}})
    for text in (render_markdown(card), render_html(card)):
        assert "No sensitive column configured" in text
        assert "None recorded" in text
        assert "Not required for risk tier low." in text


def test_missing_values_show_a_dash_and_never_crash(config):
    card = build_model_card(config, version="1", training_data={}, lineage={}, evaluation={}, gate={}, approval={})
    md, page = render_markdown(card), render_html(card)
    assert md_headings(md) == SECTIONS and html_headings(page) == SECTIONS
    assert "| Snapshot SHA-256 | — |" in md
    assert "| Decision | — |" in md
    assert "| State | — |" in md
    assert "No holdout metrics recorded." in md
    assert "Fairness gap (largest ROC AUC difference between groups): —." in md
    nan_card = make_card(config, evaluation={"metrics": {"roc_auc": float("nan"), "fairness_gap": None}})
    assert "| roc_auc | — | — |" in render_markdown(nan_card)


def test_write_model_card_writes_both_files(config, tmp_path):
    card = make_card(config)
    md_path, html_path = write_model_card(card, tmp_path / "card")
    assert (md_path.name, html_path.name) == ("model_card.md", "model_card.html")
    assert md_path.read_text(encoding="utf-8") == render_markdown(card)
    assert html_path.read_text(encoding="utf-8") == render_html(card)
