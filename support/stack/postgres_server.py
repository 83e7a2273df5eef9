"""A private PostgreSQL server in a directory of its own.

The data directory comes ready-made (see data_dirs.py). The server is a
throwaway: fsync and full-page writes are off because the data directory is
deleted when the stack stops.
"""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .binaries import Binaries
from .defaults import DATABASE, ROLE
from .server_process import ServerAccount, free_port, run_as, spawn_server, stop_process, telling_line

# Settings for a server whose data does not need to survive a crash.
_THROWAWAY_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
}
_PORT_TAKEN = re.compile(r"could not (bind|create any TCP/IP sockets)|Address already in use")
_READY_TIMEOUT = 10.0
_PORT_ATTEMPTS = 5


@dataclass
class RunningPostgres:
    process: subprocess.Popen
    port: int
    password: str
    socket_dir: Path
    log_path: Path


def start_postgres(
    stack_dir: Path, data: Path, binaries: Binaries, account: ServerAccount, settings: dict[str, str]
) -> RunningPostgres:
    """Start a server on a free port over `data`, fresh from initdb.

    initdb's own "postgres" database becomes the course database (a rename
    is instant, where CREATE DATABASE would copy hundreds of files), and the
    role gets a password of its own. Its unix socket goes in a folder of
    its own ("run"), the only place besides its data directory where the
    server account writes; everything else in the stack's folder is ours.
    """
    socket_dir = stack_dir / "run"
    socket_dir.mkdir(mode=0o700, exist_ok=True)
    account.chown(socket_dir)
    last_error = ""
    for _ in range(_PORT_ATTEMPTS):
        try:
            server = _start_on(data, stack_dir, binaries, account, port=free_port(), settings=settings)
        except _PortTaken as exc:
            last_error = str(exc)
            continue
        server.password = secrets.token_urlsafe(18)
        _psql(
            binaries,
            account,
            server,
            "template1",
            f'ALTER DATABASE postgres RENAME TO "{DATABASE}";\nALTER ROLE "{ROLE}" PASSWORD \'{server.password}\';',
        )
        return server
    raise RuntimeError(f"PostgreSQL found no free port in {_PORT_ATTEMPTS} tries: {telling_line(last_error)}")


class _PortTaken(RuntimeError):
    pass


def _start_on(
    data: Path, stack_dir: Path, binaries: Binaries, account: ServerAccount, port: int, settings: dict[str, str]
) -> RunningPostgres:
    log_path = stack_dir / "postgres.log"
    argv = [
        str(binaries.postgres),
        "-D",
        str(data),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"unix_socket_directories={stack_dir / 'run'}",
    ]
    for name, value in {**_THROWAWAY_SETTINGS, **settings}.items():
        argv += ["-c", f"{name}={value}"]
    process = spawn_server(argv, account, log_path=log_path, death_signal=signal.SIGQUIT)
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_path.read_text(errors="replace")
            if _PORT_TAKEN.search(log):
                log_path.unlink()
                raise _PortTaken(log)
            raise RuntimeError(
                f"PostgreSQL exited at start (code {process.returncode}): {telling_line(log)}\n{log[-2000:]}"
            )
        if _status(data) == "ready":
            return RunningPostgres(process, port, "", stack_dir / "run", log_path)
        time.sleep(0.01)
    stop_process(process, signal.SIGQUIT, timeout=3)
    log = log_path.read_text(errors="replace")
    raise RuntimeError(f"PostgreSQL was not ready within {_READY_TIMEOUT} s: {telling_line(log)}\n{log[-2000:]}")


def _status(data: Path) -> str:
    """The state PostgreSQL writes on line 8 of postmaster.pid (PostgreSQL 10+)."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return ""
    return lines[7].strip() if len(lines) >= 8 else ""


def _psql(binaries: Binaries, account: ServerAccount, server: RunningPostgres, database: str, sql: str) -> None:
    """Run one statement over the private unix socket, where login is trusted."""
    run_as(
        [
            str(binaries.psql),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(server.socket_dir),
            "-p",
            str(server.port),
            "-U",
            ROLE,
            "-d",
            database,
            "-f",
            "-",
        ],
        account,
        timeout=15,
        input=sql,
    )
