"""asyncpg's prepared statements behind PgBouncer's transaction pooling (notebook 06).

Which connect_args fix the "prepared statement ... does not exist" errors
depends on the installed asyncpg and PgBouncer, so the notebook measures each
setting rather than asserting one answer. This module holds the plumbing of
those measurements:

* ``transactions_through()``: concurrent short transactions over several
  engines, errors counted by the driver's exception class, never raised;
* ``StatementCensus``: how many prepared statements each of PgBouncer's
  server connections carries (a statement left there outlives the
  client that prepared it, and a later client can collide with its name);
* ``in_second_process()``: the same load from a fresh Python process, which
  numbers its statements from 1 again, as a second uvicorn worker would;
* ``which_branch()`` and ``exercise_feedback()``: what the installed versions
  do, and feedback on the learner's connect_args derived from what was measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ..stack import Stack
from .pgbouncer_crowd import SERVER_COLUMNS

_CONNECT_TIMEOUT = 5
#: asyncpg 0.31 made prepare() use unnamed statements when its statement cache is off.
ASYNCPG_UNNAMED_PREPARE = (0, 31)
#: PgBouncer 1.21 added max_prepared_statements (tracking of protocol-level prepared statements).
PGBOUNCER_TRACKS_PREPARED = (1, 21)


@dataclass
class LoadErrors:
    """What went wrong in one ``transactions_through()`` run, by driver exception class."""

    transactions: int
    errors: Counter[str] = field(default_factory=Counter)
    first: dict[str, BaseException] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def describe(self) -> str:
        if not self.failed:
            return f"0 of {self.transactions} failed"
        kinds = ", ".join(f"{name} {count}" for name, count in self.errors.most_common())
        return f"{self.failed} of {self.transactions} failed ({kinds})"


def error_kind(exc: BaseException) -> str:
    """The class name that says what failed: asyncpg's own error inside SQLAlchemy's wrapper."""
    if isinstance(exc, DBAPIError):
        inner = getattr(exc, "driver_exception", None) or exc.orig
        return type(inner).__name__
    return type(exc).__name__


async def transactions_through(
    engines: Sequence[Any], *, tasks: int = 16, each: int = 10, timeout: float = 60
) -> LoadErrors:
    """``tasks`` concurrent tasks, each running ``each`` short transactions of two queries.

    Task i uses engines[i % len(engines)]. Every exception is counted (not
    only DBAPIError: a statement of another query run under a colliding name
    can make asyncpg fail while decoding rows), so a run never raises; the
    whole run is bounded by ``timeout`` seconds.
    """
    if not engines:
        raise ValueError("transactions_through() needs at least one engine")
    result = LoadErrors(transactions=tasks * each)

    async def task(i: int) -> None:
        engine = engines[i % len(engines)]
        for j in range(each):
            try:
                async with engine.connect() as conn:  # one transaction: BEGIN ... ROLLBACK on return
                    await conn.execute(text("SELECT CAST(:j AS int) + 1"), {"j": j})
                    await conn.execute(text("SELECT count(*) FROM pg_class WHERE oid > :j"), {"j": j})
            except Exception as exc:  # noqa: BLE001 - counted, shown by the notebook
                kind = error_kind(exc)
                result.errors[kind] += 1
                result.first.setdefault(kind, exc)

    async with asyncio.timeout(timeout):
        await asyncio.gather(*(task(i) for i in range(tasks)))
    return result


class StatementCensus:
    """Counts the prepared statements on every server connection PgBouncer holds.

    A prepared statement belongs to a server session, so it can only be seen
    from a client that is on that server connection. The census keeps one
    client per server connection PgBouncer reports (SHOW POOLS), and on each
    count puts all of them in a transaction at once, so that PgBouncer must
    give each a different server connection, and reads
    ``pg_prepared_statements`` there. Use it as ``async with
    StatementCensus(stack) as census: await census.count()``, or call
    ``close()`` when done.
    """

    def __init__(self, stack: Stack, *, timeout: float = 15) -> None:
        self.stack = stack
        self.timeout = timeout
        self._clients: list[psycopg.AsyncConnection] = []

    async def __aenter__(self) -> StatementCensus:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the census's own client connections."""
        for conn in self._clients:
            try:
                await conn.close()
            except psycopg.Error:
                pass
        self._clients.clear()

    async def count(self, *, clear: bool = False) -> dict[int, int]:
        """{server pid: prepared statements on it}, for every server connection PgBouncer holds now.

        ``clear=True`` also runs ``DEALLOCATE ALL`` on each, removing what
        earlier clients left there (never do that behind a PgBouncer that
        tracks prepared statements itself: it would lose track).
        """
        counts: dict[int, int] = {}
        async with asyncio.timeout(self.timeout):
            while len(self._clients) < _server_connections(self.stack):
                self._clients.append(
                    await psycopg.AsyncConnection.connect(
                        self.stack.pgbouncer_dsn, connect_timeout=_CONNECT_TIMEOUT, prepare_threshold=None
                    )
                )
            try:
                for conn in self._clients:  # each keeps its transaction open: the next gets another server
                    cursor = await conn.execute("SELECT pg_backend_pid(), count(*) FROM pg_prepared_statements")
                    row = await cursor.fetchone()
                    assert row is not None
                    counts[int(row[0])] = int(row[1])
                    if clear:
                        await conn.execute("DEALLOCATE ALL")
            finally:
                for conn in self._clients:  # ends cleanly, so PgBouncer keeps the server connections
                    if clear:
                        await conn.commit()
                    else:
                        await conn.rollback()
        return counts


