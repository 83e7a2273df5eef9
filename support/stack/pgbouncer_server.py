"""A private PgBouncer in front of a PostgreSQL server.

PgBouncer 1.18 does not exit when its TCP port is taken: it logs "cannot
listen", carries on, and still says "process up". So readiness is its
"listening on 127.0.0.1:PORT" line, and a taken port means stop and retry on
another one.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .binaries import Binaries
from .defaults import ROLE
from .server_process import ServerAccount, free_port, spawn_server, stop_process, telling_line
from .work_dir import write_private_file

_READY_TIMEOUT = 10.0
_PORT_ATTEMPTS = 5


@dataclass
class RunningPgBouncer:
    process: subprocess.Popen
    port: int
    log_path: Path


def render_config(*, port: int, postgres_port: int, auth_file: Path, settings: dict[str, str]) -> str:
    """The pgbouncer.ini text: every database name maps to the one server."""
    lines = [
        "[databases]",
        f"* = host=127.0.0.1 port={postgres_port}",
        "",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = scram-sha-256",
        f"auth_file = {auth_file}",
        f"admin_users = {ROLE}",
        f"stats_users = {ROLE}",
    ]
    lines += [f"{name} = {value}" for name, value in settings.items()]
    return "\n".join(lines) + "\n"


def render_auth_file(password: str) -> str:
    """userlist.txt: the course role with its password, for SCRAM both ways."""
    return f'"{ROLE}" "{password}"\n'


def start_pgbouncer(
    stack_dir: Path,
    binaries: Binaries,
    account: ServerAccount,
    *,
    postgres_port: int,
    password: str,
    settings: dict[str, str],
    first_port: int | None = None,
) -> RunningPgBouncer:
    """Start PgBouncer on a free port (trying `first_port` first, if given)."""
    auth_file = stack_dir / "userlist.txt"
    write_private_file(auth_file, render_auth_file(password), owner=account.ids)
    last_log = ""
    for attempt in range(_PORT_ATTEMPTS):
        port = first_port if (attempt == 0 and first_port) else free_port()
        config = stack_dir / "pgbouncer.ini"
        write_private_file(
            config,
            render_config(port=port, postgres_port=postgres_port, auth_file=auth_file, settings=settings),
            owner=account.ids,
        )
        log_path = stack_dir / f"pgbouncer-{port}.log"
        process = spawn_server(
            [str(binaries.pgbouncer), str(config)], account, log_path=log_path, death_signal=signal.SIGTERM
        )
        outcome = _wait_for_listening(process, log_path, port)
        if outcome == "listening":
            return RunningPgBouncer(process, port, log_path)
        stop_process(process, signal.SIGTERM, timeout=3)
        last_log = log_path.read_text(errors="replace")
        if outcome != "port taken":
            raise RuntimeError(f"PgBouncer did not start ({outcome}): {telling_line(last_log)}\n{last_log[-2000:]}")
    raise RuntimeError(f"PgBouncer found no free port in {_PORT_ATTEMPTS} tries: {telling_line(last_log)}")


def _wait_for_listening(process: subprocess.Popen, log_path: Path, port: int) -> str:
    listening = f"listening on 127.0.0.1:{port}"
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        log = log_path.read_text(errors="replace")
        if listening in log:
            return "listening"
        if re.search(r"cannot listen|Address already in use", log):
            return "port taken"
        if process.poll() is not None:
            return f"exited with code {process.returncode}"
        time.sleep(0.005)
    return f"no '{listening}' line within {_READY_TIMEOUT} s"
