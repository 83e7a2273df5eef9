"""Many database clients at once, and a watch on how many server connections they cost.

PgBouncer's promise is that a thousand client connections need only a handful
of server connections. To show it, a notebook needs two things that are
plumbing rather than lesson:

* ``crowd()`` opens N asyncpg connections (with a bound on how many connect at
  the same moment, so the listen backlog of the server is not the thing being
  measured), holds them all open together, runs the notebook's own ``work`` on
  each, and counts what failed, by exception class, instead of raising;
* ``ServerSampler`` polls, in a background task, ``pg_stat_activity`` on the
  PostgreSQL server and ``SHOW POOLS`` on PgBouncer's admin console while the
  crowd runs, so the claim "the server never saw more than the pool size" is
  checked from the server's side and not only from the client's.

The sampler uses psycopg: the admin console accepts only the simple query
protocol, and asyncpg uses it only for an argument-less ``execute()``, which
returns a status string and no rows.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import psycopg

from ..stack import Stack, as_libpq_url

_SAMPLER_CONNECT_TIMEOUT = 5
#: SHOW POOLS columns that count server connections in some state; newer
#: PgBouncer versions add columns, older ones lack some, so missing ones count 0.
SERVER_COLUMNS = ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")


@dataclass
class CrowdResult:
    """What happened to the clients of one ``crowd()`` run.

    ``connect_errors`` and ``work_errors`` count exceptions by class name;
    ``first_errors`` keeps the first exception of each class, to show once.
    """

    clients: int
    connected: int
    connect_errors: Counter[str]
    work_errors: Counter[str]
    first_errors: dict[str, BaseException]
    connect_seconds: float
    work_seconds: float

    @property
    def errors(self) -> int:
        return sum(self.connect_errors.values()) + sum(self.work_errors.values())

    def __repr__(self) -> str:
        return (
            f"CrowdResult(clients={self.clients}, connected={self.connected}, "
            f"connect errors={dict(self.connect_errors)}, work errors={dict(self.work_errors)}, "
            f"connect {self.connect_seconds:.2f} s, work {self.work_seconds:.2f} s)"
        )


async def crowd(
    dsn: str,
    clients: int,
    work: Callable[[asyncpg.Connection], Awaitable[None]],
    *,
    connect_concurrency: int = 50,
    timeout: float = 30.0,
    when_all_connected: Callable[[], Awaitable[None]] | None = None,
    **connect_kwargs: object,
) -> CrowdResult:
    """Open ``clients`` asyncpg connections to ``dsn``, hold them all, run ``work`` on each.

    Connecting is bounded to ``connect_concurrency`` at a time; every
    connection that succeeded stays open until all clients are done, so at
    the moment ``when_all_connected`` is awaited (a good time for a
    ``SHOW POOLS``) they are all open together. Then ``work(connection)`` runs
    on all of them concurrently. Failures are counted, never raised; the
    whole run is bounded by ``timeout`` seconds per phase, so it cannot hang.
    ``connect_kwargs`` go to ``asyncpg.connect`` (e.g. ``statement_cache_size=0``).
    """
    if clients < 1:
        raise ValueError(f"clients must be at least 1, got {clients!r}")
    dsn = as_libpq_url(dsn)
    gate = asyncio.Semaphore(connect_concurrency)
    connect_errors: Counter[str] = Counter()
    work_errors: Counter[str] = Counter()
    first_errors: dict[str, BaseException] = {}

    def note(counter: Counter[str], exc: BaseException) -> None:
        name = type(exc).__name__
        counter[name] += 1
        first_errors.setdefault(name, exc)

    async def connect_one() -> asyncpg.Connection | None:
        async with gate:
            try:
                return await asyncpg.connect(dsn, timeout=timeout, **connect_kwargs)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                note(connect_errors, exc)
                return None

    connections: list[asyncpg.Connection] = []
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            opened = await asyncio.gather(*(connect_one() for _ in range(clients)))
        connections = [c for c in opened if c is not None]
        connect_seconds = time.perf_counter() - started
        if when_all_connected is not None:
            await when_all_connected()
        started = time.perf_counter()
        async with asyncio.timeout(timeout):
            outcomes = await asyncio.gather(*(work(c) for c in connections), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                note(work_errors, outcome)
        work_seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(*(_close(c) for c in connections))
    return CrowdResult(
        clients, len(connections), connect_errors, work_errors, first_errors, connect_seconds, work_seconds
    )


def clients_of(stack: Stack, prefix: str) -> list[dict[str, object]]:
    """The client connections in PgBouncer's SHOW CLIENTS whose application_name starts with ``prefix``."""
    with psycopg.connect(stack.admin_dsn, autocommit=True, connect_timeout=_SAMPLER_CONNECT_TIMEOUT) as admin:
        cursor = admin.execute("SHOW CLIENTS")
        names = [c.name for c in cursor.description or []]
        rows = [dict(zip(names, row)) for row in cursor.fetchall()]
    return [row for row in rows if str(row.get("application_name") or "").startswith(prefix)]


