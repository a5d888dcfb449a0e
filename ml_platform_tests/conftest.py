"""Shared test helpers: a fresh platform home per test, and configs derived from the demo config."""

from __future__ import annotations

import copy
import fcntl
import hashlib
import os
import signal
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from ml_platform.settings import PROJECT_ROOT

DEMO_CONFIG = PROJECT_ROOT / "ml_platform.yaml"

# A suite started in the background (`make test &`, nohup, a CI shell) inherits SIGINT ignored. Dagster maps SIGTERM
# to SIGINT's handler after each run it executes in the main thread, so SIGTERM was ignored too from then on. What a
# run in another thread spawned inherited that: Dagster's `tail -F` of a step's compute log, which Dagster stops with
# SIGTERM, outlived the suite (test_fault_tolerance.py runs a lifecycle in a thread). Tests start with both working.
for _number, _default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
    if signal.getsignal(_number) is signal.SIG_IGN:
        signal.signal(_number, _default)
# Everything the platform reads or sets in the environment (settings.py, storage.py): restored after each test.
_ENV_KEYS = ("ML_PLATFORM_HOME", "ML_PLATFORM_CONFIG", "DAGSTER_HOME", "ML_PLATFORM_DATABASE_URL",
             "ML_PLATFORM_DAGSTER_DATABASE_URL", "ML_PLATFORM_MLFLOW_TRACKING_URI", "ML_PLATFORM_ARTIFACT_ROOT",
             "ML_PLATFORM_EXECUTOR", "ML_PLATFORM_CELERY_BROKER", "ML_PLATFORM_CELERY_QUEUE", "ML_PLATFORM_CELERY_RESULT_BACKEND", "ML_PLATFORM_DBT_TARGET", "ML_PLATFORM_PG_HOST",
             "ML_PLATFORM_PG_PORT", "ML_PLATFORM_PG_USER", "ML_PLATFORM_PG_PASSWORD", "ML_PLATFORM_PG_DBNAME")