def _server_connections(stack: Stack) -> int:
    """Server connections PgBouncer holds for the stack's database (SHOW POOLS)."""
    with psycopg.connect(stack.admin_dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT) as admin:
        cursor = admin.execute("SHOW POOLS")
        names = [c.name for c in cursor.description or []]
        pools = [dict(zip(names, row)) for row in cursor.fetchall()]
    return sum(
        int(pool.get(column) or 0)
        for pool in pools
        if pool["database"] == stack.pgbouncer_database_name
        for column in SERVER_COLUMNS
    )


_SECOND_PROCESS = """
import asyncio, json, sys
from sqlalchemy.ext.asyncio import create_async_engine
from support.lessons.pgbouncer_prepared import transactions_through

async def main(url, settings):
    out = {}
    for label, connect_args in settings.items():
        engines = [create_async_engine(url, pool_size=5, max_overflow=0, pool_timeout=10, connect_args=connect_args)
                   for _ in range(2)]
        try:
            run = await transactions_through(engines, tasks=8, each=8)
        finally:
            for engine in engines:
                await engine.dispose()
        out[label] = {"transactions": run.transactions, "errors": dict(run.errors),
                      "first": {kind: str(exc).splitlines()[0] for kind, exc in run.first.items()}}
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
"""


def in_second_process(url: str, settings: dict[str, dict[str, Any]], *, timeout: float = 60) -> dict[str, LoadErrors]:
    """Run the load once per setting from a fresh Python process, as a second app worker would.

    A new process numbers asyncpg's statements from 1 again, like every
    worker uvicorn starts. ``settings`` maps a label to connect_args made of
    plain values (they travel as JSON). Returns the errors per label; the
    first error of each kind comes back as its message (a str exception).
    """
    root = str(Path(__file__).resolve().parents[2])  # the folder holding this `support` package
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(
        [sys.executable, "-c", _SECOND_PROCESS, url, json.dumps(settings)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"the second process failed (exit {run.returncode}): {run.stderr.strip()[-1500:]}")
    results = {}
    for label, found in json.loads(run.stdout).items():
        first = {kind: RuntimeError(message) for kind, message in found["first"].items()}
        results[label] = LoadErrors(found["transactions"], Counter(found["errors"]), dict(first))
    return results


def version_tuple(version: str) -> tuple[int, int]:
    """(major, minor) from "0.32.0", "PgBouncer 1.18.0" or "1.22.1-1"."""
    number = version.split()[-1]
    parts = [int("".join(ch for ch in part if ch.isdigit()) or 0) for part in number.split(".")[:2]]
    return (parts + [0, 0])[0], (parts + [0, 0])[1]


@dataclass(frozen=True)
class Branch:
    """Which row of the notebook's version table the installed versions take."""

    asyncpg_unnamed_prepare: bool  # asyncpg >= 0.31
    pgbouncer_tracks_prepared: bool  # PgBouncer >= 1.21 with max_prepared_statements > 0

    def explain(self) -> str:
        if self.pgbouncer_tracks_prepared:
            return (
                "PgBouncer tracks protocol-level prepared statements (max_prepared_statements > 0): it prepares "
                "each statement on whichever server connection a transaction gets, so the default driver "
                "settings are expected to work through it."
            )
        if self.asyncpg_unnamed_prepare:
            return (
                "PgBouncer does not track prepared statements, and asyncpg >= 0.31 prepares unnamed statements "
                "when its statement cache is off: statement_cache_size=0 is the setting that matters; "
                "prepared_statement_cache_size=0 alone still leaves named statements behind."
            )
        return (
            "PgBouncer does not track prepared statements, and asyncpg < 0.31 names every statement that "
            "prepare() makes: both caches must be off, and with several worker processes the names must be "
            "unique (prepared_statement_name_func with a uuid)."
        )


def branch_of(stack: Stack) -> Branch:
    """The branch the installed asyncpg and this stack's PgBouncer take."""
    import asyncpg

    with psycopg.connect(stack.admin_dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT) as admin:
        bouncer = str(admin.execute("SHOW VERSION").fetchone()[0])  # type: ignore[index]
        config = {str(row[0]): str(row[1]) for row in admin.execute("SHOW CONFIG").fetchall()}
    return which_branch(asyncpg.__version__, bouncer, int(config.get("max_prepared_statements", "0") or 0))


def which_branch(asyncpg_version: str, pgbouncer_version: str, max_prepared_statements: int) -> Branch:
    """The branch for these versions; max_prepared_statements is 0 where the setting does not exist."""
    return Branch(
        asyncpg_unnamed_prepare=version_tuple(asyncpg_version) >= ASYNCPG_UNNAMED_PREPARE,
        pgbouncer_tracks_prepared=version_tuple(pgbouncer_version) >= PGBOUNCER_TRACKS_PREPARED
        and max_prepared_statements > 0,
    )
