"""The process that owns a private stack: starts it, keeps it, removes it.

Why a separate process: nbval ends a kernel by SIGKILLing its whole process
group, so nothing inside the kernel can clean up after itself, and Jupyter's
"Interrupt kernel" sends SIGINT to that group, which would stop servers
started there. The keeper runs in a session of its own, so neither signal
reaches it or its servers.

What ends a stack, and how the keeper notices:

* its kernel goes away: the pipe on the keeper's standard input closes (the
  operating system closes the kernel's end however the kernel dies), and,
  as a second check that needs no pipe, the keeper's parent pid changes;
  both work on Linux and macOS alike;
* one of its servers exits (a learner killed the postmaster, the machine
  ran out of memory): a watch thread sees it within a tenth of a second,
  the keeper stops the other server, deletes the folder and says why on
  its standard output, so that ``get_stack()`` can tell the learner and
  start a new stack instead of handing back a dead one;
* the keeper itself is killed: on Linux the servers' parent-death signal
  stops them; elsewhere the watchdog (watchdog.py) does.

Protocol: the keeper prints one JSON line on standard output, either
{"ok": true, ...the stack's addresses...} or {"ok": false, "error": "..."}
(every failure, the work directory's included, is reported this way, with
the cause on the error's first line). If the stack later ends because a
server exited, one more line follows: {"event": "ended", "reason": "..."},
and the exit code is 3. Until the stack is up, standard error goes to the
caller (which shows it if the keeper dies without a report); from then on
to keeper.log in the stack's folder. With --until parent-exits it stops
at end of file on standard input; with --until stopped (used by `python -m
support up`) it runs until SIGTERM, which stops it cleanly in both modes.
While it waits it prepares a data directory for the next stack
(data_dirs.py).

Standard library only: it must start fast and run under a system Python.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .binaries import find_binaries
from .cleanup import KEEPER_FILE, LEGACY_PID_FILE, remove_abandoned_stacks
from .data_dirs import DataDirCache
from .defaults import DATABASE, ROLE
from .pgbouncer_server import RunningPgBouncer, start_pgbouncer
from .postgres_server import RunningPostgres, start_postgres
from .server_process import ServerAccount, parent_death_signal_available, server_account, stop_process, telling_line
from .work_dir import open_for_append, work_dir, write_private_file

#: Exit code of a keeper whose stack ended because a server exited.
SERVER_EXITED = 3
_WATCH_INTERVAL = 0.1  # seconds between looks at the servers and the parent


class _Stop(BaseException):
    """Raised from the SIGTERM handler to leave the wait and clean up."""


def _on_sigterm(signum, frame):
    raise _Stop()


@dataclass
class _Server:
    name: str
    process: subprocess.Popen
    stop_signal: signal.Signals
    log_path: Path


class _Ending:
    """Why the stack is ending, if not because it was asked to; shared with the watch thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reason: str | None = None
        self.stopping = False

    def server_exited(self, reason: str) -> bool:
        with self._lock:
            if self.stopping or self.reason is not None:
                return False
            self.reason = reason
            return True

    def begin_stopping(self) -> None:
        with self._lock:
            self.stopping = True


def _urls(postgres: RunningPostgres, pgbouncer: RunningPgBouncer) -> dict[str, str]:
    auth = f"{ROLE}:{postgres.password}"
    return {
        "database_url": f"postgresql://{auth}@127.0.0.1:{postgres.port}/{DATABASE}",
        "pgbouncer_url": f"postgresql://{auth}@127.0.0.1:{pgbouncer.port}/{DATABASE}",
        "admin_url": f"postgresql://{auth}@127.0.0.1:{pgbouncer.port}/pgbouncer",
    }


def _exit_reason(server: _Server) -> str:
    """'PostgreSQL of this stack exited (killed by SIGKILL): <last telling log line>'."""
    code = server.process.returncode
    how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
    try:
        last = telling_line(server.log_path.read_text(errors="replace")[-4000:], fallback=False)
    except OSError:
        last = ""
    return f"{server.name} of this stack exited ({how})" + (f"; its log ends: {last}" if last else "")


def _watch(servers: list[_Server], ending: _Ending, parent_pid: int | None) -> None:
    """A thread that turns a dead server or a dead parent into our own SIGTERM.

    Polling costs a few microseconds a tenth of a second; it works the same
    on every system and needs no SIGCHLD handling in the main thread.
    """

    def watch() -> None:
        while True:
            time.sleep(_WATCH_INTERVAL)
            for server in servers:
                if server.process.poll() is not None:
                    if ending.server_exited(_exit_reason(server)):
                        os.kill(os.getpid(), signal.SIGTERM)
                    return
            if parent_pid is not None and os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, daemon=True, name="server-watch").start()


def _stop_when_stdin_closes() -> None:
    """Turn end of file on stdin (the kernel is gone) into our own SIGTERM.

    A thread waits for it, so the main thread stays free to make the spare
    data directory and is interrupted by the signal wherever it is.
    """

    def watch() -> None:
        # os.read on the descriptor, not sys.stdin: a daemon thread blocked
        # inside the buffered reader's lock aborts the interpreter at exit.
        while os.read(0, 65536):
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="stdin-watch").start()


