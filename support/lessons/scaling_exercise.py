"""Notebook 07's exercise: pool settings for a payment service, and feedback on the learner's answer.

The feedback compares the answer with what the service needs, in the terms of
the calculator (the busiest worker's wait for a connection, the server's
budget), and names the mistake it recognises: the defaults, an even split that
forgets the uneven workers, a pool that relies on overflow at the normal peak,
no headroom for a slow spell, or far more connections than the target needs.
"""

from __future__ import annotations

from typing import Any

from .scaling_sizing import PoolPlan, size_pools, wait_probability

#: The service of the exercise, as the notebook describes it.
PAYMENTS: dict[str, Any] = {
    "request_rate": 120,  # requests per second at peak, all workers
    "hold_mean": 0.04,  # seconds a request holds its connection, mean
    "hold_p95": 0.09,  # ... 95th percentile
    "workers": 6,
    "imbalance": 1.5,  # the busiest worker gets 1.5 x the even share (measured in production)
    "reserved": 20,  # the reporting job's connections
    "wait_target": 0.05,  # 99.9 % of requests get a connection within 50 ms
    "wait_quantile": 0.999,
}


def payment_plan(max_connections: int, superuser_reserved: int) -> PoolPlan:
    """The calculator's plan for the payment service on a server with these settings."""
    return size_pools(**PAYMENTS, max_connections=max_connections, superuser_reserved=superuser_reserved)


def exercise_feedback(pool_size: object, max_overflow: object, *, max_connections: int, superuser_reserved: int) -> str:
    """Feedback on (pool_size, max_overflow) per worker for the payment service on this server."""
    if pool_size is None or max_overflow is None:
        return "not yet: set EXERCISE_POOL_SIZE and EXERCISE_MAX_OVERFLOW (size_pools gives both)"
    for name, value, minimum in (("EXERCISE_POOL_SIZE", pool_size, 1), ("EXERCISE_MAX_OVERFLOW", max_overflow, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            return f"not yet: {name} must be a whole number of at least {minimum}, got {value!r}"
    assert isinstance(pool_size, int) and isinstance(max_overflow, int)
    plan = payment_plan(max_connections, superuser_reserved)
    workers, rate, limit = plan.workers, plan.busiest_rate, pool_size + max_overflow
    total = workers * limit
    target = f"{plan.wait_quantile:.1%} within {plan.wait_target * 1000:g} ms"
    late_at_peak = wait_probability(limit, rate, plan.hold_mean, plan.wait_target)
    late_when_slow = wait_probability(limit, rate, PAYMENTS["hold_p95"], plan.wait_target)
    allowed = 1 - plan.wait_quantile

    if total > plan.available:
        defaults = " (the defaults)" if (pool_size, max_overflow) == (5, 10) else ""
        return (
            f"not yet: {workers} x ({pool_size} + {max_overflow}) = {total} connections{defaults}, but the server has "
            f"{plan.available} for this service ({max_connections} - {superuser_reserved} reserved - "
            f"{PAYMENTS['reserved']} for the reporting job). Under a burst the last workers get 'too many clients'."
        )
    if late_at_peak > allowed:
        even = size_pools(**{**PAYMENTS, "imbalance": 1.0}, max_connections=max_connections)
        hint = (
            " You sized for an even split: the busiest worker gets 1.5 x its share."
            if limit == even.pool_size + even.max_overflow or pool_size == even.pool_size
            else " Little's law gives the average; random arrivals queue well before the pool is busy on average."
        )
        return (
            f"not yet: the busiest worker gets {rate:g} requests/s, and with {limit} connections "
            f"{_share(late_at_peak)} of them would wait over {plan.wait_target * 1000:g} ms for one at the normal "
            f"peak (target: {target}).{hint}"
        )
    if pool_size < plan.pool_size:
        return (
            f"almost: the target holds at the peak only with overflow connections: pool_size {pool_size} keeps fewer "
            f"open than the {plan.pool_size} the busiest worker needs, so overflow connections open and close all "
            "day (each a new server process and a login). Raise pool_size."
        )
    if late_when_slow > allowed:
        return (
            f"almost: fine at the mean hold time, but in a slow spell (every request holding its connection for the "
            f"p95, {PAYMENTS['hold_p95']} s) {_share(late_when_slow)} of the busiest worker's requests would wait over "
            f"{plan.wait_target * 1000:g} ms. Add max_overflow for that headroom (the calculator's step 4)."
        )
    if pool_size >= 2 * plan.pool_size:
        return (
            f"almost: it fits and meets the target, but each worker keeps {pool_size} connections open where "
            f"{plan.pool_size} meet the target: {workers * (pool_size - plan.pool_size)} idle server processes, "
            "on a server shared with the reporting job."
        )
    return (
        f"well done: {workers} x ({pool_size} + {max_overflow}) = {total} of {plan.available} connections; the busiest "
        f"worker ({rate:g}/s) keeps {target} at the peak ({_share(late_at_peak)} wait longer) and in a slow spell "
        f"({_share(late_when_slow)})."
    )


def _share(probability: float) -> str:
    return "under 0.01%" if probability < 0.0001 else f"{probability:.2%}"
