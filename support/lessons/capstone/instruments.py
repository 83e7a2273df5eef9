"""The course's instruments, attached to the service for one run of traffic.

* ``TagRequests``: a plain ASGI middleware that finds each request's endpoint
  (its route template, ``/orders/{order_id}``) and keeps it in a context
  variable while the request runs, background tasks included. Pool events
  and pool log lines happen inside the request's context (SQLAlchemy carries
  the context into its greenlets), so they can be counted per endpoint. It
  also keeps which asyncio task serves which endpoint, for the loop watch,
  and how many requests are still in flight.
* ``PoolByEndpoint``: the pool's own log (``support.lab.pool_log``, the lines
  ``echo_pool="debug"`` prints), each line tagged with its endpoint; from
  the pool's checkout/checkin events how long each endpoint held its
  connections; and, through an event hook on an HTTP client, how many
  outgoing calls a request made while it held a connection.
* ``ActivityWatch``: snapshots of ``pg_stat_activity`` for the service's
  connections, taken from a thread so the loop is not held up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import event
from starlette.routing import Match

from ...lab.pool_log import pool_log


@dataclass(frozen=True, eq=False)
class RequestInfo:
    """One request being served (compared by identity), and its endpoint's route template."""

    endpoint: str


#: The request being served, None outside requests.
current_request: ContextVar[RequestInfo | None] = ContextVar("capstone_request", default=None)


def current_endpoint() -> str:
    request = current_request.get()
    return request.endpoint if request is not None else "(outside requests)"


class RequestTags:
    """What TagRequests knows about the requests of one app."""

    def __init__(self, routes: list[Any]) -> None:
        self.routes = routes
        self.tasks: dict[asyncio.Task, str] = {}
        self.in_flight = 0

    def endpoint_of(self, scope: dict[str, Any]) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return route.path
        return "(no route)"

    async def settled(self, timeout: float) -> int:
        """Wait (at most `timeout` s) until no request is in flight; return how many still are."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.in_flight


class TagRequests:
    """ASGI middleware: each HTTP request's RequestInfo in ``current_request`` while it runs."""

    def __init__(self, app: Any, tags: RequestTags) -> None:
        self.app = app
        self.tags = tags

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = self.tags.endpoint_of(scope)
        token = current_request.set(RequestInfo(endpoint))
        task = asyncio.current_task()
        if task is not None:
            self.tags.tasks[task] = endpoint
        self.tags.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.tags.in_flight -= 1
            if task is not None:
                self.tags.tasks.pop(task, None)
            current_request.reset(token)


@dataclass
class EndpointPool:
    """One endpoint's use of the pool during a run."""

    log_checkouts: int = 0
    log_returns: int = 0
    holds: list[float] = field(default_factory=list)  # seconds from checkout to checkin
    outgoing_calls: int = 0
    calls_holding: int = 0  # outgoing calls made while the request held a connection


class _TagRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.endpoint = current_endpoint()
        return True


