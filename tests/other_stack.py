"""A compatible stack that is not the course's own: other names, started by hand.

A learner may attach the notebooks to a PostgreSQL and PgBouncer of their
own. This starts one the way such a person might, with initdb, postgres and
pgbouncer directly (not get_stack() or the keeper), and names that differ
from the course's: superuser role ``app``, database ``app``, and a PgBouncer
admin console user ``bouncer_admin`` that PostgreSQL does not know. The
settings are the ordinary ones the README asks an attached stack for.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from support.stack.binaries import find_binaries
from support.stack.server_process import free_port, run_as, server_account, spawn_server, stop_process

ROLE = "app"
DATABASE = "app"
ADMIN_USER = "bouncer_admin"
_READY_TIMEOUT = 15.0


@dataclass(frozen=True)
class OtherStack:
    """The three COURSE_* addresses, and where the servers keep their files."""

    exports: dict[str, str]
    directory: Path


@contextlib.contextmanager
def other_stack() -> Iterator[OtherStack]:
    """PostgreSQL + PgBouncer named app/app/bouncer_admin; both stopped and deleted on exit."""
    binaries = find_binaries()
    account = server_account()
    # Enterable by the server account when we are root; the files inside are its own.
    directory = Path(tempfile.mkdtemp(prefix="five-tables-other-stack-", dir="/tmp"))
    directory.chmod(0o755)
    account.chown(directory)
    data = directory / "data"
    password, admin_password = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    servers: list[tuple[subprocess.Popen, signal.Signals]] = []
    try:
        run_as(
            [str(binaries.initdb), "-D", str(data), "-U", ROLE, "--auth-local=trust", "--auth-host=scram-sha-256"]
            + ["--encoding=UTF8", "--locale=C", "--no-sync"],
            account,
            timeout=60,
        )
        postgres_port = free_port()
        postgres = spawn_server(
            [str(binaries.postgres), "-D", str(data), "-p", str(postgres_port)]
            + ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={directory}"]
            + ["-c", "max_connections=100", "-c", "fsync=off"],
            account,
            log_path=directory / "postgres.log",
            death_signal=signal.SIGQUIT,
        )
        servers.append((postgres, signal.SIGQUIT))
        _wait_until(lambda: _psql_answers(binaries.psql, account, directory, postgres_port), directory / "postgres.log")
        run_as(
            [str(binaries.psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(directory), "-p", str(postgres_port)]
            + ["-U", ROLE, "-d", "postgres", "-f", "-"],
            account,
            timeout=30,
            input=f"CREATE DATABASE {DATABASE};\nALTER ROLE {ROLE} PASSWORD '{password}';\n",
        )
        auth_file = directory / "userlist.txt"
        auth_file.write_text(f'"{ROLE}" "{password}"\n"{ADMIN_USER}" "{admin_password}"\n')
        auth_file.chmod(0o600)
        account.chown(auth_file)
        bouncer_port = free_port()
        config = directory / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"{DATABASE} = host=127.0.0.1 port={postgres_port} dbname={DATABASE}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {bouncer_port}\nunix_socket_dir =\n"
            f"auth_type = scram-sha-256\nauth_file = {auth_file}\n"
            f"admin_users = {ADMIN_USER}\nstats_users = {ADMIN_USER}\n"
            "pool_mode = transaction\ndefault_pool_size = 20\nmax_client_conn = 2000\n"
        )
        bouncer_log = directory / "pgbouncer.log"
        bouncer = spawn_server(
            [str(binaries.pgbouncer), str(config)], account, log_path=bouncer_log, death_signal=signal.SIGTERM
        )
        servers.insert(0, (bouncer, signal.SIGTERM))
        _wait_until(lambda: f"listening on 127.0.0.1:{bouncer_port}" in bouncer_log.read_text(), bouncer_log)
        base = f"postgresql://{ROLE}:{password}@127.0.0.1"
        yield OtherStack(
            {
                "COURSE_DATABASE_URL": f"{base}:{postgres_port}/{DATABASE}",
                "COURSE_PGBOUNCER_URL": f"{base}:{bouncer_port}/{DATABASE}",
                "COURSE_PGBOUNCER_ADMIN_URL": f"postgresql://{ADMIN_USER}:{admin_password}@127.0.0.1:{bouncer_port}/pgbouncer",
            },
            directory,
        )
    finally:
        for process, sig in servers:
            stop_process(process, sig, timeout=5)
        subprocess.run(["rm", "-rf", str(directory)], check=False, timeout=60)


def _psql_answers(psql: Path, account, socket_dir: Path, port: int) -> bool:
    try:
        run_as(
            [str(psql), "-X", "-h", str(socket_dir), "-p", str(port), "-U", ROLE, "-d", "postgres", "-c", "SELECT 1"],
            account,
            timeout=5,
        )
    except RuntimeError:
        return False
    return True


def _wait_until(ready, log: Path) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready within {_READY_TIMEOUT} s:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)


def running_servers_under(directory: Path) -> list[str]:
    """Command lines of postgres/pgbouncer processes whose arguments mention `directory`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if str(directory) in args and os.path.basename(args.split(" ")[0]) in ("postgres", "pgbouncer"):
                found.append(args.strip())
    return found
