"""The three vantage points of a database incident, sampled on one clock and drawn side by side.

The app's pool (scraped from its /metrics, see ``pool_alerts.scrape``),
PgBouncer (``SHOW POOLS`` and ``SHOW STATS`` on its admin console) and
PostgreSQL (``pg_stat_activity``) each see part of the story: a pool that
looks calm can sit in front of a PgBouncer queue, and a PgBouncer queue
in front of server connections that are idle in transaction.

``watch_servers()`` samples PgBouncer and the server from a worker thread,
over one connection each, so that the event loop serving the app is not
blocked by the sampling. ``plot_dashboard()`` draws the three panels with a
shared time axis; ``plot_pool()`` draws one app's pool series.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from matplotlib.axes import Axes

from ..stack import Stack
from .pool_alerts import AlertOutcome, Series

_CONNECT_TIMEOUT = 5
POOLS_COLUMNS = ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "maxwait")
STATS_COLUMNS = ("total_xact_count", "total_query_count", "total_wait_time")
_ACTIVITY_SQL = """
SELECT coalesce(state, 'unknown'), count(*), coalesce(max(extract(epoch FROM now() - xact_start)), 0)::float
FROM pg_stat_activity
WHERE application_name LIKE %s AND backend_type = 'client backend'
GROUP BY 1
"""


@dataclass
class ServerSamples:
    """PgBouncer's and PostgreSQL's view over time.

    ``pools[i]`` has the SHOW POOLS columns of POOLS_COLUMNS for the
    stack's database and role (``maxwait`` in seconds, with its
    microseconds); ``stats[i]`` the cumulative SHOW STATS columns of
    STATS_COLUMNS for the database; ``activity[i]`` the count of matching
    server connections per state, and "oldest transaction (s)".
    """

    origin: float
    times: list[float] = field(default_factory=list)
    pools: list[dict[str, float]] = field(default_factory=list)
    stats: list[dict[str, float]] = field(default_factory=list)
    activity: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def series(self, source: str, key: str) -> tuple[list[float], list[float]]:
        """Times and values of one column: source is "pools", "stats" or "activity" (missing counts as 0)."""
        rows = {"pools": self.pools, "stats": self.stats, "activity": self.activity}[source]
        return list(self.times), [float(row.get(key, 0.0)) for row in rows]

    def peak(self, source: str, key: str) -> float:
        return max(self.series(source, key)[1], default=0.0)

    def states(self) -> list[str]:
        """Every server connection state seen, sorted."""
        return sorted({key for row in self.activity for key in row if key != "oldest transaction (s)"})


def _sample(
    stack: Stack,
    application_name: str,
    samples: ServerSamples,
    every: float,
    stop: threading.Event,
    first: threading.Event,
) -> None:
    try:
        with (
            # prepare_threshold=None: psycopg would prepare a query run 5 times, and the
            # admin console speaks only the simple query protocol.
            psycopg.connect(
                stack.admin_dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT, prepare_threshold=None
            ) as admin,
            psycopg.connect(stack.database_dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT) as server,
        ):
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    pools = _rows(admin, "SHOW POOLS")
                    stats = _rows(admin, "SHOW STATS")
                    activity = server.execute(_ACTIVITY_SQL, [application_name]).fetchall()
                except psycopg.Error as exc:
                    samples.errors.append(f"{type(exc).__name__}: {exc}")
                else:
                    pool = next(
                        (
                            r
                            for r in pools
                            if r["database"] == stack.pgbouncer_database_name and r["user"] == stack.role_name
                        ),
                        {},
                    )
                    stat = next((r for r in stats if r["database"] == stack.pgbouncer_database_name), {})
                    row = {k: float(pool.get(k, 0)) for k in POOLS_COLUMNS}
                    row["maxwait"] += float(pool.get("maxwait_us", 0)) / 1e6
                    by_state: dict[str, float] = {state: float(count) for state, count, _ in activity}
                    by_state["oldest transaction (s)"] = max((age for _, _, age in activity), default=0.0)
                    samples.times.append(started - samples.origin)
                    samples.pools.append(row)
                    samples.stats.append({k: float(stat.get(k, 0)) for k in STATS_COLUMNS})
                    samples.activity.append(by_state)
                first.set()
                stop.wait(max(0.0, every - (time.perf_counter() - started)))

    finally:
        first.set()  # also when connecting failed: the caller waits for it


def _rows(connection: psycopg.Connection, command: str) -> list[dict[str, Any]]:
    cursor = connection.execute(command)
    names = [c.name for c in cursor.description or []]
    return [dict(zip(names, values)) for values in cursor.fetchall()]


@contextlib.asynccontextmanager
async def watch_servers(
    stack: Stack, application_name: str, *, every: float = 0.2, origin: float | None = None
) -> AsyncIterator[ServerSamples]:
    """Sample PgBouncer and PostgreSQL every ``every`` seconds while the block runs.

    ``application_name`` is a LIKE pattern for pg_stat_activity (PgBouncer
    passes each client's name on to the server connection it lends).
    ``origin`` (a ``time.perf_counter()`` value) shares a time axis with a
    scraped ``Series``.
    """
    samples = ServerSamples(origin=time.perf_counter() if origin is None else origin)
    stop, first = threading.Event(), threading.Event()
    worker = asyncio.create_task(asyncio.to_thread(_sample, stack, application_name, samples, every, stop, first))
    try:
        await asyncio.to_thread(first.wait, _CONNECT_TIMEOUT * 2)  # the first sample, before the block's load
        yield samples
    finally:
        stop.set()
        await worker


def plot_pool(series: Series, pool: str, *, ax: Axes, outcomes: tuple[AlertOutcome, ...] = (), title: str = "") -> Axes:
    """Checked out, idle and waiting over time, the capacity, and the firing periods of alerts shaded."""
    highest = 1.0
    for name, label, style in (
        ("db_pool_checked_out", "checked out", "-"),
        ("db_pool_idle", "idle", ":"),
        ("db_pool_waiting", "waiting", "-"),
    ):
        times, values = series.values(name, pool=pool)
        ax.step(times, values, where="post", linestyle=style, label=label)
        highest = max([highest, *values])
    times, capacity = series.values("db_pool_capacity", pool=pool)
    if capacity:
        ax.axhline(capacity[-1], color="tab:red", linestyle="--", linewidth=1, label=f"capacity {capacity[-1]:g}")
        highest = max(highest, capacity[-1])
    for outcome, color in zip(outcomes, ("tab:red", "tab:orange", "tab:purple")):
        for index, (start, end) in enumerate(outcome.firing):
            ax.axvspan(start, end, color=color, alpha=0.12, label=f"{outcome.rule.name} firing" if index == 0 else None)
    ax.set(title=title, xlabel="seconds", ylabel="connections / checkouts")
    ax.set_ylim(0, highest * 1.6)  # room for the legend above the lines
    ax.legend(fontsize="x-small", loc="upper left", ncols=2)
    return ax


def plot_dashboard(series: Series, pool: str, servers: ServerSamples, axes: tuple[Axes, Axes, Axes]) -> None:
    """Three panels on one time axis: the app's pool, PgBouncer's pool, the server's connections."""
    app_ax, bouncer_ax, server_ax = axes
    plot_pool(series, pool, ax=app_ax, title="App: SQLAlchemy pool (scraped /metrics)")
    app_ax.set_xlabel("")
    for key, label in (
        ("sv_active", "sv_active (server connections lent)"),
        ("cl_waiting", "cl_waiting (clients queued)"),
    ):
        bouncer_ax.step(*servers.series("pools", key), where="post", label=label)
    wait_ax = bouncer_ax.twinx()
    wait_ax.plot(*servers.series("pools", "maxwait"), color="tab:gray", linestyle=":", label="maxwait (s, right)")
    wait_ax.set_ylabel("seconds")
    bouncer_ax.set(title="PgBouncer: SHOW POOLS", ylabel="connections")
    _leave_room(bouncer_ax, wait_ax)
    _legend(bouncer_ax, wait_ax)
    for state in servers.states():
        server_ax.step(*servers.series("activity", state), where="post", label=state)
    age_ax = server_ax.twinx()
    oldest = servers.series("activity", "oldest transaction (s)")
    age_ax.plot(*oldest, color="tab:gray", linestyle=":", label="oldest transaction (s, right)")
    age_ax.set_ylabel("seconds")
    server_ax.set(title="PostgreSQL: pg_stat_activity by state", xlabel="seconds", ylabel="connections")
    _leave_room(server_ax, age_ax)
    _legend(server_ax, age_ax)


def _leave_room(*axes: Axes) -> None:
    """Start each y axis at 0 and leave the top third free for the legend."""
    for ax in axes:
        ax.set_ylim(0, max(ax.get_ylim()[1], 1e-9) * 1.5)


def _legend(ax: Axes, twin: Axes) -> None:
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = twin.get_legend_handles_labels()
    ax.legend(handles + more_handles, labels + more_labels, fontsize="x-small", loc="upper left", ncols=2)
