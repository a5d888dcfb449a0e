"""A dbt process started ahead of time, so that a run's dbt build does not wait for dbt to start.

Starting dbt costs about 4 s before it does anything: the interpreter, dbt-core's imports (~2-3 s) and the
adapter's. A run that builds features starts a *warm* dbt here when it begins (`warm_dbt`); it imports dbt
while ingestion and the contract checks run, then waits. dagster-dbt is given a small launcher as its dbt
executable (`FeatureDbtCli`, defs/features/resources.py). The launcher hands the warm process its command
line, working directory, environment and its own stdin/stdout/stderr (passed over a Unix socket), so dbt
writes its JSON log straight into dagster-dbt's pipe, and exits with dbt's exit code. To dagster-dbt it is
the dbt process; dbt itself runs exactly as `bin/dbt` would run it (`cli()`), once.

Nothing depends on it: if the warm process is not there (not started, died, already used), not ready yet
(the launcher waits), or fails before it takes the command, the launcher runs dbt itself (`execv`).
An interrupt or termination of the launcher is passed on to the warm process; a warm process that loses
its launcher or its parent exits.

This file runs in two interpreters: the platform's (`warm_dbt`) and, as a script, dbt's own virtualenv
(`serve`). So it imports nothing but the standard library.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The launcher's path while a warm dbt waits for this process's run; read by FeatureDbtCli.
LAUNCHER_ENV = "ML_PLATFORM_WARM_DBT"
HEADER = struct.Struct("!Q")  # the length of the request that follows it
# What a build imports beyond dbt.cli.main (measured as the modules a build adds to sys.modules).
PRELOAD = ("dbt.cli.main", "dbt.task.build", "dbt.compilation", "dbt.graph", "dbt.parser.manifest",
           "dbt.adapters.factory", "sqlparse", "daff", "babel.dates", "multiprocessing.pool")
IDLE_TIMEOUT_S = 900.0  # a warm dbt nobody uses exits on its own

LAUNCHER = '''#!{python} -IS
# dbt for dagster-dbt: runs the command in the warm dbt process waiting on {socket_path}, or dbt itself
# (ml_platform/warm_dbt.py).
import json, os, signal, socket, struct, sys

DBT = {dbt!r}


def run_dbt_itself():
    os.execv(DBT, [DBT, *sys.argv[1:]])


try:
    worker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    worker.connect({socket_path!r})
except OSError:
    run_dbt_itself()
request = json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}).encode()
try:
    socket.send_fds(worker, [struct.pack("!Q", len(request))], [0, 1, 2])
    worker.sendall(request)
    replies = worker.makefile("rb")
    pid = replies.readline()
except OSError:
    pid = b""
if not pid.strip():
    run_dbt_itself()  # the warm dbt ended before taking the command
for number in (signal.SIGINT, signal.SIGTERM):
    signal.signal(number, lambda n, _frame: os.kill(int(pid), n))
status = replies.readline()
if not status.strip():
    sys.stderr.write("ml_platform: the warm dbt process ended without an exit status\\n")
    sys.exit(1)
sys.exit(int(status))
'''


class WarmDbt:
    """A started warm dbt process and its launcher; `close` ends it if it is still waiting."""

    def __init__(self, process: subprocess.Popen, launcher: Path, workdir: Path) -> None:
        self.process, self.launcher, self.workdir = process, launcher, workdir

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def interpreter_of(dbt_executable: str) -> str | None:
    """The Python that runs `dbt_executable` when it is dbt-core's own console script (`#!<python>`, then
    `from dbt.cli.main import cli`), else None: the warm process runs that `cli`, so any other dbt (a wrapper,
    dbt Fusion) starts as usual."""
    try:
        with open(dbt_executable, "rb") as script:
            text = script.read(4096).decode(errors="replace")
    except OSError:
        return None
    first = text.partition("\n")[0]
    words = first[2:].split() if first.startswith("#!") else []
    if len(words) == 1 and "python" in Path(words[0]).name and "from dbt.cli.main import cli" in text:
        return words[0]
    return None


def start(dbt_executable: str, adapter: str) -> WarmDbt | None:
    """Start a warm dbt for `dbt_executable`, importing `adapter` (duckdb, postgres) too. None where that
    cannot work (dbt is not a Python script, no Unix sockets): dbt then starts as usual."""
    python = interpreter_of(dbt_executable)
    if python is None or not hasattr(socket, "send_fds"):
        return None
    # A short private folder: a Unix socket's path is limited to ~100 characters.
    workdir = Path(tempfile.mkdtemp(prefix="mlp-dbt-"))
    socket_path = workdir / "socket"
    launcher = workdir / "dbt"
    launcher.write_text(LAUNCHER.format(python=python, dbt=str(dbt_executable), socket_path=str(socket_path)))
    launcher.chmod(0o700)
    # The socket listens before the launcher can exist: a launcher that comes before dbt is imported waits.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with listener:
        listener.bind(str(socket_path))
        listener.listen(1)
        process = subprocess.Popen(
            [python, "-I", str(Path(__file__).resolve()), str(listener.fileno()), adapter, str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=[listener.fileno()],
        )
    return WarmDbt(process, launcher, workdir)


@contextmanager
def warm_dbt(dbt_executable: str, adapter: str) -> Iterator[WarmDbt | None]:
    """While the block runs, a warm dbt waits and LAUNCHER_ENV names its launcher; ended afterwards."""
    warm = start(dbt_executable, adapter)
    if warm is None:
        yield None
        return
    os.environ[LAUNCHER_ENV] = str(warm.launcher)
    try:
        yield warm
    finally:
        if os.environ.get(LAUNCHER_ENV) == str(warm.launcher):
            del os.environ[LAUNCHER_ENV]
        warm.close()


def current_launcher() -> str | None:
    """The launcher of the warm dbt waiting for this process's run, if there is one."""
    launcher = os.environ.get(LAUNCHER_ENV)
    return launcher if launcher and os.path.exists(launcher) else None