async def _close(connection: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(connection.close(), timeout=5)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        connection.terminate()


@dataclass(frozen=True)
class Sample:
    """One look at both servers, ``at`` seconds after the sampler started.

    ``backends`` is PostgreSQL's count of client backends (the sampler's own
    excluded); the others are PgBouncer's SHOW POOLS totals for the pools of
    the sampler's database (None when the stack's PgBouncer was not asked).
    """

    at: float
    backends: int
    bouncer_servers: int | None
    clients_active: int | None
    clients_waiting: int | None


@dataclass
class ServerSampler:
    """Samples server connections in the background: ``async with ServerSampler(stack) as s:``.

    Each sample is one query on PostgreSQL and, with ``pgbouncer=True``, one
    ``SHOW POOLS`` on the admin console, every ``interval`` seconds. The
    sampler's own connection to PostgreSQL is excluded from ``backends`` but
    does use one of ``max_connections``. ``database`` is the name PgBouncer
    lists the pools under; by default the stack's own (an attached stack
    may call it anything).
    """

    stack: Stack
    interval: float = 0.02
    database: str | None = None  # SHOW POOLS rows of this database; None: the stack's (pgbouncer_database_name)
    pgbouncer: bool = True
    samples: list[Sample] = field(default_factory=list)

    async def __aenter__(self) -> ServerSampler:
        if self.database is None:
            self.database = self.stack.pgbouncer_database_name
        self._postgres = await psycopg.AsyncConnection.connect(
            self.stack.database_dsn, autocommit=True, connect_timeout=_SAMPLER_CONNECT_TIMEOUT
        )
        self._admin = None
        if self.pgbouncer:
            # prepare_threshold=None: psycopg would otherwise prepare a query it
            # has run five times, and the console refuses the extended protocol.
            self._admin = await psycopg.AsyncConnection.connect(
                self.stack.admin_dsn, autocommit=True, connect_timeout=_SAMPLER_CONNECT_TIMEOUT, prepare_threshold=None
            )
        self._started = time.perf_counter()
        await self.sample()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        try:
            await self.sample()
        finally:
            await self._postgres.close()
            if self._admin is not None:
                await self._admin.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.sample()

    async def sample(self) -> Sample:
        """Take one sample now (also done on entry and exit) and keep it."""
        cursor = await self._postgres.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        row = await cursor.fetchone()
        backends = row[0] if row else 0
        servers = active = waiting = None
        if self._admin is not None:
            cursor = await self._admin.execute("SHOW POOLS")
            names = [c.name for c in cursor.description or []]
            pools = [dict(zip(names, row)) for row in await cursor.fetchall()]
            pools = [p for p in pools if p["database"] == self.database]
            servers = sum(int(p.get(c) or 0) for p in pools for c in SERVER_COLUMNS)
            active = sum(int(p["cl_active"]) for p in pools)
            waiting = sum(int(p["cl_waiting"]) for p in pools)
        sample = Sample(time.perf_counter() - self._started, backends, servers, active, waiting)
        self.samples.append(sample)
        return sample

    @property
    def max_backends(self) -> int:
        return max(s.backends for s in self.samples)

    @property
    def max_bouncer_servers(self) -> int:
        return max(s.bouncer_servers or 0 for s in self.samples)

    @property
    def max_clients(self) -> int:
        return max((s.clients_active or 0) + (s.clients_waiting or 0) for s in self.samples)

    @property
    def max_waiting(self) -> int:
        return max(s.clients_waiting or 0 for s in self.samples)

    def __repr__(self) -> str:
        if not self.samples:
            return "ServerSampler(no samples yet)"
        text = f"ServerSampler({len(self.samples)} samples, max backends on PostgreSQL={self.max_backends}"
        if self.pgbouncer:
            text += (
                f", max PgBouncer server connections={self.max_bouncer_servers}, "
                f"max clients={self.max_clients}, max waiting={self.max_waiting}"
            )
        return text + ")"
