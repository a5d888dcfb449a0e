"""The regression set: fixed holdout rows with the scores the evaluated version gave them.

Recorded once per model version at evaluation (an MLflow artifact of its run), and replayed by
`ml-platform check` against a running endpoint: the endpoint must answer every row with the recorded
score, within a tiny tolerance. A set belongs to one version (and one artifact digest); replaying it
against another version is an error, not a comparison.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FORMAT = "ml_platform.regression_set/1"
ARTIFACT_DIR = "regression"
ARTIFACT_FILE = "regression_set.json"
ARTIFACT_PATH = f"{ARTIFACT_DIR}/{ARTIFACT_FILE}"  # on the version's training run
REGRESSION_SET_TAG = "regression_set"  # on the model version: the artifact URI


class RegressionSetError(ValueError):
    """A regression set file is unreadable, malformed, or recorded for another model version."""


@dataclass(frozen=True)
class RegressionSet:
    model: str
    version: str
    artifact_sha256: str
    id_column: str | None
    rows: list[dict[str, Any]]  # the model's inputs (plus the id column), as JSON values: what a client sends
    scores: list[float]         # the positive-class score the evaluated version gave each row
    labels: list[Any]           # the label it predicted

    def to_json(self) -> dict:
        return {"format": FORMAT, **asdict(self)}

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        # json writes floats with repr, which reads back to the same double: the rows sent are the rows scored.
        path.write_text(json.dumps(self.to_json(), indent=1, allow_nan=False))
        return path

    @classmethod
    def read(cls, path: Path) -> RegressionSet:
        where = str(path)
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise RegressionSetError(f"{where}: regression set file not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise RegressionSetError(f"{where}: not a readable regression set ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise RegressionSetError(f"{where}: not a regression set (expected \"format\": \"{FORMAT}\")")
        missing = [k for k in ("model", "version", "artifact_sha256", "rows", "scores", "labels") if k not in data]
        if missing:
            raise RegressionSetError(f"{where}: missing {', '.join(missing)}")
        rows, scores, labels = data["rows"], data["scores"], data["labels"]
        if not rows or not (len(rows) == len(scores) == len(labels)):
            raise RegressionSetError(f"{where}: rows, scores and labels must be non-empty and of equal length "
                                     f"(got {len(rows)}, {len(scores)}, {len(labels)})")
        return cls(model=str(data["model"]), version=str(data["version"]),
                   artifact_sha256=str(data["artifact_sha256"]), id_column=data.get("id_column"),
                   rows=rows, scores=[float(s) for s in scores], labels=labels)

    def require_version(self, model: str, version: str, artifact_sha256: str | None, source: str) -> None:
        """A set recorded for another model, version or artifact cannot judge this one."""
        if self.model != model or self.version != str(version):
            raise RegressionSetError(
                f"{source}: the regression set was recorded for {self.model} v{self.version}, but the version "
                f"under check is {model} v{version}: use the set recorded with v{version} (the default), or "
                f"record one for it")
        if artifact_sha256 and self.artifact_sha256 != artifact_sha256:
            raise RegressionSetError(
                f"{source}: the regression set was recorded from artifact {self.artifact_sha256[:12]}…, but "
                f"{model} v{version}'s recorded artifact is {artifact_sha256[:12]}…")


def record_regression_set(model: Any, holdout: pd.DataFrame, columns: list[str], *, model_name: str, version: str,
                          artifact_sha256: str, positive_label: Any, id_column: str | None,
                          rows: int) -> RegressionSet:
    """The first `rows` holdout rows (the holdout is in id order, so the same rows every time) with the
    model's scores and labels for them (a regressor: its predictions, as both)."""
    from ml_platform.lib.modeling import model_inputs, positive_scores

    picked = holdout.head(rows)
    inputs = model_inputs(picked, columns)
    scores = [float(s) for s in positive_scores(model, inputs, positive_label)]
    if positive_label is None:  # a regressor: its "label" is the predicted value itself
        labels = list(scores)
    else:
        proba = np.asarray(model.predict_proba(inputs))
        labels = [_json_value(model.classes_[i]) for i in np.argmax(proba, axis=1)]
    records = [{k: _json_value(v) for k, v in r.items()} for r in inputs.to_dict(orient="records")]
    if id_column and id_column in picked.columns:
        for record, entity in zip(records, picked[id_column], strict=True):
            record[id_column] = str(entity)
    return RegressionSet(
        model=model_name, version=str(version), artifact_sha256=artifact_sha256, id_column=id_column,
        rows=records, scores=scores, labels=labels,
    )


def score_rows(model: Any, regression_set: RegressionSet, positive_label: Any) -> list[float]:
    """The set's rows scored by a model in this process (the rows as a client would send them)."""
    columns = list(model.feature_names_in_)
    frame = pd.DataFrame([{c: (np.nan if r.get(c) is None else r.get(c)) for c in columns}
                          for r in regression_set.rows], columns=columns)
    from ml_platform.lib.modeling import positive_scores

    return [float(s) for s in positive_scores(model, frame, positive_label)]


def compare_scores(regression_set: RegressionSet, answered: list[float], tolerance: float,
                   versions: list[str] | None = None) -> list[str]:
    """One line per row whose answer differs from the recorded score by more than `tolerance` (or that
    was answered by another version); empty when every row matches."""
    problems = []
    if len(answered) != len(regression_set.scores):
        return [f"{len(answered)} answers for {len(regression_set.scores)} rows"]
    for i, (want, got) in enumerate(zip(regression_set.scores, answered, strict=True)):
        who = (versions or [None] * len(answered))[i]
        entity = regression_set.rows[i].get(regression_set.id_column) if regression_set.id_column else None
        name = f"row {i}" + (f" ({entity})" if entity else "")
        if who is not None and str(who) != regression_set.version:
            problems.append(f"{name}: answered by version {who}, not v{regression_set.version}")
        elif got is None or not math.isfinite(got) or abs(got - want) > tolerance:
            problems.append(f"{name}: score {got!r}, recorded {want!r} (tolerance {tolerance:g})")
    return problems


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
