"""Notebook 03: the pool that is too small for its traffic, under random arrivals.

Little's law gives the *mean* number of connections busy (arrival rate x hold
time). Random (Poisson) arrivals make that number swing around its mean: with
no limit on the pool, the count of requests holding a connection at a random
moment is Poisson-distributed with mean lambda x W, whatever the hold times are
(the M/G/infinity queue). So the share of time a pool of ``limit`` connections
is completely busy is about P(N >= limit). That is where checkout waits start,
well before the mean reaches the limit; failures need a wait longer than
``pool_timeout`` and come later.

This module turns one sweep run into a table row, states what the sweep
measured in sentences derived from its numbers, and checks the exercise
(validating what a learner typed, and cleaning up after every attempt).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import event

from ..lab.app_server import serve
from ..lab.load import LoadResult, open_loop
from ..lab.pool_recorder import PoolRecorder
from ..lab.settle import settled

Row = dict[str, Any]


def share_of_time_full(busy_on_average: float, limit: int) -> float:
    """P(N >= limit) for N ~ Poisson(busy_on_average): how often `limit` connections would all be in use."""
    if busy_on_average < 0 or limit < 0:
        raise ValueError(f"need busy_on_average >= 0 and limit >= 0, got {busy_on_average!r} and {limit!r}")
    term = math.exp(-busy_on_average)  # P(N = 0)
    below = 0.0
    for n in range(limit):
        below += term
        term *= busy_on_average / (n + 1)
    return max(0.0, 1.0 - below)


def connections_for(busy_on_average: float, full_at_most: float) -> int:
    """The smallest pool that random arrivals fill completely at most `full_at_most` of the time."""
    if not 0 < full_at_most < 1:
        raise ValueError(f"full_at_most is a share of time between 0 and 1, got {full_at_most!r}")
    limit = max(1, math.floor(busy_on_average))
    while share_of_time_full(busy_on_average, limit) > full_at_most:
        limit += 1
    return limit


def query_time_when_full(rate: float, limit: int, share: float) -> float:
    """The hold time (s) at which `rate` Poisson arrivals fill `limit` connections `share` of the time."""
    low, high = 0.0, limit / rate
    for _ in range(60):  # bisection: share_of_time_full grows with the hold time
        middle = (low + high) / 2
        low, high = (middle, high) if share_of_time_full(rate * middle, limit) < share else (low, middle)
    return (low + high) / 2


class QueueWatch:
    """For each request for a connection: were all `limit` connections in use (or being opened)?

    The pool's own count (``checkedout()``) includes overflow connections that
    are still being opened, which the checkout events only see once they are
    ready; on a busy machine opening one takes long enough to matter. So this
    wraps the pool's ``connect()`` for the block and reads the count there.
    Use it inside a ``PoolRecorder`` block: it restores what it found.
    """

    def __init__(self, engine: Any, limit: int) -> None:
        self.pool = getattr(engine, "sync_engine", engine).pool
        self.limit = limit
        self.found_full: list[bool] = []
        self._previous = self.pool.__dict__.get("connect")

    def __enter__(self) -> QueueWatch:
        inner = self._previous or type(self.pool).connect.__get__(self.pool)

        def watched_connect() -> Any:
            self.found_full.append(self.pool.checkedout() >= self.limit)
            return inner()

        self.pool.connect = watched_connect
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is None:
            del self.pool.connect
        else:
            self.pool.connect = self._previous

    @property
    def share_found_full(self) -> float:
        return sum(self.found_full) / len(self.found_full) if self.found_full else 0.0


def sweep_row(seconds: float, run: LoadResult, recorder: PoolRecorder, queue: QueueWatch, *, duration: float) -> Row:
    """One row of the sweep: the prediction for this run's own arrival rate next to what was measured."""
    summary = run.summary()
    arrived = summary["requests"]
    busy = arrived / duration * seconds  # Little's law with the rate this timetable really had
    waits = sorted(wait.waited for wait in recorder.waits)
    return {
        "query (s)": seconds,
        "busy, predicted": round(busy, 1),
        # from the moment the first requests can finish to the last arrival
        "mean checked out": round(recorder.mean_checked_out(seconds, duration), 1),
        "peak": recorder.peak_checked_out,
        "full, predicted": round(share_of_time_full(busy, queue.limit), 3),
        "found it full": round(queue.share_found_full, 3),
        "p95 wait (ms)": round(1000 * waits[math.ceil(0.95 * len(waits)) - 1]) if waits else 0,
        "requests": arrived,
        "failed": arrived - summary["ok"],
        "p95 latency (s)": round(summary["latency"]["p95"] or 0.0, 3),
        "load on time": not run.generator_fell_behind,
        "start lag p95 (ms)": round(1000 * (summary["start_lag"]["p95"] or 0.0)),
    }


