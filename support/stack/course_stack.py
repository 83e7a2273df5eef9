"""Where the course stack starts: attach to one, or start a private one.

Every notebook begins with ``stack = get_stack()``.

* Attach mode: when COURSE_DATABASE_URL, COURSE_PGBOUNCER_URL and
  COURSE_PGBOUNCER_ADMIN_URL are set (docker compose, Binder, a workshop
  machine), the notebook uses that stack and starts nothing. The role in the
  first two URLs must be a superuser of that server.
* Private mode: otherwise the kernel starts its own PostgreSQL and PgBouncer
  on free ports in a private directory, owned by a keeper process (see
  keeper.py) that removes everything when the kernel goes away,
  however it goes.

A notebook that needs unusual server settings (a tiny max_connections, a
short query_wait_timeout) calls ``start_private_stack(...)`` for a stack of
its own, so the shared stack keeps ordinary settings.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit, urlunsplit

from . import defaults
from .binaries import find_binaries

_KEEPER_REPLY_TIMEOUT = 30.0
_KEEPER_EXIT_TIMEOUT = 5.0
_CONNECT_TIMEOUT = 3


class StackError(RuntimeError):
    """The course stack could not be started or reached; the text says what to do."""


def as_sqlalchemy_url(url: str) -> str:
    """The same address with the asyncpg driver named, as create_async_engine wants."""
    scheme, rest = url.split("://", 1)
    if scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {scheme}://...")
    return f"postgresql+asyncpg://{rest}"


def as_libpq_url(url: str) -> str:
    """The same address without a driver name, as psql and psycopg want."""
    return "postgresql://" + url.split("://", 1)[1]


def hide_password(url: str) -> str:
    """The URL with its password replaced by ***, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass
class Stack:
    """Addresses of a running course stack.

    ``database_url`` and ``pgbouncer_url`` are for ``create_async_engine``;
    ``admin_dsn`` (PgBouncer's admin console) and the ``*_dsn`` forms are for
    psql and psycopg.
    """

    mode: str
    database_url: str
    pgbouncer_url: str
    admin_dsn: str
    directory: str | None = None
    keeper_pid: int | None = None
    server_pids: tuple[int, ...] = ()
    start_seconds: float | None = None
    data_dir_from: str | None = None

    @property
    def database_dsn(self) -> str:
        return as_libpq_url(self.database_url)

    @property
    def pgbouncer_dsn(self) -> str:
        return as_libpq_url(self.pgbouncer_url)

    @property
    def database_name(self) -> str:
        """The database the notebooks use; an attached stack may call it anything."""
        return urlsplit(self.database_url).path.lstrip("/")

    @property
    def role_name(self) -> str:
        """The (superuser) role the notebooks connect as."""
        return urlsplit(self.database_url).username or ""

    @property
    def pgbouncer_database_name(self) -> str:
        """The database name PgBouncer knows, as SHOW POOLS lists it (may differ from the server's)."""
        return urlsplit(self.pgbouncer_url).path.lstrip("/")

    def describe(self) -> str:
        """A few lines saying which stack this is, passwords hidden."""
        where = (
            "attached to a stack started elsewhere (COURSE_* variables)"
            if self.mode == "attached"
            else f"private, in {self.directory}"
        )
        lines = [
            f"Stack: {where}",
            f"  PostgreSQL direct : {hide_password(self.database_url)}",
            f"  through PgBouncer : {hide_password(self.pgbouncer_url)}",
            f"  PgBouncer admin   : {hide_password(self.admin_dsn)}",
        ]
        if self.start_seconds is not None:
            lines.append(f"  started in {self.start_seconds:.2f} s")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.describe()

    @classmethod
    def from_keeper_reply(cls, reply: dict, **extra) -> Self:
        """The private stack a keeper reported (its JSON line, or the CLI's copy of it)."""
        return cls(
            mode="private",
            database_url=as_sqlalchemy_url(reply["database_url"]),
            pgbouncer_url=as_sqlalchemy_url(reply["pgbouncer_url"]),
            admin_dsn=reply["admin_url"],
            directory=reply["directory"],
            keeper_pid=reply["keeper_pid"],
            server_pids=(reply["postgres_pid"], reply["pgbouncer_pid"]),
            start_seconds=reply["start_seconds"],
            data_dir_from=reply["data_dir_from"],
            **extra,
        )


@dataclass(repr=False)
class PrivateStack(Stack):
    """A stack this process started; stop() ends it (kernel exit does too)."""

    _keeper: subprocess.Popen | None = field(default=None, compare=False)

    def stop(self, timeout: float = _KEEPER_EXIT_TIMEOUT) -> None:
        """Stop the servers and remove the directory; returns when done."""
        keeper = self._keeper
        if keeper is None or keeper.poll() is not None:
            return
        if keeper.stdin is not None:
            keeper.stdin.close()  # the keeper's signal to stop
        try:
            keeper.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            keeper.terminate()
            keeper.wait(timeout=timeout)

    @property
    def running(self) -> bool:
        return self._keeper is not None and self._keeper.poll() is None


