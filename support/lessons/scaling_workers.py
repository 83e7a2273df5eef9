"""Running an app the way it is deployed: `uvicorn module:app --workers N`.

Notebooks usually serve their app as a task inside the kernel (app_server.py),
which is one process with one pool. In production an app runs in several
worker processes, and each imports the module on its own, so each builds its
own engine and its own pool. To show that for real, this module starts uvicorn
as a subprocess of the kernel:

* in the kernel's process group, so that whatever ends the kernel's group
  (nbval does, and Jupyter's "Interrupt kernel" reaches it too) ends the
  workers as well; with a parent-death signal on top (``setpriv
  --pdeathsig``), so the supervisor is told to stop even when only the
  kernel process is killed;
* with its output in a log file, never on the kernel's stderr: a failing
  worker would otherwise print a traceback per request into the notebook;
* ready when uvicorn has logged "Application startup complete." once per
  worker (each worker runs the app's lifespan startup), within a short
  timeout; if that does not happen, or a worker logs a traceback first (the
  supervisor would only restart it, again and again), the error carries the
  tail of the log, once.

``who_answers()`` sends requests at random times through one kept-alive
client and counts which worker answered each, so a notebook can measure how
unevenly the workers share the traffic.

``stop()`` sends SIGTERM to the supervisor, which stops its workers
gracefully (each runs its lifespan shutdown, where the app disposes of its
engine); whatever is still alive after the timeout is killed, by pid.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

from ..lab.app_server import KEEP_ALIVE_SECONDS
from ..lab.load import arrival_times
from ..lab.local_http import local_client
from ..stack.server_process import free_port

_HOST = "127.0.0.1"
_READY_LINE = "Application startup complete."
#: Lines that mean a worker failed to start. uvicorn's supervisor would keep
#: replacing a worker that dies, so waiting for the timeout would only repeat them.
_FAILURE_LINES = ("Traceback (most recent call last)", "Application startup failed", "Error loading ASGI app")
_PORT_TAKEN = "address already in use"
_PORT_ATTEMPTS = 3
_POLL_INTERVAL = 0.05
_STOP_POLL_INTERVAL = 0.02
_TAIL_LINES = 25


class WorkerStartError(RuntimeError):
    """The workers did not all start; the message ends with the tail of their log."""


class WorkerProcesses:
    """A running ``uvicorn APP --workers N`` started by ``start_workers()``."""

    def __init__(self, process: subprocess.Popen, *, app: str, workers: int, port: int, log_path: Path) -> None:
        self.process = process
        self.app = app
        self.workers = workers
        self.port = port
        self.log_path = log_path

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    @property
    def pid(self) -> int:
        """The supervisor's pid (the process uvicorn was started as)."""
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def worker_pids(self) -> list[int]:
        """Pids of the worker processes, the supervisor's children that serve the app.

        multiprocessing may start helper processes too (a resource tracker);
        workers are the ones started by ``multiprocessing.spawn``, which is
        how uvicorn starts them.
        """
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return []
        pids = []
        for child in children:
            try:
                cmdline = " ".join(child.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if "spawn_main" in cmdline and "resource_tracker" not in cmdline:
                pids.append(child.pid)
        return sorted(pids)

    def log_text(self) -> str:
        """Everything uvicorn and the workers wrote so far (stdout and stderr)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = _TAIL_LINES) -> str:
        return "\n".join(self.log_text().rstrip().splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the supervisor and its workers; returns within about 2 x `timeout`.

        SIGTERM first (graceful: workers finish their requests and run their
        lifespan shutdown). What is still alive after `timeout` gets SIGKILL,
        each process by its pid: the kernel shares their process group, so
        signalling the group would hit the kernel too.
        Returns the supervisor's exit code (None if it could not be reaped).
        """
        if self.process.poll() is not None:
            return self.process.returncode
        try:
            descendants = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        self.process.send_signal(signal.SIGTERM)
        alive = _wait_until_ended(self.process, descendants, timeout)
        for process in alive:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        _wait_until_ended(self.process, descendants, timeout)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def __repr__(self) -> str:
        state = "running" if self.running else f"stopped (exit code {self.process.returncode})"
        return f"<WorkerProcesses {self.app!r} x{self.workers} at {self.url}, {state}>"

    def __enter__(self) -> WorkerProcesses:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_workers(
    app: str,
    *,
    workers: int,
    app_dir: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    ready_timeout: float = 20.0,
    log_path: str | os.PathLike[str] | None = None,
) -> WorkerProcesses:
    """Run ``uvicorn APP --workers N`` on a free 127.0.0.1 port; return once all N started.

    `app` is "module:attribute" with the module in `app_dir` (e.g. a file the
    notebook wrote there). `env` adds variables for the workers, such as a
    database URL. Raises WorkerStartError, with the tail of the log, if the
    supervisor exits or fewer than `workers` workers finish their startup
    within `ready_timeout` seconds; nothing is left running then.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number of at least 1, got {workers!r}")
    if ":" not in app:
        raise ValueError(f"app must look like 'module:attribute', e.g. 'pool_app:app', got {app!r}")
    app_dir = Path(app_dir)
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="uvicorn-workers-", suffix=".log", dir=app_dir)
        os.close(handle)
        log_path = Path(name)
    log_path = Path(log_path)
    last_tail = ""
    for _ in range(_PORT_ATTEMPTS):
        served = _spawn(app, workers, app_dir, env or {}, log_path)
        outcome = _wait_until_ready(served, ready_timeout)
        if outcome == "ready":
            atexit.register(served.stop)
            return served
        served.stop(timeout=2.0)  # first, so the log is complete
        last_tail = served.log_tail()
        if _PORT_TAKEN not in served.log_text().lower():
            raise WorkerStartError(
                f"uvicorn {app} --workers {workers}: {outcome}. Last lines of its log ({log_path}):\n{last_tail}"
            )
    raise WorkerStartError(f"uvicorn {app} found no free port in {_PORT_ATTEMPTS} tries:\n{last_tail}")


def _spawn(app: str, workers: int, app_dir: Path, env: dict[str, str], log_path: Path) -> WorkerProcesses:
    port = free_port()  # uvicorn binds it a moment later
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--app-dir",
        str(app_dir),
        "--host",
        _HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--no-use-colors",
        "--log-level",
        "info",
        "--timeout-graceful-shutdown",
        "3",
        "--timeout-keep-alive",  # as for apps served in the kernel: clients let go first
        str(KEEP_ALIVE_SECONDS),
    ]
    setpriv = shutil.which("setpriv")
    if setpriv:
        # Exec'd in place: the supervisor gets SIGTERM if the kernel dies alone.
        argv = [setpriv, "--pdeathsig", "TERM", "--"] + argv
    with open(log_path, "w") as log:  # truncated: one log per start
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            cwd=app_dir,
        )  # no new session: the kernel's process group
    return WorkerProcesses(process, app=app, workers=workers, port=port, log_path=log_path)


def _wait_until_ready(served: WorkerProcesses, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log = served.log_text()
        started = log.count(_READY_LINE)
        if started >= served.workers:
            return "ready"
        if any(line in log for line in _FAILURE_LINES):
            return f"a worker failed to start ({started} of {served.workers} had started)"
        if served.process.poll() is not None:
            return f"the supervisor exited with code {served.process.returncode}"
        if time.monotonic() > deadline:
            return f"{started} of {served.workers} workers started within {timeout:g} s"
        time.sleep(_POLL_INTERVAL)


def _wait_until_ended(
    supervisor: subprocess.Popen, descendants: list[psutil.Process], timeout: float
) -> list[psutil.Process]:
    """Poll until the supervisor and its descendants have ended; return those still running.

    The supervisor is this process's child, so Popen reaps it and keeps its
    real exit code. A descendant counts as ended once it is a zombie: it has
    exited and only waits for its parent to collect it. That matters for
    multiprocessing's resource tracker, which outlives the supervisor by a
    moment and is then collected by init, sometimes seconds later;
    ``psutil.wait_procs`` would wait for that collection.
    """
    deadline = time.monotonic() + timeout
    while True:
        alive = [process for process in descendants if not _ended(process)]
        if supervisor.poll() is None:
            try:
                alive.append(psutil.Process(supervisor.pid))
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(_STOP_POLL_INTERVAL)


def _ended(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def who_answers(
    url: str, *, rate: float, duration: float, seed: int | None = None, timeout: float = 10.0
) -> Counter[int]:
    """Requests at random times (Poisson arrivals), counted by the worker that answered.

    The app's JSON answer must name its worker (``{"worker": os.getpid()}``).
    One HTTP client sends them all, keeping its connections alive as a
    load balancer or API gateway in front of the workers would: a kept-alive
    connection stays with the worker that accepted it. Requests that fail are
    counted under worker 0. Bounded: each request by ``timeout``, the run by
    ``duration`` + ``timeout``.
    """
    schedule = arrival_times(rate, duration, "poisson", seed)
    answers: Counter[int] = Counter()
    async with local_client(url, timeout=timeout) as client:
        started = time.perf_counter()

        async def one(due: float) -> None:
            await asyncio.sleep(max(0.0, started + due - time.perf_counter()))
            try:
                response = await client.get(url)
                answers[int(response.json()["worker"]) if response.status_code == 200 else 0] += 1
            except (httpx.HTTPError, ValueError, KeyError):
                answers[0] += 1

        async with asyncio.timeout(duration + timeout):
            await asyncio.gather(*(one(due) for due in schedule))
    return answers


def imbalance(answers: Counter[int], workers: int) -> float:
    """The busiest worker's share of the answers divided by the even share (1/workers): 1.0 is even."""
    served = {worker: count for worker, count in answers.items() if worker != 0}
    if workers < 1 or not served:
        raise ValueError(f"need answers from at least one of {workers} workers, got {dict(answers)}")
    return max(served.values()) / sum(served.values()) * workers