class PoolByEndpoint:
    """Pool log lines and connection hold times, per endpoint, from creation until ``stop()``."""

    def __init__(self, engine: Any) -> None:
        self.pool = engine.sync_engine.pool
        self.by_endpoint: dict[str, EndpointPool] = {}
        self.log: list[tuple[str, str]] = []  # (endpoint, message)
        self._out: dict[int, tuple[str, float, RequestInfo | None]] = {}
        self._filter = _TagRecords()
        self._logger = logging.getLogger(f"{type(self.pool).__module__}.{type(self.pool).__name__}")
        self._logger.addFilter(self._filter)
        self._log_block = pool_log(shorten_addresses=True, fmt="%(endpoint)s\t%(message)s")
        self._lines = self._log_block.__enter__()
        event.listen(self.pool, "checkout", self._on_checkout)
        event.listen(self.pool, "checkin", self._on_checkin)
        self.running = True

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        self._out[id(record)] = (current_endpoint(), time.monotonic(), current_request.get())

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        endpoint, since, _ = self._out.pop(id(record), (None, 0.0, None))
        if endpoint is not None:
            self._stats(endpoint).holds.append(time.monotonic() - since)

    async def note_outgoing_call(self, request: Any) -> None:
        """An httpx request event hook: counts the call, and whether its request holds a connection now."""
        owner = current_request.get()
        stats = self._stats(current_endpoint())
        stats.outgoing_calls += 1
        if owner is not None and any(held_by is owner for _, _, held_by in self._out.values()):
            stats.calls_holding += 1

    def _stats(self, endpoint: str) -> EndpointPool:
        return self.by_endpoint.setdefault(endpoint, EndpointPool())

    def stop(self) -> None:
        """Stop listening; count the log lines per endpoint."""
        if not self.running:
            return
        event.remove(self.pool, "checkout", self._on_checkout)
        event.remove(self.pool, "checkin", self._on_checkin)
        self._log_block.__exit__(None, None, None)
        self._logger.removeFilter(self._filter)
        for line in self._lines:
            endpoint, _, message = line.partition("\t")
            self.log.append((endpoint, message))
            if "checked out from pool" in message:
                self._stats(endpoint).log_checkouts += 1
            elif "being returned to pool" in message:
                self._stats(endpoint).log_returns += 1
        self.running = False

    def still_out(self) -> Counter[str]:
        """Connections checked out and not returned, by the endpoint that took them."""
        return Counter(endpoint for endpoint, _, _ in self._out.values())

    def still_out_ages(self) -> dict[str, list[float]]:
        """How long each connection not returned has been out, by the endpoint that took it."""
        now = time.monotonic()
        ages: dict[str, list[float]] = {}
        for endpoint, since, _ in self._out.values():
            ages.setdefault(endpoint, []).append(now - since)
        return ages


@dataclass(frozen=True)
class Snapshot:
    """pg_stat_activity rows of the service's connections at one moment (seconds into the run)."""

    at: float
    rows: list[dict[str, Any]]


_ACTIVITY = """
SELECT pid, state, wait_event_type,
       round(extract(epoch FROM now() - xact_start)::numeric, 2)::float AS transaction_age,
       round(extract(epoch FROM now() - state_change)::numeric, 2)::float AS state_age,
       regexp_replace(query, '\\s+', ' ', 'g') AS query
FROM pg_stat_activity
WHERE application_name = %s
ORDER BY pid
"""


class ActivityWatch:
    """pg_stat_activity of one application_name, every `every` seconds until stop(), from a thread."""

    def __init__(self, dsn: str, application_name: str, watcher_name: str, every: float = 0.2) -> None:
        self.dsn = dsn
        self.application_name = application_name
        self.watcher_name = watcher_name
        self.every = every
        self.snapshots: list[Snapshot] = []
        self._task: asyncio.Task | None = None
        self._conn: psycopg.Connection | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        self._origin = time.monotonic()
        self._conn = await asyncio.to_thread(self._connect)
        self._task = asyncio.create_task(self._every(), name="pg_stat_activity snapshots")

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=5, application_name=self.watcher_name)

    async def snapshot(self) -> Snapshot:
        assert self._conn is not None
        at = time.monotonic() - self._origin
        rows = await asyncio.to_thread(self._query, self._conn)
        self.snapshots.append(Snapshot(round(at, 2), rows))
        return self.snapshots[-1]

    def _query(self, conn: psycopg.Connection) -> list[dict[str, Any]]:
        cursor = conn.execute(_ACTIVITY, [self.application_name])
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    async def _every(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self.every)
                return
            except TimeoutError:
                await self.snapshot()

    async def stop(self) -> None:
        """Let a snapshot under way finish (the connection is used by one thread at a time), then close."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._conn is not None:
            await asyncio.to_thread(self._conn.close)
            self._conn = None
