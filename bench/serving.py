"""Online serving: `ml-platform serve` against `mlflow models serve`, single-row requests, same model version.

    python bench/serving.py [--quick] [--home DIR] [--keep]

Setup (not timed): daily lifecycle runs (`ml-platform run`, the demo batches) into a fresh
ML_PLATFORM_HOME until the gate has promoted two versions of the churn model (a ColumnTransformer +
HistGradientBoosting Pipeline; risk tier low, so no sign-off): usually two runs, version 2 `champion`
and version 1 `previous_champion`.
Request bodies are real rows of `features.churn_features`, one row per request, a different row each
time (cycling through a few thousand), encoded once.

Each server runs alone on the machine (one after the other) and gets an untimed warm-up. Sections:

(A) closed loop: 16 connections send single-row POST /invocations back to back for 20 s, on each
    server: throughput and latency p50/p99/max. Target: our throughput >= 10x MLflow's.
(B) open loop: a steady 200 requests/s for 20 s, each request due on a fixed timetable; latency counts
    from the due time, so a server that falls behind cannot hide it. Target: our p99 <= 25 ms.
(C) rollback under load (ours only): a steady 150 requests/s to POST /predict, which names the model
    version behind each answer; after 10 s `ml-platform rollback` moves the champion back to the
    previous champion, 10 s after it returned `ml-platform rollback --to <champion>` re-promotes the
    champion, and the load goes on 10 s more. Targets: no failed request, and every answer from the
    new version < 1 s after each command returned.

The baseline is "mlflow models serve" (`--env-manager local`, its own defaults otherwise), serving
`models:/churn@champion` from the same registry: the same model version as ours, checked by comparing
both servers' predictions on the same rows. Sections needing `ml-platform serve` are skipped, with the
reason, while it is not available. The client runs on the same 2 cores as the server; the CPU it used
(time.process_time) is printed with each result. Results go to bench/results/serving-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(BENCH_DIR))

from loadgen import LoadResult, closed_loop, open_loop  # noqa: E402

BIN = Path(sys.executable).parent
CLI = str(BIN / "ml-platform")
BASELINE = "mlflow models serve"
OURS = "ml-platform serve"
FLOOR = "no-model app (floor)"

CONNECTIONS = 16
SECONDS = 20.0
STEADY_RATE = 200.0
ROLLBACK_RATE = 150.0
ROLLBACK_PHASE_S = 10.0  # steady load before, between and after the two commands
TARGET_THROUGHPUT_RATIO = 10.0
TARGET_P99_MS = 25.0
TARGET_SWITCH_S = 1.0
SAMPLE_ROWS = 4000
SETUP_RUNS = 3
READY_TIMEOUT_S = 180.0


def log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# --- the platform state: two registered versions of the churn model ------------------------------------


def write_config(path: Path) -> Path:
    """ml_platform.yaml as it is now, with 5,000-row demo batches without drift, risk tier low (the gate
    promotes without a sign-off) and no minimum improvement (a retrained model that is at least as good
    is promoted), so that a few daily runs give a champion and a previous champion."""
    import yaml

    config = yaml.safe_load((PROJECT_ROOT / "ml_platform.yaml").read_text())
    config["data"]["source"]["demo"].update(rows_per_batch=5000, data_drift_from_batch=None)
    config["model"]["risk_tier"] = "low"
    config["gate"]["min_improvement"] = 0.0
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def platform_env(home: Path, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DAGSTER_HOME", "MLFLOW_TRACKING_URI"}}
    return {**env, "ML_PLATFORM_HOME": str(home), "ML_PLATFORM_CONFIG": str(config), "NO_COLOR": "1"}


def cli(args: list[str], env: dict[str, str], *, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([CLI, *args], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ml-platform {' '.join(args)} failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def prepare_home(home: Path) -> Path:
    """Daily lifecycle runs until the gate has promoted two versions (a champion and a previous champion,
    which the rollback section needs); at most SETUP_RUNS runs."""
    config = write_config(home / "bench-serving.yaml")
    env = platform_env(home, config)
    for batch in range(1, SETUP_RUNS + 1):
        log(f"setup: lifecycle run {batch} into {home} (about 1.5 min) …")
        cli(["run", "--batch", str(batch)], env)
        if model_status(env)["previous_champion"]:
            break
    else:
        log(f"setup: the gate promoted only one version in {SETUP_RUNS} runs: section C will be skipped")
    return config


def model_status(env: dict[str, str]) -> dict:
    return json.loads(cli(["status", "--json"], env).stdout)


# --- request bodies -----------------------------------------------------------------------------------------


def signature_inputs(env: dict[str, str], model: str) -> list[tuple[str, str]]:
    """(column, MLflow type) of the champion's signature, read in a subprocess so the load generator's
    process never imports MLflow."""
    code = ("import json, sys, mlflow; info = mlflow.models.get_model_info(f'models:/{sys.argv[1]}@champion'); "
            "print(json.dumps([(c['name'], c['type']) for c in info.signature.inputs.to_dict()]))")
    tracking = f"sqlite:///{Path(env['ML_PLATFORM_HOME']) / 'mlflow' / 'mlflow.db'}"
    proc = subprocess.run([sys.executable, "-c", code, model], env={**env, "MLFLOW_TRACKING_URI": tracking},
                          capture_output=True, text=True, check=True)
    return [tuple(c) for c in json.loads(proc.stdout.strip().splitlines()[-1])]


def sample_rows(home: Path, columns: list[tuple[str, str]], limit: int) -> list[dict]:
    """Real rows of the feature table: the signature's columns (so not the bookkeeping columns
    snapshot_hash, batch_id, event_date, nor the label), each value of the signature's type, plus the
    customer id (/predict names the entity with it; /invocations bodies leave it out)."""
    import duckdb

    names = [name for name, _ in columns]
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        available = [r[0] for r in con.execute("describe features.churn_features").fetchall()]
        missing = sorted(set(names) - set(available))
        if missing:
            raise RuntimeError(f"features.churn_features lacks the model inputs {missing}")
        frame = con.execute(f"select customer_id, {', '.join(names)} from features.churn_features "
                            f"order by batch_id, customer_id limit {int(limit)}").fetchall()
    cast = {"integer": int, "long": int, "double": float, "float": float, "string": str, "boolean": bool}
    rows = []
    for record in frame:
        row = {name: (None if value is None else cast[kind](value))
               for (name, kind), value in zip(columns, record[1:], strict=True)}
        rows.append({"customer_id": record[0], **row})
    return rows


def invocation_body(rows: list[dict], names: list[str]) -> bytes:
    import orjson

    return orjson.dumps({"dataframe_split": {"columns": names, "data": [[r[n] for n in names] for r in rows]}})


def predict_body(row: dict) -> bytes:
    import orjson

    return orjson.dumps({"records": [row]})


# --- servers -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    """A server process in its own process group (so its workers are found and stopped with it)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, ready_path: str,
                 logfile: Path):
        self.name, self.command, self.port, self.ready_path = name, command, port, ready_path
        self.base = f"http://127.0.0.1:{port}"
        self.logfile = logfile
        self._log = logfile.open("wb")
        self.proc = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before it was ready:\n"
                                   + self.log_tail())
            try:
                status, _ = http("GET", self.base + self.ready_path, timeout=2)
                if status == 200:
                    return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} did not answer {self.ready_path} within {timeout:.0f} s:\n" + self.log_tail())

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.logfile.read_text(errors="replace")[-chars:]

    def pids(self) -> list[int]:
        """Every process of the server's group (the server, its workers, a wrapping shell)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[2]) == self.proc.pid:
                    found.append(int(entry.name))
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU of the server's processes so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def processes(self) -> list[str]:
        out = []
        for pid in sorted(self.pids()):
            try:
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
            except OSError:
                pass
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def start_mlflow(home: Path, model: str, workdir: Path) -> Server:
    port = free_port()
    # On PATH as in an activated virtualenv: `mlflow models serve` runs `uvicorn` by name.
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{model}@champion", "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port)]
    return Server(BASELINE, command, env, port, "/ping", workdir / "mlflow-serve.log")


# The floor: a Starlette app on uvicorn that reads the body and answers a constant, no model. What the
# client, HTTP and the event loop cost on this machine: no server can do better with this client.
FLOOR_APP = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def invocations(request):
    await request.body()
    return Response(b'{"predictions": [0]}', media_type="application/json")

async def ping(request):
    return Response(b"\\n", media_type="application/json")

app = Starlette(routes=[Route("/invocations", invocations, methods=["POST"]), Route("/ping", ping)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def start_floor(workdir: Path) -> Server:
    port = free_port()
    return Server(FLOOR, [sys.executable, "-c", FLOOR_APP, str(port)], dict(os.environ), port, "/ping",
                  workdir / "floor.log")


def ours_available() -> str | None:
    """None when `ml-platform serve` exists; otherwise why not."""
    if not (PROJECT_ROOT / "ml_platform" / "serving" / "app.py").exists():
        return "ml_platform/serving/app.py does not exist yet"
    helptext = subprocess.run([CLI, "--help"], capture_output=True, text=True).stdout
    if not re.search(r"[{,]serve[,}]", helptext):
        return "`ml-platform serve` is not a command yet"
    return None


def start_ours(home: Path, config: Path, workdir: Path) -> Server:
    port = free_port()
    command = [CLI, "serve", "--host", "127.0.0.1", "--port", str(port)]
    return Server(OURS, command, platform_env(home, config), port, "/ready", workdir / "ml-platform-serve.log")


def mlflow_defaults(server: Server) -> str:
    """What `mlflow models serve` started, as a user gets it with no options."""
    import importlib.metadata

    uvicorn = [p for p in server.processes() if "uvicorn" in p]
    workers = re.search(r"--workers (\d+)", uvicorn[0]).group(1) if uvicorn and "--workers" in uvicorn[0] else "?"
    timeout = os.environ.get("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", "60")
    threads = min(32, (os.cpu_count() or 1) + 4)
    return (f"MLflow {importlib.metadata.version('mlflow')} defaults: {workers} uvicorn worker process(es) "
            f"(--workers / MLFLOW_MODELS_WORKERS unset), each request's predict in asyncio.to_thread "
            f"(default executor, up to {threads} threads), request timeout {timeout} s; "
            f"processes: {' | '.join(uvicorn or server.processes())}")


# --- sections --------------------------------------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used (the first line of /proc/stat, minus idle)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def measure(server: Server, run) -> dict:
    """Run one load pattern; the CPU used over it by the client, the server and everything else."""
    server_cpu0, machine0 = server.cpu_seconds(), machine_busy_seconds()
    result: LoadResult = run()
    server_cpu, machine = server.cpu_seconds() - server_cpu0, machine_busy_seconds() - machine0
    return with_cpu(result.summary(), server_cpu, machine)


def with_cpu(summary: dict, server_cpu: float, machine: float) -> dict:
    elapsed = summary["elapsed_s"] or float("nan")
    other = max(0.0, machine - server_cpu - summary["client_cpu_s"])
    return {**summary, "server_cpu_s": server_cpu, "server_cpu_share": server_cpu / elapsed,
            "other_cpu_s": other, "other_cpu_share": other / elapsed}


def warm_up(server: Server, bodies: list[bytes], seconds: float) -> None:
    closed_loop(server.base + "/invocations", bodies, connections=CONNECTIONS, seconds=seconds)


def bench_server(server: Server, bodies: list[bytes], seconds: float, warmup_s: float) -> dict:
    url = server.base + "/invocations"
    warm_up(server, bodies, warmup_s)
    time.sleep(1)
    log(f"  (A) closed loop, {CONNECTIONS} connections, {seconds:.0f} s …")
    closed = measure(server, lambda: closed_loop(url, bodies, connections=CONNECTIONS, seconds=seconds))
    time.sleep(2)  # let anything still queued in the server finish
    log(f"  (B) open loop, {STEADY_RATE:.0f} req/s, {seconds:.0f} s …")
    steady = measure(server, lambda: open_loop(url, bodies, rate=STEADY_RATE, seconds=seconds,
                                               connections=CONNECTIONS))
    return {"closed": closed, "steady": steady}


def version_of(status: int, headers, body: bytes) -> str | None:
    """The model version behind a /predict answer."""
    if status != 200:
        return None
    import orjson

    return str(orjson.loads(body)["predictions"][0]["model_version"])


class AliasWatch:
    """When the registry's `champion` alias changed, seen by reading MLflow's SQLite store every 20 ms
    (read-only, the stdlib's sqlite3): the moment the service could first have noticed, whatever the
    command that moved it was still doing afterwards."""

    def __init__(self, home: Path, model: str):
        import sqlite3

        self.model = model
        self.changes: list[tuple[float, str]] = []  # (perf_counter, version)
        self._db = sqlite3.connect(f"file:{home / 'mlflow' / 'mlflow.db'}?mode=ro", uri=True, isolation_level=None,
                                   timeout=0.05)

    def champion(self) -> str | None:
        try:
            row = self._db.execute("select version from registered_model_aliases where name = ? and "
                                   "alias = 'champion'", (self.model,)).fetchone()
        except Exception:  # locked by a writer for a moment: try again at the next poll
            return None
        return None if row is None else str(row[0])

    async def run(self, stop: asyncio.Event) -> None:
        last = self.champion()
        while not stop.is_set():
            seen = self.champion()
            if seen is not None and seen != last:
                self.changes.append((time.perf_counter(), seen))
                last = seen
            await asyncio.sleep(0.02)


def rollback_under_load(server: Server, env: dict[str, str], home: Path, model: str, rows: list[dict],
                        champion: str, previous: str, phase_s: float) -> dict:
    """Steady load on /predict: `phase_s` of it, `ml-platform rollback`, `phase_s` more,
    `ml-platform rollback --to <champion>` (the re-promotion), `phase_s` more. Each answer's model
    version is recorded. The load goes on until the last phase is over, however long the commands take."""
    bodies = [predict_body(r) for r in rows]
    events: list[dict] = []
    watch = AliasWatch(home, model)

    async def operator(started: float) -> None:
        stop = asyncio.Event()
        watcher = asyncio.ensure_future(watch.run(stop))
        plan = [(previous, ["rollback", "--reason", "bench: rollback under load"]),
                (champion, ["rollback", "--to", champion, "--reason", "bench: re-promote"])]
        for target, args in plan:
            await asyncio.sleep(phase_s)
            begun = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(CLI, *args, env=env, cwd=PROJECT_ROOT,
                                                        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            events.append({"command": "ml-platform " + " ".join(args), "to_version": target,
                           "started": begun - started, "completed": time.perf_counter() - started,
                           "exit": proc.returncode, "output": (out + err).decode(errors="replace").strip()[-500:]})
        await asyncio.sleep(phase_s)
        stop.set()
        await watcher

    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu0, machine0 = server.cpu_seconds(), machine_busy_seconds()
    # A request counts as lost only if unanswered after the client's whole timeout (30 s), not merely slow.
    result = open_loop(server.base + "/predict", bodies, rate=ROLLBACK_RATE, seconds=3 * phase_s,
                       connections=CONNECTIONS, on_response=version_of, during=operator, drain_s=30.0)
    server_cpu, machine = server.cpu_seconds() - server_cpu0, machine_busy_seconds() - machine0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli_cpu = (children.ru_utime - children0.ru_utime) + (children.ru_stime - children0.ru_stime)

    answers = sorted(((s.done - result.started, s.seen) for s in result.samples if s.ok), key=lambda a: a[0])
    moves = [(t - result.started, v) for t, v in watch.changes]
    bounds = [e["started"] for e in events[1:]] + [float("inf")]
    for event, until in zip(events, bounds, strict=True):
        window = [(t, v) for t, v in answers if event["started"] <= t < until]
        new = [t for t, v in window if v == event["to_version"]]
        moved = [t for t, v in moves if v == event["to_version"] and event["started"] <= t < until]
        event["alias_moved"] = moved[0] if moved else None
        for name, since in (("completion", event["completed"]), ("alias", event["alias_moved"])):
            stale = [t for t, v in window if v != event["to_version"] and since is not None and t >= since]
            # From `since` until every answer comes from the new version (0: none stale after it).
            event[f"switch_after_{name}_s"] = (None if not new or since is None
                                               else max(0.0, stale[-1] - since) if stale else 0.0)
            event[f"stale_after_{name}"] = len(stale)
        event["first_new"] = new[0] if new else None
    summary = with_cpu(result.summary(), server_cpu, machine)
    # The ml-platform commands are this process's children: their CPU is theirs, not other processes'.
    summary["other_cpu_s"] = max(0.0, summary["other_cpu_s"] - cli_cpu)
    summary["other_cpu_share"] = summary["other_cpu_s"] / (summary["elapsed_s"] or float("nan"))
    return {**summary, "cli_cpu_s": cli_cpu, "events": events, "alias_changes": moves,
            "versions_by_second": versions_by_second(answers)}


def versions_by_second(answers: list[tuple[float, str]]) -> list[tuple[int, int, dict[str, int]]]:
    """(first second, last second, {version: answers}): consecutive seconds answered by one version only
    are merged; a second with mixed versions stands alone."""
    seconds: dict[int, dict[str, int]] = {}
    for t, v in answers:
        bucket = seconds.setdefault(int(t), {})
        bucket[str(v)] = bucket.get(str(v), 0) + 1
    spans: list[tuple[int, int, dict[str, int]]] = []
    for second, counts in sorted(seconds.items()):
        if spans and len(counts) == 1 and spans[-1][2].keys() == counts.keys():
            first, _, total = spans[-1]
            spans[-1] = (first, second, {k: total[k] + counts[k] for k in counts})
        else:
            spans.append((second, second, counts))
    return spans


# --- output ----------------------------------------------------------------------------------------------------


def _ms(summary: dict, key: str) -> str:
    value = summary[f"{key}_ms"]
    return (">" if summary[f"{key}_lower_bound"] else "") + (f"{value:.1f}" if value < 10_000 else f"{value:,.0f}")


def _cores(s: dict) -> str:
    """Average cores used over the run by the client, the server and every other process."""
    return f"{s['client_cpu_share']:>8.2f}{s['server_cpu_share']:>8.2f}{s['other_cpu_share']:>8.2f}"


CPU_HEADER = f"{'client':>8}{'server':>8}{'others':>8}"
CPU_NOTE = ("  client / server / others: the cores each used on average (others: every other process "
            "on the machine)")


def ordered(results: dict) -> list[tuple[str, dict]]:
    """The baseline first, then ours, then the floor."""
    return sorted(results.items(), key=lambda item: [BASELINE, OURS, FLOOR].index(item[0]))


def render_closed(results: dict) -> list[str]:
    lines = [f"(A) closed loop: {CONNECTIONS} connections, single-row POST /invocations back to back",
             f"  {'':34}{'':45}{'CPU cores used':^24}",
             f"  {'server':34}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'failed':>9}{CPU_HEADER}"]
    for name, r in ordered(results):
        s = r["closed"]
        label = name + (" (baseline)" if name == BASELINE else "")
        lines.append(f"  {label:34}{s['throughput_rps']:>9.1f}{_ms(s, 'p50'):>9}{_ms(s, 'p99'):>9}{_ms(s, 'max'):>9}"
                     f"{s['failed']:>9}{_cores(s)}")
    lines.append(CPU_NOTE)
    if OURS in results and BASELINE in results:
        ours, base = results[OURS]["closed"], results[BASELINE]["closed"]
        ratio = ours["throughput_rps"] / base["throughput_rps"] if base["throughput_rps"] else float("inf")
        verdict = "MET" if ratio >= TARGET_THROUGHPUT_RATIO else "NOT MET"
        lines.append(f"  ratio: throughput {OURS} / {BASELINE} = {ratio:.1f}x "
                     f"(target >= {TARGET_THROUGHPUT_RATIO:.0f}x: {verdict})")
        lines.append(f"  ratio: p99 {BASELINE} / {OURS} = {base['p99_ms'] / ours['p99_ms']:.1f}x")
    return lines


def render_steady(results: dict) -> list[str]:
    lines = [f"(B) open loop: a steady {STEADY_RATE:.0f} req/s (latency from each request's due time), "
             f"{CONNECTIONS} connections",
             f"  {'':34}{'':72}{'CPU cores used':^24}",
             f"  {'server':34}{'due':>7}{'ok':>7}{'failed':>7}{'lost':>6}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
             f"{'max ms':>9}{'lag p99':>10}{CPU_HEADER}"]
    for name, r in ordered(results):
        s = r["steady"]
        label = name + (" (baseline)" if name == BASELINE else "")
        lines.append(f"  {label:34}{s['requests']:>7}{s['ok']:>7}{s['failed']:>7}{s['unanswered']:>6}"
                     f"{s['throughput_rps']:>8.1f}{_ms(s, 'p50'):>9}{_ms(s, 'p99'):>9}{_ms(s, 'max'):>9}"
                     f"{s['send_lag_p99_ms']:>10.1f}{_cores(s)}")
    lines.append(CPU_NOTE)
    lines.append("  lost = not answered by 5 s after the timetable ended (its latency is then a lower bound, '>'); "
                 "lag = how late the client itself sent")
    if OURS in results:
        ours = results[OURS]["steady"]
        met = ours["p99_ms"] <= TARGET_P99_MS and not ours["p99_lower_bound"] and not ours["failed"] \
            and not ours["unanswered"]
        lines.append(f"  target: p99 <= {TARGET_P99_MS:.0f} ms at {STEADY_RATE:.0f} req/s with no failures: "
                     f"{'MET' if met else 'NOT MET'} ({_ms(ours, 'p99')} ms)")
        if BASELINE in results:
            base = results[BASELINE]["steady"]
            bound = ">=" if base["p99_lower_bound"] else ""
            lines.append(f"  ratio: p99 {BASELINE} / {OURS} = {bound}{base['p99_ms'] / ours['p99_ms']:.1f}x")
    return lines


def render_rollback(r: dict) -> list[str]:
    def at(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    def took(value: float | None) -> str:
        return "never" if value is None else f"{value:.2f} s"

    lines = [f"(C) rollback under load: {OURS}, a steady {r['rate']:.0f} req/s to POST /predict for "
             f"{r['seconds']:.0f} s, {CONNECTIONS} connections",
             f"  requests {r['requests']}, ok {r['ok']}, failed {r['failed']}, lost {r['unanswered']}"
             + (f" ({r['errors']})" if r["errors"] else ""),
             f"  latency from due time: p50 {_ms(r, 'p50')} ms, p99 {_ms(r, 'p99')} ms, max {_ms(r, 'max')} ms; "
             f"client lag p99 {r['send_lag_p99_ms']:.1f} ms",
             f"  CPU cores used on average: client {r['client_cpu_share']:.2f}, server {r['server_cpu_share']:.2f}, "
             f"others {r['other_cpu_share']:.2f}; the two ml-platform commands together {r['cli_cpu_s']:.1f} CPU s",
             f"  {'':44}{'seconds into the run':^40}{'all answers new':^22}",
             f"  {'command':44}{'started':>9}{'alias':>8}{'1st new':>9}{'returned':>10}{'exit':>6}"
             f"{'after cmd':>11}{'after alias':>12}"]
    for e in r["events"]:
        lines.append(f"  {e['command'][:42]:44}{at(e['started']):>9}{at(e['alias_moved']):>8}{at(e['first_new']):>9}"
                     f"{at(e['completed']):>10}{e['exit']:>6}{took(e['switch_after_completion_s']):>11}"
                     f"{took(e['switch_after_alias_s']):>12}")
    lines.append("  alias: when the registry's champion alias changed (read from MLflow's store every 20 ms); "
                 "1st new: the first answer from the command's target version; all answers new: the time from the "
                 "command's return (or the alias change) until every answer comes from the new version")
    spans = " ".join((f"{a}s" if a == b else f"{a}–{b}s") + ":" + "/".join(f"v{v}×{n}" for v, n in sorted(c.items()))
                     for a, b, c in r["versions_by_second"])
    lines.append(f"  versions answering, by second: {spans}")
    switches = [e["switch_after_completion_s"] for e in r["events"]]
    ok_switch = all(s is not None and s < TARGET_SWITCH_S for s in switches) and all(e["exit"] == 0 for e in r["events"])
    failed = r["failed"] + r["unanswered"]
    lines.append(f"  target: 0 failed requests: {'MET' if failed == 0 else 'NOT MET'} "
                 f"({r['failed']} failed + {r['unanswered']} unanswered after 30 s); "
                 f"every answer from the new version < {TARGET_SWITCH_S:.0f} s after the command returned: "
                 f"{'MET' if ok_switch else 'NOT MET'} ({', '.join(took(s) for s in switches)}; "
                 f"after the alias changed: {', '.join(took(e['switch_after_alias_s']) for e in r['events'])})")
    return lines


def client_note(results: dict, rollback: dict | None) -> str:
    runs = [s for r in results.values() for s in r.values()] + ([rollback] if rollback else [])
    if not runs:
        return ""
    shares = [s["client_cpu_share"] for s in runs]
    note = (f"note: the load generator (aiohttp on uvloop, one Python process) shares the {os.cpu_count()} cores "
            f"with the server; it used {min(shares):.2f}–{max(shares):.2f} of one core in these runs.")
    if FLOOR in results:
        floor = results[FLOOR]["closed"]
        note += (f" Against the no-model app it drove {floor['throughput_rps']:.0f} req/s (p99 "
                 f"{floor['p99_ms']:.1f} ms) with {CONNECTIONS} connections: a server measured near that is "
                 "limited by the client and the machine, not by itself.")
    others = max(s["other_cpu_share"] for s in runs)
    if others > 0.25:
        note += (f"\nwarning: other processes used up to {others:.2f} cores during the measurements (the 'others' "
                 "column): the machine was not quiet, and every number here is worse than the server's own. "
                 "Run again when it is.")
    return note


# --- the driver ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="5 s per measurement (4 s phases in the rollback section): a smoke run")
    parser.add_argument("--seconds", type=float, help=f"seconds per measurement (default {SECONDS:.0f}; "
                        f"the rollback section's phases take half of it, default {ROLLBACK_PHASE_S:.0f})")
    parser.add_argument("--home", type=Path, help="an existing ML_PLATFORM_HOME with a champion and a previous "
                        "champion (e.g. a --keep'd one); default: a fresh one, set up by daily lifecycle runs")
    parser.add_argument("--config", type=Path, help="with --home: its config (default: HOME/bench-serving.yaml)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home and the servers' logs")
    parser.add_argument("--skip-ours", action="store_true", help="measure the baseline only")
    args = parser.parse_args(argv)

    seconds = args.seconds or (5.0 if args.quick else SECONDS)
    rollback_phase_s = args.seconds / 2 if args.seconds else (4.0 if args.quick else ROLLBACK_PHASE_S)
    warmup_s = 2.0 if args.quick else 5.0
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    if args.home:
        home = args.home.resolve()
        config = (args.config or home / "bench-serving.yaml").resolve()
    else:
        home = workdir / "home"
        home.mkdir()
        config = prepare_home(home)
    env = platform_env(home, config)
    out: dict = {"benchmark": "serving", "home": str(home), "seconds": seconds, "connections": CONNECTIONS,
                 "cpus": os.cpu_count(), "python": sys.version.split()[0], "results": {}, "skipped": {}}
    try:
        status = model_status(env)
        model = status["model"]
        champion = status["champion"]["version"] if status["champion"] else None
        previous = status["previous_champion"]
        if champion is None:
            raise RuntimeError(f"{home}: model {model} has no champion; nothing to serve")
        columns = signature_inputs(env, model)
        names = [n for n, _ in columns]
        rows = sample_rows(home, columns, SAMPLE_ROWS)
        bodies = [invocation_body([r], names) for r in rows]
        out.update(model=model, champion=champion, previous_champion=previous, request_rows=len(rows),
                   body_bytes=statistics.median(len(b) for b in bodies))
        print(f"serving benchmark: model {model} version {champion} (champion), single-row requests "
              f"({len(rows):,} distinct feature-table rows, {out['body_bytes']:.0f}-byte bodies), "
              f"{seconds:.0f} s per measurement, {os.cpu_count()} CPUs", flush=True)

        why_not = "--skip-ours" if args.skip_ours else ours_available()
        results: dict[str, dict] = {}
        check_body = invocation_body(rows[:200], names)
        reference: list | None = None

        log(f"{FLOOR}: starting …")
        floor = start_floor(workdir)
        try:
            floor.wait_ready()
            results[FLOOR] = bench_server(floor, bodies, seconds, warmup_s)
        finally:
            floor.stop()

        log(f"{BASELINE}: starting …")
        mlflow = start_mlflow(home, model, workdir)
        try:
            ready = mlflow.wait_ready()
            out["baseline_setup"] = mlflow_defaults(mlflow)
            out["baseline_ready_s"] = ready
            print(f"baseline: {out['baseline_setup']}; ready after {ready:.1f} s", flush=True)
            status_code, payload = http("POST", mlflow.base + "/invocations", check_body)
            reference = json.loads(payload)["predictions"] if status_code == 200 else None
            results[BASELINE] = bench_server(mlflow, bodies, seconds, warmup_s)
        finally:
            mlflow.stop()

        ours_run = server = None
        if not why_not:
            log(f"{OURS}: starting …")
            server = start_ours(home, config, workdir)
            try:
                ready = server.wait_ready()
            except RuntimeError as exc:  # work in progress that does not start yet: measure what we can
                server.stop()
                server, why_not = None, f"it did not start: {exc}"
        if why_not:
            out["skipped"][OURS] = why_not
            print(f"skipped: {OURS} (sections A and B for it, and C): {why_not}", flush=True)
        if server is not None:
            try:
                _, version_json = http("GET", server.base + "/version")
                served = json.loads(version_json).get("champion", {}).get("version")
                out["ours_ready_s"], out["ours_processes"] = ready, server.processes()
                print(f"{OURS}: ready after {ready:.1f} s, serving version {served}; processes: "
                      f"{' | '.join(server.processes())}", flush=True)
                status_code, payload = http("POST", server.base + "/invocations", check_body)
                mine = json.loads(payload).get("predictions") if status_code == 200 else f"HTTP {status_code}"
                out["same_predictions"] = {"rows": 200, "equal": mine == reference, "served_version": served}
                print(f"same model: both servers' predictions for the same 200 rows are "
                      f"{'EQUAL' if mine == reference else 'DIFFERENT'}; both serve version {served}"
                      + ("" if str(served) == str(champion) else f" (registry champion is {champion}!)"), flush=True)
                results[OURS] = bench_server(server, bodies, seconds, warmup_s)
                if previous is None:
                    out["skipped"]["rollback"] = "no previous champion to roll back to"
                else:
                    time.sleep(2)
                    log(f"  (C) rollback under load, {ROLLBACK_RATE:.0f} req/s …")
                    ours_run = rollback_under_load(server, env, home, model, rows, champion, previous,
                                                   rollback_phase_s)
            finally:
                server.stop()
                if model_status(env)["champion"]["version"] != champion:  # leave the home as we found it
                    cli(["rollback", "--to", champion, "--reason", "bench: restore the champion"], env, check=False)
        out["results"], out["rollback"] = results, ours_run

        print()
        print("\n".join(render_closed(results)))
        print()
        print("\n".join(render_steady(results)))
        print()
        if ours_run:
            print("\n".join(render_rollback(ours_run)))
        else:
            print(f"(C) rollback under load: skipped ({out['skipped'].get(OURS) or out['skipped'].get('rollback')})")
        print()
        print(client_note(results, ours_run))
    finally:
        if args.keep:
            print(f"kept: home {home}, server logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"serving-{stamp}.json"
    path.write_text(json.dumps({**out, "created_at": stamp}, indent=2, default=str))
    print(f"results: {path.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