# The PostgreSQL server the production-profile tests use: the one on this machine (and CI's).
POSTGRES_SERVER = os.environ.get("ML_PLATFORM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
# Tests on that server run beside each other on pytest-xdist's workers, and one of them restarts it
# (test_fault_tolerance.py). A lock file for every process on this machine: each test marked `on_postgres` holds
# it shared, the one marked `restarts_postgres` alone, so no test is using the server while it restarts.
on_postgres = pytest.mark.postgres
restarts_postgres = pytest.mark.postgres(restarts=True)
_POSTGRES_LOCK = Path(tempfile.gettempdir()) / "ml_platform_tests.postgres.lock"


@pytest.fixture(autouse=True)
def _postgres_lock(request: pytest.FixtureRequest) -> Iterator[None]:
    """Held from before the test's other fixtures (autouse ones come first) until after their teardown."""
    marker = request.node.get_closest_marker("postgres")
    if marker is None:
        yield
        return
    with open(_POSTGRES_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if marker.kwargs.get("restarts") else fcntl.LOCK_SH)
        yield  # released when the file is closed


# The project's own home (`make demo` and `make ui` keep their state there). Every test works on a home of its own;
# a test that opens this one (say, a Dagster instance whose DAGSTER_HOME was computed after the test's environment
# was restored) fails here, named, instead of leaving a stray .ml_platform/dagster in the checkout.
_PROJECT_HOME = PROJECT_ROOT / ".ml_platform"


def _project_home_state() -> dict[str, int]:
    """Modification times of the project home and the Dagster folders in it: a file created, or an event log
    appended to, changes one of them. Only these few stats, so that it is cheap after every test."""
    paths = [_PROJECT_HOME, _PROJECT_HOME / "dagster", _PROJECT_HOME / "dagster" / "logs"]
    if (_PROJECT_HOME / "dagster").is_dir():
        paths += sorted((_PROJECT_HOME / "dagster").iterdir())
    return {str(p): p.stat().st_mtime_ns for p in paths if p.exists()}


@pytest.fixture(autouse=True)
def _project_home_untouched(request: pytest.FixtureRequest) -> Iterator[None]:
    before = _project_home_state()
    yield
    after = _project_home_state()
    if after != before:
        changed = sorted(path for path in after.keys() | before.keys() if after.get(path) != before.get(path))
        pytest.fail(f"{request.node.nodeid} wrote into the project's own home {_PROJECT_HOME} (changed: "
                    f"{', '.join(changed)}); tests must use a home of their own (conftest.platform_home). With "
                    f"pytest-xdist, a test on the other worker may have done it; `make demo` or `make ui` running "
                    f"meanwhile in this checkout would too.", pytrace=False)


def pytest_configure(config: pytest.Config) -> None:
    """With pytest-xdist's workers sharing the cores, one OpenMP/BLAS thread for each process they start (set in
    the controller, before the workers start, so that they and their subprocesses inherit it): threads that
    spin-wait for a core the other worker holds stall the fits of both."""
    if not hasattr(config, "workerinput") and config.getoption("numprocesses", None) not in (None, 0):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    # A DAGSTER_HOME from the developer's shell would reach every subprocess a test starts (`dg list defs`, say)
    # and open that home, not the test's: each command sets it from its own ML_PLATFORM_HOME.
    os.environ.pop("DAGSTER_HOME", None)


def pytest_sessionstart(session: pytest.Session) -> None:
    """The dbt project's manifest, parsed (if stale) once by the controller before the workers start: two workers
    running `dbt parse` at once would write dbt_project/target/manifest.json while the other reads it."""
    if not hasattr(session.config, "workerinput"):
        from ml_platform.defs.features.project import prepare_manifest
        from ml_platform.settings import DBT_PROJECT_DIR

        prepare_manifest(DBT_PROJECT_DIR)


# The longest test files, longest first (each file's tests summed, 2026-12-04: 311 s down to 52 s). pytest-xdist gives
# each worker one file at a time (--dist loadfile; --no-loadscope-reorder keeps this order). Its own order, most tests
# first, ran these single-test files last, and one worker idled 82 s while the other ran the tutorial. Long files
# first, both finish together (fresh clone, same machine and day: 740 s, against 785 s and 845 s before). A file
# missing here only runs later; the order changes no result.
LONGEST_FIRST = ("test_fault_tolerance.py", "test_distributed.py", "test_bad_inputs.py", "test_serving.py",
                 "test_tutorial.py", "test_lifecycle.py", "test_check.py", "test_multiple_models.py",
                 "test_monitoring.py", "test_browser.py", "test_governance_flow.py", "test_incremental.py",
                 "test_governance_concurrency.py", "test_production_profile.py", "test_late_labels.py",
                 "test_regression_example.py", "test_own_column_names.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the other files keep their order


def demo_config_dict() -> dict[str, Any]:
    return yaml.safe_load(DEMO_CONFIG.read_text())


def _merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def write_config(directory: Path, overrides: dict | None = None, name: str = "ml_platform.yaml") -> Path:
    """The demo config with `overrides` deep-merged in. Small batches keep tests quick; a model fitted on
    so few rows is less well calibrated, so the calibration guardrail is looser than the demo's. The latency
    guardrail too: a p99 of 100 single-row predictions is one slow answer, and with the two workers' servers,
    Celery workers and fits sharing 2 cores one answer can wait >100 ms for a core (a first model was
    rejected so, at 185 ms). The gate's latency rule is tested in unit/test_gate.py."""
    small = {"data": {"source": {"demo": {"rows_per_batch": 3000, "data_drift_from_batch": None}}},
             "gate": {"max_calibration_error": 0.15, "max_latency_p99_ms": 1000},
             "model": {"risk_tier": "low"}}  # tests of sign-off set "medium" themselves
    base = _merge(demo_config_dict(), small)
    # The demo config's own files are beside it, at the project root: keep finding them from elsewhere.
    base["checks"]["known_hard_cases"] = str(PROJECT_ROOT / base["checks"]["known_hard_cases"])
    path = directory / name
    path.write_text(yaml.safe_dump(_merge(base, overrides or {}), sort_keys=False))
    return path


@contextmanager
def platform_home(home: Path) -> Iterator[Path]:
    """Point the platform at `home` for the duration; the process environment is restored afterwards."""
    saved = {k: os.environ.get(k) for k in _ENV_KEYS}
    os.environ["ML_PLATFORM_HOME"] = str(home)
    try:
        yield home
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def platform_env(tmp_path: Path) -> Iterator[Path]:
    """A fresh ML_PLATFORM_HOME for one test."""
    with platform_home(tmp_path / "home") as home:
        yield home


def fresh_database_url() -> str:
    """A database name no test has used, on the local PostgreSQL server (created on first use)."""
    return f"{POSTGRES_SERVER}/mlp_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def _require_postgres_lock(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("postgres") is None:
        pytest.fail(f"{request.node.nodeid} uses PostgreSQL: mark it with conftest.on_postgres", pytrace=False)


@pytest.fixture
def postgres_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database on the real PostgreSQL server, dropped afterwards (with the profile's
    `_dagster` and `_mlflow` siblings, if anything made them)."""
    from ml_platform.storage import drop_databases, ensure_databases

    _require_postgres_lock(request)
    url = fresh_database_url()
    ensure_databases([url])
    try:
        yield url
    finally:
        drop_databases(url)


@pytest.fixture
def postgres_profile(platform_env: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The production profile on the real PostgreSQL server: ML_PLATFORM_DATABASE_URL names fresh databases
    (warehouse, Dagster, MLflow; created by the platform on first use), all dropped afterwards."""
    from ml_platform.storage import drop_databases

    _require_postgres_lock(request)
    url = fresh_database_url()
    os.environ["ML_PLATFORM_DATABASE_URL"] = url  # restored by platform_env
    try:
        yield url
    finally:
        drop_databases(url)


def tree_digest(directory: Path) -> dict[str, str]:
    """SHA-256 of every file under `directory`: to prove that nothing stored was modified."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*")) if p.is_file()
    }


class WebhookReceiver:
    """A real HTTP server on loopback that records the JSON bodies posted to it (the team's chat channel).

    It answers `statuses` in order, then `then` for every later post (default: always 200). `messages`
    holds the bodies it accepted (2xx), as the channel shows them; `received` every post with its answer."""

    def __init__(self, statuses: Sequence[int] = (), then: int = 200) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.messages: list[dict] = []
        self.received: list[tuple[int, dict]] = []
        messages, received, answers, lock = self.messages, self.received, list(statuses), threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with lock:
                    status = answers.pop(0) if answers else then
                    received.append((status, body))
                    if 200 <= status < 300:
                        messages.append(body)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"error")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/team-channel"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()