def read_keeper_reply(keeper: subprocess.Popen) -> dict:
    """The keeper's one JSON line, waited for with a deadline (never a hang)."""
    stdout = keeper.stdout
    assert stdout is not None, "spawn_keeper() opens the keeper's stdout as a pipe"
    deadline = time.monotonic() + _KEEPER_REPLY_TIMEOUT
    buffer = b""
    while not buffer.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StackError(f"The private stack did not report within {_KEEPER_REPLY_TIMEOUT:.0f} s.")
        ready, _, _ = select.select([stdout], [], [], remaining)
        if ready:
            chunk = os.read(stdout.fileno(), 65536)
            if not chunk:
                raise StackError(f"The stack keeper exited without reporting (exit code {keeper.wait(timeout=5)}).")
            buffer += chunk
    return json.loads(buffer)


def spawn_keeper(
    until: str,
    postgres_settings: dict[str, str],
    pgbouncer_settings: dict[str, str],
    pgbouncer_port: int | None,
    *,
    stdin,
) -> subprocess.Popen:
    """Start a stack keeper in a session of its own (see keeper.py)."""
    argv = [
        sys.executable,
        "-m",
        "support.stack.keeper",
        "--until",
        until,
        "--postgres-settings",
        json.dumps(postgres_settings),
        "--pgbouncer-settings",
        json.dumps(pgbouncer_settings),
    ]
    if pgbouncer_port:
        argv += ["--pgbouncer-port", str(pgbouncer_port)]
    return subprocess.Popen(
        argv,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[2],
    )


def start_private_stack(
    *,
    postgres: dict[str, object] | None = None,
    pgbouncer: dict[str, object] | None = None,
    pgbouncer_port: int | None = None,
) -> PrivateStack:
    """Start a private PostgreSQL + PgBouncer owned by this process.

    ``postgres`` and ``pgbouncer`` override settings of the defaults
    (``postgres={"max_connections": 20}``, ``pgbouncer={"query_wait_timeout": 3}``).
    """
    find_binaries()  # a missing program is reported here, within a second
    postgres_settings = {**defaults.POSTGRES_SETTINGS, **{k: str(v) for k, v in (postgres or {}).items()}}
    pgbouncer_settings = {**defaults.PGBOUNCER_SETTINGS, **{k: str(v) for k, v in (pgbouncer or {}).items()}}
    keeper = spawn_keeper("parent-exits", postgres_settings, pgbouncer_settings, pgbouncer_port, stdin=subprocess.PIPE)
    assert keeper.stdin is not None
    try:
        reply = read_keeper_reply(keeper)
    except BaseException:
        keeper.stdin.close()
        raise
    if not reply["ok"]:
        keeper.stdin.close()
        raise StackError(f"The private stack did not start: {reply['error']}")
    stack = PrivateStack.from_keeper_reply(reply, _keeper=keeper)
    atexit.register(stack.stop)
    return stack


def attached_stack_from_env(environ: dict[str, str] | None = None) -> Stack | None:
    """The stack named by the COURSE_* variables, or None when none is set."""
    source: Mapping[str, str] = os.environ if environ is None else environ
    values = {name: source.get(name, "").strip() for name in defaults.ATTACH_VARIABLES}
    if not any(values.values()):
        return None
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise StackError(
            "Attach mode needs all three COURSE_* variables; missing: "
            + ", ".join(missing)
            + ". Set them (README.md, 'Where the database comes from', Attached), or unset all three "
            "to let the notebook start a private stack."
        )
    try:
        return Stack(
            mode="attached",
            database_url=as_sqlalchemy_url(values[defaults.ENV_DATABASE_URL]),
            pgbouncer_url=as_sqlalchemy_url(values[defaults.ENV_PGBOUNCER_URL]),
            admin_dsn=as_libpq_url(values[defaults.ENV_PGBOUNCER_ADMIN_URL]),
        )
    except (ValueError, IndexError) as exc:
        raise StackError(f"A COURSE_* variable is not a postgresql:// URL: {exc}") from None


def check_reachable(stack: Stack, timeout: int = _CONNECT_TIMEOUT) -> None:
    """Connect once to each address; the error names the variable that failed."""
    import psycopg  # imported here so the keeper and CLI need only the standard library

    checks = [
        (defaults.ENV_DATABASE_URL, stack.database_dsn, "SELECT 1"),
        (defaults.ENV_PGBOUNCER_URL, stack.pgbouncer_dsn, "SELECT 1"),
        (defaults.ENV_PGBOUNCER_ADMIN_URL, stack.admin_dsn, "SHOW VERSION"),
    ]
    for variable, dsn, query in checks:
        try:
            with psycopg.connect(dsn, connect_timeout=timeout, autocommit=True) as conn:
                conn.execute(query)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StackError(
                f"{variable} ({hide_password(dsn)}) cannot be reached: {reason}\n"
                "Is the stack running? (docker compose ps / python -m support status). "
                "Unset the COURSE_* variables to let the notebook start a private stack."
            ) from None


_shared: Stack | None = None


def get_stack() -> Stack:
    """The stack this kernel uses: attached if COURSE_* is set, else private.

    Calling it again (re-running the cell) returns the same stack.
    """
    global _shared
    if _shared is not None and (not isinstance(_shared, PrivateStack) or _shared.running):
        return _shared
    stack = attached_stack_from_env()
    if stack is None:
        stack = start_private_stack()
    check_reachable(stack)
    _shared = stack
    return stack
