"""What the next steps of a run need, prepared while this one waits on something else.

A dbt build runs in dbt's own process for several seconds, during which this process only reads dbt's log
lines; reading and writing Parquet runs in Arrow's C++ code and appending to DuckDB mostly in DuckDB's, which
lets other Python threads run. Meanwhile the next steps would spend seconds on first-time work: the contract
checks import Great Expectations (~1.5-4 s), training imports skops, matplotlib, scikit-learn's estimator and
MLflow and opens the MLflow store (a fresh SQLite store creates its tables), about 5 s. `while_waiting` does
that work on a thread during those waits instead (raw_batch, validated_batches, the dbt build). It
only imports and opens; it writes nothing but what opening a store writes, so a failure here changes nothing:
the step that needs the part fails later with its own clear error. Used only when the steps share this
process (the in-process executor); otherwise the work would be done in a process that never uses it.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ml_platform import settings

logger = logging.getLogger(__name__)

# What training and evaluation import before they can start (lib/modeling, resources/registry, lib/evaluation),
# in two parts: the model file's and the plots' (~3 s) while DuckDB appends the validated batch, the rest while
# dbt builds (where the MLflow store is opened too).
APPEND_MODULES = (
    "skops.io",
    "matplotlib.figure",
)
TRAINING_MODULES = (
    "sklearn.compose",
    "sklearn.impute",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.metrics",
    "mlflow",
    "mlflow.sklearn",
    "mlflow.models",
)


def imports(*modules: str) -> list[Callable[[], object]]:
    return [lambda name=name: importlib.import_module(name) for name in modules]


def validation_tasks() -> list[Callable[[], object]]:
    """Great Expectations, as lib/validation imports it (analytics off first)."""
    from ml_platform.lib.validation import _great_expectations

    return [_great_expectations]


def append_tasks() -> list[Callable[[], object]]:
    return imports(*APPEND_MODULES)


def training_tasks(estimator_class: str | None, open_registry: Callable[[], object]) -> list[Callable[[], object]]:
    """Import the training modules (and the configured estimator's module, when it is a class path; a team's
    pipeline factory is user code and is left to the training step), then open the registry."""
    modules = list(TRAINING_MODULES)
    if estimator_class:
        modules.append(estimator_class.rpartition(".")[0])
    return [*imports(*modules), open_registry]


@contextmanager
def while_waiting(tasks: list[Callable[[], object]]) -> Iterator[None]:
    """Run `tasks` on a thread during the block; the block ends only once they have, so that no import is
    still running when the next step starts importing too."""
    if not tasks or settings.executor() != "in_process":
        yield
        return
    thread = threading.Thread(target=_run, args=(tasks,), name="ml-platform-prefetch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()


def _run(tasks: list[Callable[[], object]]) -> None:
    for task in tasks:
        try:
            task()
        except Exception as exc:  # the step that needs it reports it properly
            logger.debug("prefetch: %s failed: %s", task, exc)
