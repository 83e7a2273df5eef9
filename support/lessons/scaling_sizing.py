"""A pool sizing calculator: from traffic and the server's limit to pool settings.

The arithmetic is short, and every step of it is printed, because the
numbers are only as good as the inputs and the learner should see which
input drives which output:

1. Little's law: connections busy on average = request rate x time each
   request holds a connection (use a p95 of the database time, not the mean).
2. Headroom: arrivals come in bursts, so plan for more than the average.
3. The server's budget: max_connections, minus superuser_reserved_connections
   (a non-superuser application can never use those), minus what other
   clients need (migrations, cron jobs, an admin's psql, monitoring).
4. The per-worker split: every worker process has its own pool, so the total
   is divided by the number of workers. pool_size covers a worker's share of
   the average, max_overflow the burst on top.
5. PgBouncer: when the app connects through it, the pools above are client
   connections, which are cheap; the server connections are PgBouncer's
   default_pool_size, shared by all workers, sized to the burst.

Bad input raises ValueError with a message that says what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PoolPlan:
    """What ``size_pools()`` recommends, with the inputs and the reasoning."""

    request_rate: float
    db_time_p95: float
    workers: int
    max_connections: int
    reserved: int
    superuser_reserved: int
    headroom: float
    busy: float  # Little's law, all workers together
    wanted: int  # busy x headroom, rounded up
    available: int  # connections the application may open on the server
    pool_size: int  # per worker
    max_overflow: int  # per worker
    pgbouncer_pool_size: int  # PgBouncer's default_pool_size (server connections, all workers)
    reasoning: tuple[str, ...]

    @property
    def per_worker_limit(self) -> int:
        """pool_size + max_overflow: the most connections one worker opens."""
        return self.pool_size + self.max_overflow

    @property
    def total_connections(self) -> int:
        """The most connections all workers together open when connected directly."""
        return self.workers * self.per_worker_limit

    @property
    def saturation_rate(self) -> float:
        """Requests per second at which all the pools' connections are busy (Little's law)."""
        return self.total_connections / self.db_time_p95

    def explain(self) -> str:
        return "\n".join(self.reasoning)

    def __str__(self) -> str:
        return self.explain()

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(self.explain())


def size_pools(
    *,
    request_rate: float,
    db_time_p95: float,
    workers: int,
    max_connections: int,
    reserved: int = 0,
    superuser_reserved: int = 3,
    headroom: float = 1.5,
) -> PoolPlan:
    """Pool settings per worker, and PgBouncer's server pool, for a given load.

    request_rate: requests per second that use the database, all workers together.
    db_time_p95: seconds a request holds its connection, 95th percentile.
    workers: worker processes (uvicorn --workers, times the number of machines).
    max_connections, superuser_reserved: the server's settings (SHOW them).
    reserved: connections other clients of the same server need.
    headroom: how much more than the average to plan for (1.5 = 50 % more).
    """
    _check_number("request_rate", request_rate, "requests per second, e.g. request_rate=50")
    _check_number("db_time_p95", db_time_p95, "seconds a request holds a connection, e.g. db_time_p95=0.05 for 50 ms")
    _check_count("workers", workers, 1, "worker processes, e.g. workers=4")
    _check_count("max_connections", max_connections, 1, "read it with SHOW max_connections")
    _check_count("reserved", reserved, 0, "connections other clients need, e.g. reserved=10 (0 if none)")
    _check_count(
        "superuser_reserved", superuser_reserved, 0, "read it with SHOW superuser_reserved_connections (default 3)"
    )
    if isinstance(headroom, bool) or not isinstance(headroom, (int, float)) or not 1 <= headroom < math.inf:
        raise ValueError(
            f"headroom must be a number of at least 1 (1.5 plans for 50 % above the average; "
            f"below 1 would plan for less than the average), got {headroom!r}"
        )

    available = max_connections - superuser_reserved - reserved
    if available < 1:
        raise ValueError(
            f"no connections left for the application: max_connections {max_connections} - "
            f"superuser_reserved {superuser_reserved} - reserved {reserved} = {available}. "
            "Raise max_connections or reserve less for other clients."
        )
    if workers > available:
        raise ValueError(
            f"{workers} workers need at least one connection each, but only {available} are available "
            f"(max_connections {max_connections} - superuser_reserved {superuser_reserved} - reserved "
            f"{reserved}). Run fewer workers, raise max_connections, or reserve less for other clients."
        )
    busy = request_rate * db_time_p95
    if busy > available:
        raise ValueError(
            f"the server cannot carry this load: {request_rate:g}/s x {db_time_p95:g} s = {busy:.1f} "
            f"connections busy on average, but only {available} are available. No pool setting fixes "
            "that: make the queries shorter, cache, move work out of the request, or raise max_connections."
        )

    wanted = math.ceil(busy * headroom - 1e-9)
    per_worker_busy = busy / workers
    per_worker_limit = min(math.ceil(wanted / workers), available // workers)
    if per_worker_limit < per_worker_busy:
        raise ValueError(
            f"{workers} workers cannot split {available} connections so that each carries its share of "
            f"{per_worker_busy:.2f} busy connections. Run fewer workers (or put PgBouncer in front and "
            "size its pool instead)."
        )
    pool_size = max(1, min(math.ceil(per_worker_busy - 1e-9), per_worker_limit))
    max_overflow = per_worker_limit - pool_size
    pgbouncer_pool_size = min(wanted, available)
    total = workers * per_worker_limit

    lines = [
        f"1. Little's law: {request_rate:g} requests/s x {db_time_p95:g} s = {busy:.2f} connections busy "
        "on average (all workers together).",
        f"2. Headroom x{headroom:g} for bursts: plan for {wanted} connections.",
        f"3. The server: max_connections {max_connections} - {superuser_reserved} reserved for superusers "
        f"- {reserved} for other clients = {available} available.",
        f"4. Per worker ({workers} worker{'s' if workers != 1 else ''}, traffic assumed evenly spread): "
        f"{per_worker_busy:.2f} busy -> "
        f"pool_size={pool_size}; up to {per_worker_limit} in bursts -> max_overflow={max_overflow}.",
        f"5. Direct: {workers} x ({pool_size} + {max_overflow}) = {total} connections at most, "
        f"of {available} available.",
        f"6. Through PgBouncer: default_pool_size={pgbouncer_pool_size} server connections shared by all "
        "workers; the app pools above then count as client connections.",
        f"7. These pools are all busy at {total} / {db_time_p95:g} s = {total / db_time_p95:.1f} requests/s "
        f"({total / db_time_p95 / request_rate:.2f} x the expected rate).",
    ]
    if wanted > total:
        lines.append(
            f"   Note: the server's budget cut the headroom: {total} connections instead of the {wanted} planned."
        )
    return PoolPlan(
        request_rate=request_rate,
        db_time_p95=db_time_p95,
        workers=workers,
        max_connections=max_connections,
        reserved=reserved,
        superuser_reserved=superuser_reserved,
        headroom=headroom,
        busy=busy,
        wanted=wanted,
        available=available,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pgbouncer_pool_size=pgbouncer_pool_size,
        reasoning=tuple(lines),
    )


def _check_number(name: str, value: object, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a number greater than 0 ({meaning}), got {value!r}")


def _check_count(name: str, value: object, minimum: int, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum} ({meaning}), got {value!r}")
