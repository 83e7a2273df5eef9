"""Notebook 11's exercise: engine options that keep a pool alive behind a firewall that forgets idle connections.

The check validates the options first, then tries them for real: a pool
behind an IdleFirewall, left alone longer than the firewall allows, then
asked to serve; the feedback names the setting that saved or failed it.
"""

from __future__ import annotations

import asyncio
import difflib
import math
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..lab.naming import named
from ..lab.pool_log import pool_log
from .stale_connections import IdleFirewall

# The exercise: engine options that survive the firewall.

#: Options the exercise accepts; the last four change nothing about stale connections, but are harmless.
EXERCISE_KEYS = ("pool_pre_ping", "pool_recycle", "pool_size", "max_overflow", "pool_timeout", "pool_use_lifo")
#: How much longer than the firewall's limit the trial leaves the pool alone.
_QUIET_MARGIN = 0.5
_TRIAL_REQUESTS = 3
_TRIAL_DEADLINE = 20.0
_trial: list[AsyncEngine | IdleFirewall] = []


def options_problems(options: Any) -> list[str]:
    """What keeps ``options`` from being engine options for the exercise, in words; empty when nothing does."""
    if not isinstance(options, dict):
        return [f"exercise_options must be a dict such as dict(pool_pre_ping=True), got {options!r}"]
    problems = []
    for key in options:
        if key not in EXERCISE_KEYS:
            close = difflib.get_close_matches(str(key), EXERCISE_KEYS, n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else "the settings that matter here are pool_pre_ping and pool_recycle"
            )
            problems.append(f"{key!r} is not an option of this exercise; {hint}")
    ping = options.get("pool_pre_ping", False)
    if not isinstance(ping, bool):
        problems.append(f"pool_pre_ping is True or False, got {ping!r} ({type(ping).__name__})")
    recycle = options.get("pool_recycle", -1)
    if isinstance(recycle, bool) or not isinstance(recycle, (int, float)) or not math.isfinite(recycle):
        problems.append(f"pool_recycle is a number of seconds, got {recycle!r} ({type(recycle).__name__})")
    return problems


async def _dispose_previous() -> None:
    while _trial:
        each = _trial.pop()
        if isinstance(each, IdleFirewall):
            await each.stop()
        else:
            await each.dispose()


async def _quiet_then_ask(engine: AsyncEngine, quiet: float) -> tuple[list[str], list[str]]:
    """Open two connections, leave the pool alone for ``quiet`` s, then run a few queries one by one.

    Returns the outcome of each query ("ok" or the error) and the pool's log lines.
    """

    async def hold_briefly() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_sleep(0.05)"))

    outcomes = []
    with pool_log() as lines:
        await asyncio.gather(hold_briefly(), hold_briefly())
        await asyncio.sleep(quiet)
        for _ in range(_TRIAL_REQUESTS):
            try:
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
                outcomes.append("ok")
            except Exception as exc:  # the point of the trial: which error, if any
                outcomes.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    return outcomes, list(lines)


def _verdict(options: dict[str, Any], idle_limit: float, outcomes: list[str], lines: list[str]) -> str:
    """The feedback for one trial: its outcomes, explained by the settings and the pool's log lines."""
    ping = options.get("pool_pre_ping", False)
    recycle = options.get("pool_recycle", -1)
    failed = [each for each in outcomes if each != "ok"]
    by_age = sum("exceeded timeout; recycling" in line for line in lines)
    pings_failed = sum("Disconnection detected on checkout" in line for line in lines)
    by_pool = sum("invalidated due to pool invalidation" in line for line in lines)
    new = sum("Created new connection" in line for line in lines)
    recycles_in_time = 0 <= recycle < idle_limit
    if failed:
        first = f"{len(failed)} of {len(outcomes)} queries after the quiet spell failed, first: {failed[0]}"
        if not ping and recycle < 0:
            recycle_text = " is not set" if "pool_recycle" not in options else f"={recycle:g} means never"
            why = (
                f"pool_pre_ping is off and pool_recycle{recycle_text}, so the pool handed out a connection "
                "the firewall had already forgotten"
            )
        elif not ping and not recycles_in_time:
            why = (
                f"pool_recycle={recycle:g} only replaces connections older than {recycle:g} s, and the firewall "
                f"forgets them after {idle_limit:g} s of silence: a connection can be dead and still young enough"
            )
        else:
            why = "the settings look right, so this is unexpected: run the check again and read the pool log"
        return f"not yet: {first}.\n  Why: {why}."
    if not ping and not recycles_in_time:
        return (
            f"not yet: it survived this trial only because the connections had grown older than "
            f"pool_recycle={recycle:g} s while the pool waited; a connection opened less than {recycle:g} s ago "
            f"but silent for {idle_limit:g} s would still fail. Set pool_recycle below {idle_limit:g}, or "
            "pool_pre_ping=True"
        )
    done = f"PASS  {len(outcomes)} of {len(outcomes)} queries after the quiet spell succeeded"
    if 0 <= recycle < idle_limit / 10:
        return (
            f"{done}, at a price: pool_recycle={recycle:g} replaces nearly every connection it hands out "
            f"({new} new connections for {len(outcomes) + 2} checkouts). A value a little below "
            f"{idle_limit:g} s does the same job and keeps the pool a pool"
        )
    saved_by = []
    if by_age:
        saved_by.append(f"pool_recycle={recycle:g} replaced {by_age} connection(s) older than {recycle:g} s")
    if pings_failed:
        saved_by.append(
            f"pool_pre_ping found a dead connection, and the pool replaced it and {by_pool} older one(s) with it"
        )
    if ping and by_age and not pings_failed:
        saved_by.append("the pre-ping found nothing to do, because recycling came first")
    return f"{done}: {'; '.join(saved_by) or 'no stale connection was handed out'}."


async def check_firewall_options(options: Any, *, target_url: str, idle_limit: float, application_name: str) -> str:
    """Feedback on the learner's engine options: "not yet: ..." lines, or a PASS line after a live trial.

    Starts an ``IdleFirewall`` with ``idle_limit`` in front of ``target_url``,
    builds ``create_async_engine(firewall.url, **options)``, opens two
    connections, leaves the pool alone a little longer than the firewall
    allows, then runs three queries one after the other. The pool's log says
    which setting replaced the stale connections. Whatever an earlier attempt
    left open (engine, firewall) is closed first, and this attempt's before
    returning.
    """
    await _dispose_previous()
    problems = options_problems(options)
    if problems:
        return "\n".join(f"not yet: {problem}" for problem in problems)
    firewall = await IdleFirewall.start(target_url, idle_limit=idle_limit, name="exercise")
    _trial.append(firewall)
    engine = create_async_engine(firewall.url, **options, connect_args=named(application_name))
    _trial.append(engine)
    try:
        async with asyncio.timeout(_TRIAL_DEADLINE):
            outcomes, lines = await _quiet_then_ask(engine, idle_limit + _QUIET_MARGIN)
    except TimeoutError:
        return f"not yet: the trial did not finish within {_TRIAL_DEADLINE:g} s; is pool_timeout very long?"
    finally:
        await _dispose_previous()
    return _verdict(options, idle_limit, outcomes, lines)
