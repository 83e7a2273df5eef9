"""A pool sizing calculator for random traffic over uneven workers (notebook 07).

Every step is printed, because the numbers are only as good as the inputs and
the learner should see which input drives which output:

1. Little's law with the *mean* time a request holds a connection gives the
   connections busy on average. (A tail percentile there would overstate the
   average; the tail comes back in step 4, as headroom.)
2. Uneven workers: each worker process has its own pool, and the workers do
   not get equal shares (the operating system hands connections to whichever
   worker accepts first, and keep-alive connections stay with their worker).
   The busiest worker gets ``imbalance`` times the even share; measure it.
3. Random arrivals: requests arrive at random (a Poisson process), so they
   queue for a connection before the pool is fully busy on average. Erlang C
   (the M/M/c queue) gives the probability that a request waits longer than
   ``wait_target``; the smallest pool that keeps it under
   ``1 - wait_quantile`` is the worker's ``pool_size``. Exponential hold times
   are assumed, which overstates waits for near-constant ones: a safe error.
4. Tail headroom: in a slow spell, when every request holds its connection
   for ``hold_p95``, the busiest worker needs more connections for the same
   target; ``max_overflow`` opens those only when needed.
5. The server's budget: max_connections, minus superuser_reserved_connections
   (an ordinary role never gets those), minus what other clients need.
6. PgBouncer pools across workers, so its server pool is sized by Erlang C
   on the whole rate, with no imbalance.

Bad input raises ValueError with a message that says what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in an M/M/c queue (Erlang C); 1.0 when offered >= servers.

    ``offered`` is the load in erlangs (arrival rate x mean service time).
    Computed through the Erlang B recursion, which stays stable for large
    ``servers``.
    """
    if servers < 1:
        raise ValueError(f"servers must be at least 1, got {servers!r}")
    if offered < 0:
        raise ValueError(f"offered load must be >= 0, got {offered!r}")
    if offered >= servers:
        return 1.0
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered * blocking / (k + offered * blocking)
    return servers * blocking / (servers - offered * (1 - blocking))


def wait_probability(connections: int, rate: float, hold_mean: float, wait: float) -> float:
    """P(a request waits longer than ``wait`` seconds for one of ``connections``), M/M/c."""
    offered = rate * hold_mean
    if offered >= connections:
        return 1.0
    return erlang_c(connections, offered) * math.exp(-(connections - offered) * wait / hold_mean)


def connections_for_target(rate: float, hold_mean: float, wait: float, quantile: float) -> int:
    """The smallest pool with P(wait > ``wait``) <= 1 - ``quantile`` at this rate."""
    connections = math.floor(rate * hold_mean) + 1  # fewer cannot even keep up
    while wait_probability(connections, rate, hold_mean, wait) > 1 - quantile:
        connections += 1
    return connections


def highest_rate_for_target(connections: int, hold_mean: float, wait: float, quantile: float) -> float:
    """The highest arrival rate at which ``connections`` still meet the wait target (bisection)."""
    low, high = 0.0, connections / hold_mean
    for _ in range(60):
        middle = (low + high) / 2
        if wait_probability(connections, middle, hold_mean, wait) <= 1 - quantile:
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class PoolPlan:
    """What ``size_pools()`` recommends, with the inputs and the reasoning."""

    request_rate: float
    hold_mean: float
    hold_p95: float | None
    workers: int
    imbalance: float
    wait_target: float
    wait_quantile: float
    available: int  # connections the application may open on the server
    busy: float  # Little's law, all workers together
    busiest_rate: float  # requests per second reaching the busiest worker
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
        """Total requests/s at which the busiest worker's pool is all busy on average (Little's law)."""
        return self.workers * self.per_worker_limit / (self.hold_mean * self.imbalance)

    @property
    def target_rate(self) -> float:
        """Total requests/s up to which the busiest worker still meets the wait target."""
        limit, target = self.per_worker_limit, (self.wait_target, self.wait_quantile)
        per_worker = highest_rate_for_target(limit, self.hold_mean, *target)
        return per_worker * self.workers / self.imbalance

    def explain(self) -> str:
        return "\n".join(self.reasoning)

    def __str__(self) -> str:
        return self.explain()

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(self.explain())