# --- the warm process (runs in dbt's virtualenv) -----------------------------------------------------------


def serve(listener_fd: int, adapter: str, parent_pid: int) -> int:
    """Import dbt, take one command from the listening socket `listener_fd`, run it."""
    listener = socket.socket(fileno=listener_fd)
    for module in (*PRELOAD, f"dbt.adapters.{adapter}"):
        try:
            __import__(module)
        except Exception:  # noqa: BLE001 - dbt reports a broken install itself when the command runs
            pass
    from dbt.cli.main import cli

    listener.settimeout(1.0)
    waited = 0.0
    while True:
        try:
            connection, _ = listener.accept()
            break
        except TimeoutError:
            waited += 1.0
            if waited >= IDLE_TIMEOUT_S or os.getppid() != parent_pid:
                return 0
    connection.settimeout(None)
    header, fds, _, _ = socket.recv_fds(connection, HEADER.size, 3)
    (size,) = HEADER.unpack(header)
    body = b""
    while len(body) < size:
        chunk = connection.recv(size - len(body))
        if not chunk:
            return 1
        body += chunk
    request = json.loads(body)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["dbt", *request["argv"]]
    connection.sendall(f"{os.getpid()}\n".encode())
    finished = threading.Event()
    threading.Thread(target=_exit_without_launcher, args=(connection, finished), daemon=True).start()

    try:
        cli.main(args=request["argv"], prog_name="dbt")  # as bin/dbt: exits with dbt's status
        status = 0
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except KeyboardInterrupt:
        status = 128 + signal.SIGINT
    sys.stdout.flush()
    sys.stderr.flush()
    finished.set()
    connection.sendall(f"{status}\n".encode())
    return 0


def _exit_without_launcher(connection: socket.socket, finished: threading.Event) -> None:
    """The launcher closes its end only when it ends; a launcher gone mid-build means nobody waits for dbt."""
    try:
        connection.recv(1)
    except OSError:
        pass
    if not finished.is_set():
        os._exit(1)


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
