"""Model cards: what a model version is for, what it was trained on, how it scored and who let it out.

Pure code with no Dagster or MLflow in it. A card is built once (`build_model_card`) and rendered
twice from the same sections, as Markdown and as a self-contained HTML page, so both always say the
same thing. Every value is escaped: a description holding `<script>` comes out as text, and a `|` in
a value does not break a Markdown table. A missing value shows as "—".
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_platform.config import ProjectConfig

MISSING = "—"

# The training_data stage output names its snapshot "sha256" and "path"; the card says what they are.
_TRAINING_DATA_ALIASES = {"sha256": "snapshot_sha256", "path": "snapshot_path",
                          "data_snapshot_sha256": "snapshot_sha256", "data_snapshot_path": "snapshot_path"}
_TRAINING_DATA_LABELS = {"snapshot_sha256": "Snapshot SHA-256", "snapshot_path": "Snapshot path", "rows": "Rows",
                         "feature_code_version": "Feature code version"}
_LINEAGE_LABELS = {"mlflow_run_id": "MLflow run id", "git_commit": "Git commit", "config_sha256": "Config SHA-256",
                   "seed": "Seed"}
_APPROVAL_LABELS = {"state": "State", "approver": "Approver", "approved_at": "When", "reason": "Reason"}
_COUNT_METRICS = {"rows"}  # shown as whole numbers, not to 4 decimals


@dataclass(frozen=True)
class ModelCard:
    model_name: str
    version: str
    owner: str
    risk_tier: str
    description: str
    intended_use: str
    limitations: list[str]
    training_data: dict[str, str]
    lineage: dict[str, str]
    metrics: dict[str, float]
    baseline: dict[str, float]
    by_group: dict[str, dict[str, float]]
    sensitive_column: str | None
    gate: dict[str, object]
    approval: dict[str, str]
    generated_at: str

    @property
    def title(self) -> str:
        return f"Model card: {self.model_name} v{self.version}"


def build_model_card(config: ProjectConfig, *, version: str, training_data: dict, lineage: dict, evaluation: dict,
                     gate: dict, approval: dict, generated_at: str | None = None) -> ModelCard:
    """A card for one model version, from the project config and what the stages recorded.

    ``evaluation`` is the evaluation stage's output ({"metrics", "by_group", "baseline", ...});
    ``gate`` is {"decision", "reasons", "compared_to", "decided_at"}; ``approval`` is
    {"state", "approver", "approved_at", "reason"}. Missing keys are shown as "—" on the card.
    """
    data = {_TRAINING_DATA_ALIASES.get(k, k): _as_text(v) for k, v in (training_data or {}).items()}
    evaluation = evaluation or {}
    return ModelCard(
        model_name=config.model.name,
        version=str(version),
        owner=config.model.owner,
        risk_tier=config.model.risk_tier,
        description=config.model.description,
        intended_use=config.model.intended_use,
        limitations=list(config.model.limitations),
        training_data=data,
        lineage={k: _as_text(v) for k, v in (lineage or {}).items()},
        metrics=dict(evaluation.get("metrics") or {}),
        baseline=dict(evaluation.get("baseline") or {}),
        by_group={str(g): dict(m) for g, m in (evaluation.get("by_group") or {}).items()},
        sensitive_column=config.data.sensitive_column,
        gate=dict(gate or {}),
        approval={k: _as_text(v) for k, v in (approval or {}).items()},
        generated_at=generated_at or datetime.now(UTC).isoformat(timespec="seconds"),
    )


# --- the card's content, independent of format ----------------------------------------------------
# A section is (heading, blocks); a block is ("p", text), ("list", [items]) or ("table", header, rows).
# A header of None makes a two-column key/value table.


def card_sections(card: ModelCard) -> list[tuple[str, list[tuple]]]:
    return [
        ("Summary", [("table", None, [["Owner", card.owner], ["Risk tier", card.risk_tier],
                                      ["Description", card.description]])]),
        ("Intended use", [("p", card.intended_use)]),
        ("Training data", [("table", None, _labelled(card.training_data, _TRAINING_DATA_LABELS))]),
        ("Evaluation", _evaluation_blocks(card)),
        ("Fairness", _fairness_blocks(card)),
        ("Limitations", [("list", card.limitations)] if card.limitations
         else [("p", "None recorded: the model config lists no limitations for this model.")]),
        ("Promotion", _promotion_blocks(card)),
        ("Approval record", _approval_blocks(card)),
        ("Lineage", [("table", None, _labelled(card.lineage, _LINEAGE_LABELS))]),
    ]


def _evaluation_blocks(card: ModelCard) -> list[tuple]:
    names = list(card.metrics) + [k for k in card.baseline if k not in card.metrics]
    if not names:
        return [("p", "No holdout metrics recorded.")]
    rows = [[name, _metric(name, card.metrics.get(name)), _metric(name, card.baseline.get(name))] for name in names]
    return [("p", "On the holdout split, beside a trivial baseline that predicts the training positive rate."),
            ("table", ["Metric", "Model", "Baseline"], rows)]


def _fairness_blocks(card: ModelCard) -> list[tuple]:
    if not card.sensitive_column:
        return [("p", "No sensitive column configured, so no per-group results.")]
    blocks: list[tuple] = [("p", f"Sensitive column: {card.sensitive_column}.")]
    regression = "rmse" in card.metrics  # a regressor's evaluation: per-group RMSE, a relative gap
    key, label = ("rmse", "RMSE") if regression else ("roc_auc", "ROC AUC")
    if card.by_group:
        rows = [[group, _metric(key, m.get(key)), _metric("rows", m.get("rows"))]
                for group, m in card.by_group.items()]
        blocks.append(("table", ["Group", label, "Rows"], rows))
    else:
        blocks.append(("p", f"No group could be scored on the holdout, so no per-group {label}."))
    gap = _metric("fairness_gap", card.metrics.get("fairness_gap"))
    what = ("(max − min RMSE between groups, over the overall RMSE)" if regression
            else "(largest ROC AUC difference between groups)")
    blocks.append(("p", f"Fairness gap {what}: {gap}."))
    return blocks


def _promotion_blocks(card: ModelCard) -> list[tuple]:
    gate = card.gate
    table = [["Decision", gate.get("decision")], ["Compared to", gate.get("compared_to")],
             ["Decided at", gate.get("decided_at")]]
    reasons = gate.get("reasons")
    if isinstance(reasons, str):  # as stored in an MLflow tag: a JSON list
        try:
            reasons = json.loads(reasons)
        except ValueError:
            reasons = [reasons]
    reasons = [str(r) for r in reasons] if isinstance(reasons, list | tuple) else []
    return [("table", None, table),
            ("list", reasons) if reasons else ("p", "No gate reasons recorded.")]


def _approval_blocks(card: ModelCard) -> list[tuple]:
    if card.approval.get("state") == "not required":
        return [("p", f"Not required for risk tier {card.risk_tier}.")]
    return [("table", None, [[label, card.approval.get(key)] for key, label in _APPROVAL_LABELS.items()])]


def _labelled(values: dict[str, str], labels: dict[str, str]) -> list[list]:
    """The labelled keys first (shown even when missing), then any others under their own names."""
    rows = [[label, values.get(key)] for key, label in labels.items()]
    return rows + [[key, value] for key, value in values.items() if key not in labels]


# --- rendering ------------------------------------------------------------------------------------


def render_markdown(card: ModelCard) -> str:
    out = [f"# {_md(card.title)}", ""]
    for heading, blocks in card_sections(card):
        out += [f"## {heading}", ""]
        for block in blocks:
            if block[0] == "p":
                out.append(_md(block[1]))
            elif block[0] == "list":
                out += [f"- {_md(item)}" for item in block[1]]
            else:
                header, rows = block[1] or ["Field", "Value"], block[2]
                out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
                out.append("|" + "---|" * len(header))
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("")
    out.append(f"_Generated at {_md(card.generated_at)}._")
    return "\n".join(out) + "\n"


def render_html(card: ModelCard) -> str:
    body = []
    for heading, blocks in card_sections(card):
        body.append(f"<h2>{_html(heading)}</h2>")
        for block in blocks:
            if block[0] == "p":
                body.append(f"<p>{_html(block[1])}</p>")
            elif block[0] == "list":
                body.append("<ul>" + "".join(f"<li>{_html(item)}</li>" for item in block[1]) + "</ul>")
            else:
                header, rows = block[1], block[2]
                head = "<tr>" + "".join(f"<th>{_html(h)}</th>" for h in header) + "</tr>" if header else ""
                if header:
                    cells = ["<tr>" + "".join(f"<td>{_html(c)}</td>" for c in row) + "</tr>" for row in rows]
                else:
                    cells = [f"<tr><th>{_html(k)}</th><td>{_html(v)}</td></tr>" for k, v in rows]
                body.append(f"<table>{head}{''.join(cells)}</table>")
    title = _html(card.title)
    content = "\n".join(body)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; color: #222; max-width: 900px; line-height: 1.45; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; font-weight: 600; }}
td {{ font-variant-numeric: tabular-nums; word-break: break-word; }}
footer {{ color: #777; font-size: 0.9em; margin-top: 2em; }}
</style>
</head>
<body>
<h1>{title}</h1>
{content}
<footer>Generated at {_html(card.generated_at)}.</footer>
</body>
</html>
"""


def write_model_card(card: ModelCard, directory: Path) -> tuple[Path, Path]:
    """Write model_card.md and model_card.html into ``directory`` (created if missing)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    md_path, html_path = directory / "model_card.md", directory / "model_card.html"
    md_path.write_text(render_markdown(card), encoding="utf-8")
    html_path.write_text(render_html(card), encoding="utf-8")
    return md_path, html_path


# --- helpers --------------------------------------------------------------------------------------


def _as_text(value: Any) -> str:
    if isinstance(value, dict):  # e.g. package versions
        return ", ".join(f"{k}=={v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return _show(value)


def _show(value: Any) -> str:
    """A value as display text; None, empty and non-finite numbers are "—"."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    text = str(value).strip()
    return text or MISSING


def _metric(name: str, value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _show(value)
    if not math.isfinite(number):
        return MISSING
    return f"{number:.0f}" if name in _COUNT_METRICS else f"{number:.4f}"


def _html(value: Any) -> str:
    return html.escape(_show(value))


def _md(value: Any) -> str:
    # Markdown passes raw HTML through to the page, so tags in values are neutralised here too.
    text = _show(value).replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(text.splitlines())


def _md_cell(value: Any) -> str:
    return _md(value).replace("|", "\\|")