def size_pools(
    *,
    request_rate: float,
    hold_mean: float,
    workers: int,
    max_connections: int,
    hold_p95: float | None = None,
    imbalance: float | None = None,
    wait_target: float = 0.05,
    wait_quantile: float = 0.99,
    reserved: int = 0,
    superuser_reserved: int = 3,
) -> PoolPlan:
    """Pool settings per worker, and PgBouncer's server pool, for a given load.

    request_rate: requests per second that use the database at peak, all workers together.
    hold_mean: mean seconds a request holds its connection (measure it).
    workers: worker processes (uvicorn --workers, times the number of machines).
    max_connections, superuser_reserved: the server's settings (SHOW them).
    hold_p95: 95th percentile of the hold time; only sizes the overflow headroom.
    imbalance: the busiest worker's share of requests divided by the even share (1/workers);
        measure it. Required with more than one worker.
    wait_target, wait_quantile: e.g. 0.05 and 0.99 = "99 % of requests get a connection within 50 ms".
    reserved: connections other clients of the same server need.
    """
    _check_number("request_rate", request_rate, "requests per second, e.g. request_rate=50")
    _check_number("hold_mean", hold_mean, "mean seconds a request holds a connection, e.g. hold_mean=0.04 for 40 ms")
    _check_count("workers", workers, 1, "worker processes, e.g. workers=4")
    _check_count("max_connections", max_connections, 1, "read it with SHOW max_connections")
    _check_count("reserved", reserved, 0, "connections other clients need, e.g. reserved=10 (0 if none)")
    _check_count(
        "superuser_reserved", superuser_reserved, 0, "read it with SHOW superuser_reserved_connections (default 3)"
    )
    _check_number("wait_target", wait_target, "seconds a request may wait for a connection, e.g. wait_target=0.05")
    if isinstance(wait_quantile, bool) or not isinstance(wait_quantile, (int, float)) or not 0 < wait_quantile < 1:
        raise ValueError(
            f"wait_quantile must be a fraction between 0 and 1 (0.99 = 99 % of requests), got {wait_quantile!r}"
        )
    if hold_p95 is not None:
        _check_number("hold_p95", hold_p95, "95th percentile of the hold time in seconds, e.g. hold_p95=0.09")
        if hold_p95 < hold_mean:
            raise ValueError(
                f"hold_p95 ({hold_p95:g} s) is below hold_mean ({hold_mean:g} s); a 95th percentile is at least "
                "the typical value. Are the two swapped, or in different units?"
            )
    if imbalance is None:
        if workers > 1:
            raise ValueError(
                f"with {workers} workers, give imbalance: the busiest worker's share of requests divided by "
                f"the even share 1/{workers} (1.0 = perfectly even; measure it, e.g. imbalance=1.5)"
            )
        imbalance = 1.0
    if isinstance(imbalance, bool) or not isinstance(imbalance, (int, float)) or not 1 <= imbalance <= workers:
        raise ValueError(
            f"imbalance must be between 1 (even) and workers={workers} (one worker gets everything), got {imbalance!r}"
        )

    available = max_connections - superuser_reserved - reserved
    if available < workers:
        raise ValueError(
            f"{workers} worker{'s' if workers != 1 else ''} need at least one connection each, but only {available} "
            f"are available (max_connections {max_connections} - superuser_reserved {superuser_reserved} - "
            f"reserved {reserved}). Run fewer workers, raise max_connections, or reserve less for other clients."
        )
    busy = request_rate * hold_mean
    if busy > available:
        raise ValueError(
            f"the server cannot carry this load: {request_rate:g}/s x {hold_mean:g} s = {busy:.1f} connections busy "
            f"on average, but only {available} are available. No pool setting fixes that: make the queries shorter, "
            "cache, move work out of the request, or raise max_connections."
        )

    busiest = request_rate * imbalance / workers
    pool_size = connections_for_target(busiest, hold_mean, wait_target, wait_quantile)
    slow = connections_for_target(busiest, hold_p95, wait_target, wait_quantile) if hold_p95 is not None else pool_size
    max_overflow = max(0, slow - pool_size)
    pct = f"{wait_quantile:.1%}".replace(".0%", "%")
    lines = [
        f"1. Little's law (mean hold): {request_rate:g} requests/s x {hold_mean:g} s = {busy:.2f} connections busy "
        "on average, all workers together.",
        f"2. Uneven workers: the busiest of {workers} gets {imbalance:.2f} x the even share = {busiest:.1f} requests/s "
        f"({busiest * hold_mean:.2f} busy on average).",
        f"3. Random arrivals (Erlang C): with {pool_size - 1} connections "
        f"{_chance(pool_size - 1, busiest, hold_mean, wait_target)} of its requests would wait over "
        f"{wait_target * 1000:g} ms, with {pool_size} {_chance(pool_size, busiest, hold_mean, wait_target)}; "
        f"target: {pct} within {wait_target * 1000:g} ms -> pool_size={pool_size}.",
        (
            f"4. Tail headroom: in a slow spell, with every request holding its connection for the p95 {hold_p95:g} s, "
            f"the busiest worker would need {slow} for the same target -> max_overflow={max_overflow}."
            if hold_p95 is not None
            else "4. Tail headroom: no hold_p95 given -> max_overflow=0."
        ),
        f"5. The server: max_connections {max_connections} - {superuser_reserved} reserved for superusers "
        f"- {reserved} for other clients = {available} available.",
    ]
    if workers * pool_size > available:
        raise ValueError(
            f"{workers} workers x pool_size {pool_size} = {workers * pool_size} connections, but only {available} are "
            "available. Put PgBouncer in front (its pool is shared by all workers), run fewer workers, "
            "or relax the wait target."
        )
    if workers * (pool_size + max_overflow) > available:
        max_overflow = available // workers - pool_size
        lines.append(f"   The budget cuts the overflow to {max_overflow}: {workers} x {pool_size + max_overflow} fit.")
    total = workers * (pool_size + max_overflow)
    pgbouncer_pool_size = min(connections_for_target(request_rate, hold_mean, wait_target, wait_quantile), available)
    lines += [
        f"6. Direct: {workers} x ({pool_size} + {max_overflow}) = {total} connections at most, "
        f"of {available} available.",
        f"7. Through PgBouncer: default_pool_size={pgbouncer_pool_size} server connections (Erlang C on the whole "
        f"{request_rate:g}/s: PgBouncer pools across workers, so imbalance does not matter there).",
    ]
    plan = PoolPlan(
        request_rate=request_rate,
        hold_mean=hold_mean,
        hold_p95=hold_p95,
        workers=workers,
        imbalance=imbalance,
        wait_target=wait_target,
        wait_quantile=wait_quantile,
        available=available,
        busy=busy,
        busiest_rate=busiest,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pgbouncer_pool_size=pgbouncer_pool_size,
        reasoning=(),
    )
    lines.append(
        f"8. The busiest worker's pool is all busy at {plan.saturation_rate:.0f} requests/s in total "
        f"(saturation, {plan.saturation_rate / request_rate:.1f} x the peak); the wait target holds up to "
        f"{plan.target_rate:.0f}/s."
    )
    return PoolPlan(**{**plan.__dict__, "reasoning": tuple(lines)})


def _chance(connections: int, rate: float, hold_mean: float, wait: float) -> str:
    if connections < 1:
        return "every one"
    return f"{wait_probability(connections, rate, hold_mean, wait):.2%}"


def _check_number(name: str, value: object, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a number greater than 0 ({meaning}), got {value!r}")


def _check_count(name: str, value: object, minimum: int, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum} ({meaning}), got {value!r}")