def sweep_findings(rows: Sequence[Row], *, saturation: float, lower_bound: float) -> dict[str, Any]:
    """The facts the prose under the sweep rests on, computed from its rows."""
    by_query = {row["query (s)"]: row for row in rows}
    failed = [row["query (s)"] for row in rows if row["failed"]]
    queued = [row["query (s)"] for row in rows if row["found it full"] > 0]
    first_failure = min(failed, default=None)
    return {
        "by_query": by_query,
        "first_failure": first_failure,
        "first_queueing": min(queued, default=None),
        "queued_without_failing": [q for q in queued if not by_query[q]["failed"]],
        "late_rows": [row["query (s)"] for row in rows if not row["load on time"]],
        "failed_below_lower_bound": [q for q in failed if q < lower_bound],
        "saturation": saturation,
        "lower_bound": lower_bound,
    }


def describe_sweep(facts: dict[str, Any]) -> str:
    """Sentences that say what this run of the sweep measured, whatever it measured."""
    by_query, first_failure = facts["by_query"], facts["first_failure"]
    fair = [
        row
        for q, row in sorted(by_query.items())
        if q < facts["saturation"] and row["load on time"]  # below the mean's limit, load on its timetable
    ]
    lines = []
    if fair:
        lines.append(
            "Below saturation, with the load on its timetable: "
            + "; ".join(
                f"at {row['query (s)']} s, {row['mean checked out']} checked out on average against "
                f"{row['busy, predicted']} from Little's law, {row['found it full']:.0%} of checkouts found the pool "
                f"full against {row['full, predicted']:.0%} from the Poisson model"
                for row in fair
            )
            + "."
        )
    if first_failure is None:
        lines.append("No request failed in any row: this run never queued longer than pool_timeout.")
    else:
        row = by_query[first_failure]
        lines.append(
            f"The first failures came at {first_failure} s per query ({row['failed']} of {row['requests']}); "
            f"Little's law puts the mean at the pool's limit at {facts['saturation']:.2f} s."
        )
    if facts["queued_without_failing"]:
        examples = ", ".join(
            f"{q} s ({by_query[q]['found it full']:.0%} found it full, p95 wait {by_query[q]['p95 wait (ms)']} ms)"
            for q in facts["queued_without_failing"]
        )
        lines.append(f"Queueing came before any 500: requests waited for a connection without failing at {examples}.")
    elif facts["first_queueing"] is not None:
        lines.append(f"Requests first found the pool full at {facts['first_queueing']} s, in a row that also failed.")
    if facts["failed_below_lower_bound"]:
        lines.append(
            f"Rows below {facts['lower_bound']:.2f} s failed too ({facts['failed_below_lower_bound']}), which the "
            "model gives less than a 1 % chance: compare their start lag."
        )
    if facts["late_rows"]:
        lines.append(
            f"The load generator fell behind its timetable in rows {facts['late_rows']}: the kernel was busy, so "
            "those rows measured the machine as much as the pool (their requests started late and in bunches)."
        )
    else:
        lines.append("The load generator kept to its timetable in every row.")
    return "\n".join(lines)


