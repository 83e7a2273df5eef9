"""Notebook 02, the default limits: a pool's settings, this notebook's server connections, the exercise's check.

``pool_settings()`` reads back what ``create_async_engine`` chose; only
``size()`` and ``timeout()`` are public, the rest are private attributes,
read here so that the notebook does not have to show them. ``check_pool_plan()``
judges the learner's pool plan: it answers wrong input in words, tries a plan
that adds up on a real pool, and leaves nothing open, however often it runs.
"""

from __future__ import annotations

import asyncio
import difflib
import math
import time
from typing import Any

from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..lab.naming import named
from ..lab.server_activity import backends
from ..stack import Stack

#: The three settings the exercise plans, as create_async_engine calls them.
PLAN_KEYS = ("pool_size", "max_overflow", "pool_timeout")
#: However the plan looks, the trial on the real pool never takes longer than this.
_TRIAL_DEADLINE = 20.0

_trial_engines: list[AsyncEngine] = []


def pool_settings(pool: Any) -> dict[str, Any]:
    """The pool's settings under create_async_engine's argument names (to look at, never to change)."""
    reset = {"reset_rollback": "rollback", "reset_commit": "commit", "reset_none": None}
    return {
        "poolclass": type(pool).__name__,
        "pool_size": pool.size(),
        "max_overflow": pool._max_overflow,
        "pool_timeout": pool.timeout(),
        "pool_recycle": pool._recycle,
        "pool_pre_ping": pool._pre_ping,
        "pool_use_lifo": pool._pool.use_lifo,
        "pool_reset_on_return": reset.get(pool._reset_on_return.name, pool._reset_on_return.name),
    }


async def server_pids(stack: Stack, application_name: str, *, expect: int | None = None) -> list[int]:
    """Backend pids of the server connections whose application_name matches (a LIKE pattern).

    With ``expect=N`` this waits briefly until N are left: a connection the
    client has closed leaves pg_stat_activity a moment later.
    """
    return [pid for pid, _state in await backends(stack, application_name, expect=expect)]


def _value_problem(key: str, value: Any) -> str | None:
    if isinstance(value, str):
        return f"{key} is the text {value!r}; write the number without quotes"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"{key} must be a number, got {value!r} ({type(value).__name__})"
    if key == "pool_timeout":
        if value == 0:
            return "pool_timeout=0 does not wait at all: a request that finds every connection busy for a moment fails"
        if value < 0:
            return f"pool_timeout={value}: SQLAlchemy accepts it, then raises ValueError the first time a request waits"
        return None
    if not isinstance(value, int):
        return f"{key}={value}: a number of connections is a whole number"
    if key == "pool_size" and value == 0:
        return "pool_size=0 means 'no limit' in SQLAlchemy, and a limit is the point here"
    if key == "max_overflow" and value == -1:
        return "max_overflow=-1 means 'no limit on overflow' in SQLAlchemy, and a limit is the point here"
    least = 1 if key == "pool_size" else 0
    if value < least:
        return f"{key}={value}: it counts connections, so it must be {least} or more"
    return None


def plan_problems(plan: Any, *, workers: int, peak_per_worker: int, max_wait: float, available: int) -> list[str]:
    """Everything that keeps ``plan`` from meeting the brief, in words; empty when it does."""
    if not isinstance(plan, dict):
        example = "dict(pool_size=5, max_overflow=10, pool_timeout=30)"
        return [f"exercise_pool must be a dict such as {example}, got {plan!r}"]
    problems = []
    for key in plan:
        if key not in PLAN_KEYS:
            close = difflib.get_close_matches(str(key), PLAN_KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"plan only {', '.join(PLAN_KEYS)}"
            problems.append(f"{key!r} is not one of the three settings here; {hint}")
    problems += [f"the plan has no {key}; add it" for key in PLAN_KEYS if key not in plan]
    problems += [p for key in PLAN_KEYS if key in plan and (p := _value_problem(key, plan[key]))]
    if problems:
        return problems
    size, overflow, timeout = (plan[key] for key in PLAN_KEYS)
    per_worker = size + overflow
    if per_worker < peak_per_worker:
        problems.append(
            f"one worker can hold only {size} + {overflow} = {per_worker} connections; it needs {peak_per_worker}"
        )
    if workers * per_worker > available:
        problems.append(
            f"{workers} workers x ({size} + {overflow}) = {workers * per_worker} connections, "
            f"but only {available} are available next to what is already open and the headroom"
        )
    if workers * peak_per_worker > available:
        problems.append(
            f"no plan can pass on this server right now: {workers} x {peak_per_worker} = "
            f"{workers * peak_per_worker} are needed and {available} are available. That is an answer "
            "too: fewer workers, a larger max_connections, or PgBouncer in front (notebooks 06 and 07)"
        )
    if timeout > max_wait:
        problems.append(f"pool_timeout is {timeout:g} s; a request may wait at most {max_wait:g} s")
    return problems


async def _dispose_previous() -> None:
    while _trial_engines:
        await _trial_engines.pop().dispose()


async def _try_on_a_real_pool(engine: AsyncEngine, limit: int) -> tuple[bool, float]:
    """Fill the pool, then ask for one more: (did it refuse, seconds it waited)."""
    taken: list[AsyncConnection] = []
    try:
        async with asyncio.timeout(_TRIAL_DEADLINE):
            for _ in range(limit):
                taken.append(await engine.connect())
            started = time.perf_counter()
            try:
                taken.append(await engine.connect())
            except PoolTimeoutError:
                return True, time.perf_counter() - started
            return False, time.perf_counter() - started
    finally:
        for conn in taken:
            await conn.close()


async def check_pool_plan(
    stack: Stack,
    plan: Any,
    *,
    workers: int,
    peak_per_worker: int,
    max_wait: float,
    available: int,
    application_name: str,
) -> str:
    """Feedback on the plan: "not yet: ..." lines, or a PASS line after a trial on a real pool.

    Builds ``create_async_engine(stack.database_url, **plan)``, fills its pool
    and checks that one more checkout gives up within ``pool_timeout``. Every
    connection is closed and the engine disposed before this returns; engines
    left over by an interrupted earlier run are disposed first.
    """
    await _dispose_previous()
    problems = plan_problems(
        plan, workers=workers, peak_per_worker=peak_per_worker, max_wait=max_wait, available=available
    )
    if problems:
        return "\n".join(f"not yet: {problem}" for problem in problems)
    engine = create_async_engine(stack.database_url, **plan, connect_args=named(application_name))
    _trial_engines.append(engine)
    limit = plan["pool_size"] + plan["max_overflow"]
    try:
        refused, waited = await _try_on_a_real_pool(engine, limit)
    finally:
        await _dispose_previous()
    if not refused:
        return f"not yet: checkout {limit + 1} succeeded; the pool has no limit at {limit}"
    return (
        f"PASS  {limit} connections per worker, {workers} x {limit} = {workers * limit} of {available} available; "
        f"on a real pool checkout {limit + 1} gave up after {waited:.1f} s"
    )
