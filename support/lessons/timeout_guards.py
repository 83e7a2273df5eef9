"""Plumbing for notebook 10 (timeouts as guards): a server that never answers,
the servers' own log lines, a run's latency per status code, and the live
probe behind the exercise's check.

The notebook's point is in what the timeouts do; these helpers only set the
scene and read the results, so the cells stay short.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import socket
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from support.lab.load import LoadResult
from support.lab.naming import named
from support.lab.tables import Table
from support.stack import Stack

# "2026-11-27 11:11:24.702 UTC [20306] " at the start of PostgreSQL's and PgBouncer's lines.
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \S+ \[\d+\] ")


@contextlib.contextmanager
def unresponsive_port() -> Iterator[int]:
    """A 127.0.0.1 port that accepts TCP connections and never says a word.

    The operating system completes the TCP handshake for a listening socket
    even if nobody calls accept(), so a client connects, sends its startup
    message and waits for an answer that never comes: what a database behind a
    dead network path or a hung host looks like. Only a connect timeout ends
    the wait.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]
    finally:
        listener.close()


def server_log(stack: Stack, server: str, containing: str) -> list[str]:
    """Lines of a private stack's PostgreSQL or PgBouncer log that contain `containing`.

    The time stamp and process id at the start of each line are dropped. Only
    a stack this kernel started (``start_private_stack``) has its logs here; an
    attached stack's logs live wherever that stack was started.
    """
    if server not in ("postgres", "pgbouncer"):
        raise ValueError(f"server must be 'postgres' or 'pgbouncer', got {server!r}")
    if stack.mode != "private" or not stack.directory:
        raise ValueError("only a private stack's logs can be read here; this one was started elsewhere")
    pattern = "postgres.log" if server == "postgres" else "pgbouncer-*.log"
    lines = []
    for path in sorted(Path(stack.directory).glob(pattern)):
        for line in path.read_text(errors="replace").splitlines():
            if containing in line:
                lines.append(_LOG_PREFIX.sub("", line))
    return lines


def latency_by_status(runs: dict[str, LoadResult]) -> Table:
    """One row per run and status code: how many, and how long they took (ms).

    Requests that got no response at all are counted under their error's
    class name instead of a status code.
    """
    rows = []
    for name, run in runs.items():
        groups: dict[str, list[float]] = {}
        for record in run.records:
            key = str(record.status) if record.status is not None else str(record.error)
            groups.setdefault(key, []).append(record.latency)
        for key in sorted(groups):
            latencies = sorted(groups[key])
            rows.append(
                {
                    "run": name,
                    "status": key,
                    "requests": len(latencies),
                    "min (ms)": round(latencies[0] * 1000),
                    "p50 (ms)": round(_nearest_rank(latencies, 50) * 1000),
                    "max (ms)": round(latencies[-1] * 1000),
                }
            )
    return Table(rows, title="Latency by status code")


def _nearest_rank(ordered: list[float], percent: float) -> float:
    return ordered[math.ceil(percent / 100 * len(ordered)) - 1]


async def probe_budget(
    database_url: str,
    *,
    request: float,
    statement_timeout: float,
    pool_timeout: float,
    slowest_query: float,
    application_name: str,
) -> list[str]:
    """Try a budget on a real server; return what went wrong, in words (empty: all good).

    Three requests, each bounded by `request` seconds (``asyncio.timeout``, the
    way an app-level request limit works), on an engine with one connection,
    the given ``pool_timeout`` and ``statement_timeout``:

    1. the slowest legitimate query (``pg_sleep(slowest_query)``) must finish;
    2. a runaway query must be cancelled by the server ("canceling statement
       due to statement timeout"), not by the request limit;
    3. with the only connection taken, a checkout must fail with the pool's
       TimeoutError, again before the request limit.

    The statement timeout is sent as a startup parameter, which works when
    ``database_url`` points at PostgreSQL directly (not through PgBouncer).
    """
    statement_ms = max(1, round(statement_timeout * 1000))
    engine = create_async_engine(
        database_url,
        pool_size=1,
        max_overflow=0,
        pool_timeout=pool_timeout,
        connect_args=named(application_name, server_settings={"statement_timeout": str(statement_ms)}),
    )
    problems = []
    try:
        error, seconds = await _within(request, _sleep_query(engine, slowest_query))
        if error is not None:
            who = "statement_timeout" if "statement timeout" in str(error) else "the request limit"
            problems.append(
                f"the legitimate {slowest_query:g} s query failed after {seconds:.2f} s, stopped by {who}: "
                f"a limit must leave room for the slowest query that is not a bug."
            )
        error, seconds = await _within(request, _sleep_query(engine, 60))
        if error is None or "statement timeout" not in str(error):
            problems.append(
                f"the runaway query was not cancelled by the server ({_name(error)} after {seconds:.2f} s): "
                f"statement_timeout must fire before the request limit of {request:g} s."
            )
        async with engine.connect() as held:
            await held.scalar(text("SELECT 1"))
            error, seconds = await _within(request, _checkout(engine))
        if not isinstance(error, PoolTimeoutError):
            problems.append(
                f"waiting for a connection ended with {_name(error)} after {seconds:.2f} s, not the pool's "
                f"TimeoutError: pool_timeout must fire before the request limit of {request:g} s."
            )
    finally:
        await engine.dispose()
    return problems


async def _within(seconds: float, work: Awaitable[Any]) -> tuple[BaseException | None, float]:
    """Run `work` under a time limit; the exception it ended with (or None) and how long it took."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(seconds):
            await work
    except Exception as exc:
        return exc, time.perf_counter() - started
    return None, time.perf_counter() - started


async def _sleep_query(engine: AsyncEngine, seconds: float) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})


async def _checkout(engine: AsyncEngine) -> None:
    async with engine.connect():
        pass


def _name(error: BaseException | None) -> str:
    return "no error" if error is None else type(error).__name__