def pool_choice_problem(pool_size: object, max_overflow: object, *, most: int) -> str | None:
    """Why an exercise answer cannot be tried, in words a learner understands; None when it can."""
    for name, value, least in (("EXERCISE_POOL_SIZE", pool_size, 1), ("EXERCISE_MAX_OVERFLOW", max_overflow, 0)):
        if isinstance(value, bool) or not isinstance(value, int):
            hint = " (without quotes)" if isinstance(value, str) else ""
            return f"not yet: {name} must be a whole number such as 10{hint}, got {value!r}"
        if value < least:
            meaning = "0 would mean 'no limit'" if least == 1 else "-1 would mean 'no limit'"
            return f"not yet: {name} must be at least {least} ({meaning}), got {value}"
    total = pool_size + max_overflow  # type: ignore[operator]
    if total > most:
        return f"not yet: {total} connections is more than the {most} allowed; Little's law says how many you need"
    return None


async def check_report_pool(
    pool_size: object,
    max_overflow: object,
    *,
    make_engine: Callable[..., Any],
    make_app: Callable[..., Any],
    rate: float,
    duration: float,
    query: float,
    seed: int,
    most: int = 40,
) -> str:
    """Run the exercise's load against the learner's pool and say what happened, and why.

    Validates the two numbers first, builds the engine (``make_engine(pool_size,
    max_overflow, name=...)``) and the app (``make_app(engine, title=...)``), and always
    stops the app and disposes of the engine again, so the check can be run
    any number of times.
    """
    problem = pool_choice_problem(pool_size, max_overflow, most=most)
    if problem:
        return problem
    total = pool_size + max_overflow  # type: ignore[operator]
    busy = rate * query
    engine = make_engine(pool_size, max_overflow, name="exercise")
    opened = []
    event.listen(engine.sync_engine.pool, "connect", lambda *_: opened.append(1))
    served = await serve(make_app(engine, title="exercise"))
    try:
        with PoolRecorder(engine) as recorder, QueueWatch(engine, total) as queue:
            run = await open_loop(
                f"{served.url}/report?seconds={query}", rate=rate, duration=duration, arrivals="poisson", seed=seed
            )
        await settled(engine, timeout=5)
    finally:
        await served.stop()
        await engine.dispose()
    return _exercise_feedback(pool_size, total, busy, run, recorder, queue, len(opened))  # type: ignore[arg-type]


def _exercise_feedback(
    pool_size: int, total: int, busy: float, run: LoadResult, recorder: PoolRecorder, queue: QueueWatch, opened: int
) -> str:
    summary = run.summary()
    failed = summary["requests"] - summary["ok"]
    full = share_of_time_full(busy, total)
    measured = (
        f"{summary['ok']} of {summary['requests']} ok, {queue.share_found_full:.0%} of the checkouts found all "
        f"{total} connections in use, peak {recorder.peak_checked_out} checked out"
    )
    model = f"random arrivals need all {total} connections about {full:.0%} of the time"
    churn = (
        f" Note: the pool opened {opened} connections during the run; with pool_size={pool_size} most busy "
        "connections are overflow ones, closed when they come back and opened again for the next burst. "
        f"A pool_size near the average ({busy:g}) keeps them open."
        if pool_size < busy
        else ""
    )
    if total < busy:
        return (
            f"not yet: {failed} of {summary['requests']} requests failed. Little's law: {busy:g} connections "
            f"are busy on average, more than the {total} you allowed, so the queue only grows."
        )
    if failed and full > 0.05:
        return f"not yet: {failed} requests failed ({measured}). The mean ({busy:g}) fits, but {model}: leave headroom."
    if failed:
        lag = summary["start_lag"]["p95"] or 0.0
        return (
            f"almost: by the model your pool is big enough ({model}), yet {failed} requests failed. "
            f"The load's start lag p95 was {lag * 1000:.0f} ms: when the machine is busy, run the check again."
        )
    if full > 0.05:
        return f"almost: no failure this time ({measured}), but {model}. Leave more headroom for bursts.{churn}"
    return (
        f"well done: {measured}, p95 latency {summary['latency']['p95']:.2f} s; {model}, "
        f"so requests rarely wait.{churn}"
    )