def _make_stack_dir(base: Path, token: str, until: str) -> Path:
    """The stack's own folder, ours (mode 0700; 0711 as root so the servers can pass through)."""
    stack_dir = Path(tempfile.mkdtemp(prefix="stack-", dir=base))
    if os.geteuid() == 0:
        os.chmod(stack_dir, 0o711)
    record = {"pid": os.getpid(), "token": token, "parent_pid": os.getppid(), "until": until}
    write_private_file(stack_dir / KEEPER_FILE, json.dumps(record))
    # Keepers of the previous version, which may still run from another
    # checkout on this machine, read only this file, and would otherwise take
    # this stack for abandoned after a minute and delete it.
    write_private_file(stack_dir / LEGACY_PID_FILE, str(os.getpid()))
    return stack_dir


def _start_watchdog(stack_dir: Path, account: ServerAccount) -> subprocess.Popen | None:
    """Where servers do not die with their keeper by themselves, a process that stops them (watchdog.py)."""
    if parent_death_signal_available():
        return None
    uids = {os.geteuid(), account.uid if account.uid is not None else os.geteuid()}
    argv = [sys.executable, "-m", "support.stack.watchdog", "--stack-dir", str(stack_dir)]
    for uid in sorted(uids):
        argv += ["--server-uid", str(uid)]
    # Its stdin is a pipe whose writing end only this process holds; the
    # servers, started later, do not inherit it (close_fds).
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[2],
    )


def _redirect_stderr(path: Path) -> None:
    """From now on our standard error goes to the stack's keeper.log, not to the caller's pipe."""
    fd = open_for_append(path)
    os.dup2(fd, 2)
    os.close(fd)


def run(
    until: str,
    postgres_settings: dict[str, str],
    pgbouncer_settings: dict[str, str],
    pgbouncer_port: int | None,
    report,
    token: str = "",
) -> int:
    """Start the stack, report it, wait for the end, clean up; return the exit code."""
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    parent_pid = os.getppid() if until == "parent-exits" else None
    servers: list[_Server] = []
    ending = _Ending()
    stack_dir: Path | None = None
    watchdog = None
    try:
        base = work_dir()
        account = server_account()
        server_uids = {os.geteuid()} | ({account.uid} if account.uid is not None else set())
        remove_abandoned_stacks(base, server_uids)
        stack_dir = _make_stack_dir(base, token, until)
        watchdog = _start_watchdog(stack_dir, account)
        binaries = find_binaries()
        cache = DataDirCache(base, binaries, account)
        data_source = cache.provide(stack_dir / "data")
        postgres = start_postgres(stack_dir, stack_dir / "data", binaries, account, postgres_settings)
        servers.append(_Server("PostgreSQL", postgres.process, signal.SIGQUIT, postgres.log_path))
        pgbouncer = start_pgbouncer(
            stack_dir,
            binaries,
            account,
            postgres_port=postgres.port,
            password=postgres.password,
            settings=pgbouncer_settings,
            first_port=pgbouncer_port,
        )
        servers.insert(0, _Server("PgBouncer", pgbouncer.process, signal.SIGTERM, pgbouncer.log_path))
        _redirect_stderr(stack_dir / "keeper.log")
        report(
            {
                "ok": True,
                **_urls(postgres, pgbouncer),
                "directory": str(stack_dir),
                "keeper_pid": os.getpid(),
                "keeper_token": token,
                "postgres_pid": postgres.process.pid,
                "pgbouncer_pid": pgbouncer.process.pid,
                "server_account": account.name,
                "watchdog_pid": watchdog.pid if watchdog else None,
                "data_dir_from": data_source,
                "start_seconds": round(time.monotonic() - started, 3),
            }
        )
        _watch(servers, ending, parent_pid)
        if until == "parent-exits":
            _stop_when_stdin_closes()
        try:
            cache.replenish()  # for the next kernel, while this one is idle
        except Exception:
            traceback.print_exc()  # to keeper.log: a missing cache only slows the next start down
        while True:
            signal.pause()
    except _Stop:
        pass
    except Exception as exc:  # reported to the kernel, which raises it there
        text = str(exc).strip() or type(exc).__name__
        report({"ok": False, "error": text.splitlines()[0], "detail": text, "kind": type(exc).__name__})
    finally:
        ending.begin_stopping()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for server in servers:
            stop_process(server.process, server.stop_signal, timeout=3)
        if stack_dir is not None:
            shutil.rmtree(stack_dir, ignore_errors=True)
        if watchdog is not None and watchdog.stdin is not None:
            watchdog.stdin.close()  # it finds nothing left to do, and exits
    if ending.reason is not None:
        report({"event": "ended", "reason": ending.reason})
        return SERVER_EXITED
    return 0


def _reporter():
    """Write one JSON line per message on standard output."""

    def report(message: dict) -> None:
        try:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()
        except OSError:
            pass  # nobody is reading any more; the cleanup still runs

    return report


def main(argv: list[str] | None = None) -> int:
    report = _reporter()
    try:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--until", choices=("parent-exits", "stopped"), default="parent-exits")
        parser.add_argument("--postgres-settings", default="{}", help="JSON object of -c settings")
        parser.add_argument("--pgbouncer-settings", default="{}", help="JSON object of pgbouncer.ini settings")
        parser.add_argument(
            "--pgbouncer-port", type=int, default=None, help="try this port first (tests use it to provoke a collision)"
        )
        parser.add_argument("--token", default="", help="names this keeper in ps, so a pid can be checked")
        args = parser.parse_args(argv)
        postgres_settings = json.loads(args.postgres_settings)
        pgbouncer_settings = json.loads(args.pgbouncer_settings)
    except (SystemExit, ValueError) as exc:
        report({"ok": False, "error": f"The stack keeper was started with bad arguments: {exc}"})
        return 2
    return run(args.until, postgres_settings, pgbouncer_settings, args.pgbouncer_port, report, args.token)


if __name__ == "__main__":
    sys.exit(main())
