"""The course stack's addresses, and starting a private one.

Every notebook begins with ``stack = get_stack()`` (attach.py), which
chooses between the two kinds of stack described here.

* Attach mode: when COURSE_DATABASE_URL, COURSE_PGBOUNCER_URL and
  COURSE_PGBOUNCER_ADMIN_URL are set (docker compose, Binder, a workshop
  machine), the notebook uses that stack and starts nothing. The role in the
  first two URLs must be a superuser of that server.
* Private mode: otherwise the kernel starts its own PostgreSQL and PgBouncer
  on free ports in a private directory, owned by a keeper process (see
  keeper.py) that removes everything when the kernel goes away,
  however it goes.
* If a private stack dies under the notebook (its PostgreSQL was killed,
  say), the next ``get_stack()`` says why and starts a new one, instead of
  handing back addresses nobody answers.

A notebook that needs unusual server settings (a tiny max_connections, a
short query_wait_timeout) calls ``start_private_stack(...)`` for a stack of
its own, so the shared stack keeps ordinary settings.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit, urlunsplit

from . import defaults
from .binaries import find_binaries
from .processes import alive

_KEEPER_REPLY_TIMEOUT = 30.0
_KEEPER_EXIT_TIMEOUT = 5.0


class StackError(RuntimeError):
    """The course stack could not be started or reached; the first line says why and what to do.

    ``detail`` keeps the longer story (a server's log) when there is one.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


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
    """The URL with its password replaced by ***, for printing: in the user part and in ?password=."""
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError:  # not even a URL: hide anything that looks like user:password@
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    netloc = parts.netloc
    if has_password:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    query = re.sub(r"(^|&)([^=&]*password=)[^&]*", r"\1\2***", parts.query, flags=re.IGNORECASE)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


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
        where = {
            "attached": "attached to a stack started elsewhere (COURSE_* variables)",
            "shared": f"shared, started by './course up' for every shell that exports its COURSE_* lines, "
            f"in {self.directory}",
        }.get(self.mode, f"private, in {self.directory}")
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
    def from_keeper_reply(cls, reply: dict, mode: str = "private", **extra) -> Self:
        """The stack a keeper reported (its JSON line, or the CLI's copy of it)."""
        return cls(
            mode=mode,
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
    _stop_requested: bool = field(default=False, compare=False)
    _ended_because: str | None = field(default=None, compare=False)

    def stop(self, timeout: float = _KEEPER_EXIT_TIMEOUT) -> None:
        """Stop the servers and remove the directory; returns when done."""
        self._stop_requested = True
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

    def problem(self) -> str | None:
        """None while the stack works; else one line saying what ended it.

        Cheap enough to ask on every ``get_stack()``: it looks at the keeper
        and the two server pids, and connects to nothing. A server that died
        is noticed by the keeper within a tenth of a second; it then ends the
        stack and writes the reason on its standard output, read here.
        """
        keeper = self._keeper
        if keeper is None or self._stop_requested:
            return None
        if self._ended_because is not None:
            return self._ended_because
        if keeper.poll() is None:
            if all(alive(pid) for pid in self.server_pids):
                return None
            try:
                keeper.wait(timeout=_KEEPER_EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                return "A server of this stack is gone, and its keeper did not end the stack"
        self._ended_because = self._ending_reason(keeper)
        return self._ended_because

    def _ending_reason(self, keeper: subprocess.Popen) -> str:
        for line in _remaining_lines(keeper.stdout):
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("event") == "ended":
                return str(message["reason"])
        code = keeper.returncode
        if code is not None and code < 0:
            return f"The keeper of this stack was killed ({signal.Signals(-code).name}), and its servers with it"
        return f"The keeper of this stack exited (exit code {code}), and its servers with it"


def _remaining_lines(stream) -> list[str]:
    """What a finished keeper left in its pipe, read without waiting for more."""
    if stream is None or stream.closed:
        return []
    chunks = []
    while select.select([stream], [], [], 0.2)[0]:
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace").splitlines()


def read_keeper_reply(keeper: subprocess.Popen) -> dict:
    """The keeper's first JSON line, waited for with a deadline (never a hang).

    If the keeper dies without one (it could not even start Python's part),
    the last telling line of its standard error becomes the message.
    """
    stdout = keeper.stdout
    assert stdout is not None, "spawn_keeper() opens the keeper's stdout as a pipe"
    deadline = time.monotonic() + _KEEPER_REPLY_TIMEOUT
    buffer = b""
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            keeper.terminate()
            raise StackError(f"The private stack did not report within {_KEEPER_REPLY_TIMEOUT:.0f} s.")
        ready, _, _ = select.select([stdout], [], [], remaining)
        if ready:
            chunk = os.read(stdout.fileno(), 1)  # byte by byte: later lines stay in the pipe
            if not chunk:
                raise _keeper_died(keeper)
            buffer += chunk
    if keeper.stderr is not None:
        keeper.stderr.close()  # from here on the keeper writes to keeper.log
    return json.loads(buffer)


def _keeper_died(keeper: subprocess.Popen) -> StackError:
    code = keeper.wait(timeout=5)
    errors = "\n".join(_remaining_lines(keeper.stderr)).strip()
    last = errors.splitlines()[-1] if errors else "it wrote nothing on standard error"
    return StackError(f"The stack keeper exited without reporting (exit code {code}): {last}", detail=errors)


def spawn_keeper(
    until: str,
    postgres_settings: dict[str, str],
    pgbouncer_settings: dict[str, str],
    pgbouncer_port: int | None,
    *,
    stdin,
) -> subprocess.Popen:
    """Start a stack keeper in a session of its own (see keeper.py).

    Its token (also in its command line) lets `./course down` and `clean`
    check that a pid read from a file is still this keeper.
    """
    argv = [
        sys.executable,
        "-m",
        "support.stack.keeper",
        "--until",
        until,
        "--token",
        secrets.token_hex(8),
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
        stderr=subprocess.PIPE,
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
    assert keeper.stdin is not None, "spawn_keeper() was given stdin=PIPE"
    try:
        reply = read_keeper_reply(keeper)
    except BaseException:
        keeper.stdin.close()
        raise
    if not reply["ok"]:
        keeper.stdin.close()
        keeper.wait(timeout=_KEEPER_EXIT_TIMEOUT)
        raise StackError(f"The private stack did not start: {reply['error']}", detail=reply.get("detail", ""))
    stack = PrivateStack.from_keeper_reply(reply, _keeper=keeper)
    atexit.register(stack.stop)
    return stack
