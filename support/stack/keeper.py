"""The process that owns a private stack: starts it, keeps it, removes it.

Why a separate process: nbval ends a kernel by SIGKILLing its whole process
group, so nothing inside the kernel can clean up after itself, and Jupyter's
"Interrupt kernel" sends SIGINT to that group, which would stop servers
started there. The keeper runs in a session of its own, so neither signal
reaches it or its servers. It learns that its kernel is gone when the pipe on
its standard input closes (the kernel's end is closed by the operating
system however the kernel dies), then stops the servers and deletes the
stack's directory. The servers also carry a parent-death signal in case the
keeper itself is killed.

Protocol: the keeper prints one JSON line on standard output, either
{"ok": true, ...the stack's addresses...} or {"ok": false, "error": "..."}.
With --until parent-exits it stops at end of file on standard input; with
--until stopped (used by `python -m support up`) it runs until SIGTERM,
which stops it cleanly in both modes. While it waits it prepares a data
directory for the next stack (data_dirs.py).

Standard library only: it must start fast and run under a system Python.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from pathlib import Path

from .binaries import find_binaries
from .data_dirs import DataDirCache
from .defaults import DATABASE, ROLE
from .pgbouncer_server import RunningPgBouncer, start_pgbouncer
from .postgres_server import RunningPostgres, start_postgres
from .server_process import server_account, stop_process

_PID_FILE = "keeper.pid"
_YOUNG_DIRECTORY = 60.0  # seconds: a stack directory may still be getting its pid file


def work_dir() -> Path:
    """Where stacks and the template live: per user, in the temp folder.

    Run as root, the servers run as another account, which must be able to
    enter every folder above the work directory; a private TMPDIR (mode
    0700, as pytest and some desktops make them) would stop initdb with
    "Permission denied", so then /tmp is used instead.
    """
    base = Path(tempfile.gettempdir())
    if os.geteuid() == 0 and not _everyone_can_enter(base):
        base = Path("/tmp")
    path = base / f"five-tables-{os.geteuid()}"
    path.mkdir(mode=0o755, exist_ok=True)
    return path


def _everyone_can_enter(directory: Path) -> bool:
    return all(os.stat(folder).st_mode & stat.S_IXOTH for folder in (directory.resolve(), *directory.resolve().parents))


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_abandoned_stacks(base: Path) -> None:
    """Delete stack directories whose keeper is dead (killed before cleanup)."""
    for stack_dir in base.glob("stack-*"):
        pid_file = stack_dir / _PID_FILE
        try:
            pid = int(pid_file.read_text())
        except (FileNotFoundError, ValueError):
            if time.time() - stack_dir.stat().st_mtime < _YOUNG_DIRECTORY:
                continue
            pid = None
        if pid is None or not pid_alive(pid):
            shutil.rmtree(stack_dir, ignore_errors=True)


class _Stop(BaseException):
    """Raised from the SIGTERM handler to leave the wait and clean up."""


def _on_sigterm(signum, frame):
    raise _Stop()


def _urls(postgres: RunningPostgres, pgbouncer: RunningPgBouncer) -> dict[str, str]:
    auth = f"{ROLE}:{postgres.password}"
    return {
        "database_url": f"postgresql://{auth}@127.0.0.1:{postgres.port}/{DATABASE}",
        "pgbouncer_url": f"postgresql://{auth}@127.0.0.1:{pgbouncer.port}/{DATABASE}",
        "admin_url": f"postgresql://{auth}@127.0.0.1:{pgbouncer.port}/pgbouncer",
    }


def _stop_when_stdin_closes() -> None:
    """Turn end of file on stdin (the kernel is gone) into our own SIGTERM.

    A thread waits for it, so the main thread stays free to make the spare
    data directory and is interrupted by the signal wherever it is.
    """

    def watch() -> None:
        sys.stdin.buffer.read()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="stdin-watch").start()


def run(
    until: str,
    postgres_settings: dict[str, str],
    pgbouncer_settings: dict[str, str],
    pgbouncer_port: int | None,
    report,
) -> None:
    """Start the stack, report it, wait for the end, clean up."""
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    base = work_dir()
    remove_abandoned_stacks(base)
    stack_dir = Path(tempfile.mkdtemp(prefix="stack-", dir=base))
    (stack_dir / _PID_FILE).write_text(str(os.getpid()))
    servers = []
    try:
        binaries = find_binaries()
        account = server_account()
        account.chown(stack_dir)
        cache = DataDirCache(base, binaries, account)
        data_source = cache.provide(stack_dir / "data")
        postgres = start_postgres(stack_dir, stack_dir / "data", binaries, account, postgres_settings)
        servers.append((postgres.process, signal.SIGQUIT))
        pgbouncer = start_pgbouncer(
            stack_dir,
            binaries,
            account,
            postgres_port=postgres.port,
            password=postgres.password,
            settings=pgbouncer_settings,
            first_port=pgbouncer_port,
        )
        servers.insert(0, (pgbouncer.process, signal.SIGTERM))
        report(
            {
                "ok": True,
                **_urls(postgres, pgbouncer),
                "directory": str(stack_dir),
                "keeper_pid": os.getpid(),
                "postgres_pid": postgres.process.pid,
                "pgbouncer_pid": pgbouncer.process.pid,
                "server_account": account.name,
                "data_dir_from": data_source,
                "start_seconds": round(time.monotonic() - started, 3),
            }
        )
        if until == "parent-exits":
            _stop_when_stdin_closes()
        try:
            cache.replenish()  # for the next kernel, while this one is idle
        except Exception:
            pass  # a cache that could not be made only slows the next start down
        while True:
            signal.pause()
    except _Stop:
        pass
    except Exception as exc:  # reported to the kernel, which raises it there
        report({"ok": False, "error": str(exc), "kind": type(exc).__name__})
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for process, sig in servers:
            stop_process(process, sig, timeout=3)
        shutil.rmtree(stack_dir, ignore_errors=True)


def _reporter():
    """Write the single JSON line, then let go of standard output."""

    def report(message: dict) -> None:
        try:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()
            os.close(sys.stdout.fileno())
        except OSError:
            pass  # nobody is reading any more; the cleanup still runs

    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--until", choices=("parent-exits", "stopped"), default="parent-exits")
    parser.add_argument("--postgres-settings", default="{}", help="JSON object of -c settings")
    parser.add_argument("--pgbouncer-settings", default="{}", help="JSON object of pgbouncer.ini settings")
    parser.add_argument(
        "--pgbouncer-port", type=int, default=None, help="try this port first (tests use it to provoke a collision)"
    )
    args = parser.parse_args(argv)
    run(
        args.until,
        json.loads(args.postgres_settings),
        json.loads(args.pgbouncer_settings),
        args.pgbouncer_port,
        _reporter(),
    )


if __name__ == "__main__":
    main()
