"""Trying fixes on the service, and judging each one by a run.

``fix_problems()`` reads the learner's settings and endpoint replacements and
says in words what it cannot use. ``verdicts()`` compares a run after fixes
with the run before, defect by defect, on the measurement that shows that
defect (not on whether the code looks right). ``gauge_table()`` puts runs
side by side: the pool's four gauges, latency and loop lag.
"""

from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import dataclass
from typing import Any

from ...lab.tables import Table
from .defects import HOME
from .diagnosis import normalise_place
from .evidence import Observation, ms
from .harness import COURIER_DELAY, ORDINARY_REPORT, RUNAWAY_REPORT, Capstone
from .service import SETTINGS

#: What each setting may be in class: (smallest, largest). The largest keep a run short and the server shared.
LIMITS: dict[str, tuple[float, float]] = {
    "pool_size": (1, 30),
    "max_overflow": (0, 30),
    "pool_timeout": (0.1, 2.0),
    "statement_timeout": (0.05, 5.0),
}
#: At most this many connections per service: several learners may share one server.
MAX_CONNECTIONS = 40


def fix_problems(settings: Any, replace: Any, endpoints: list[str]) -> list[str]:
    """What keeps these settings and replacements from being tried, in words; empty when they can be."""
    problems = []
    if not isinstance(settings, dict):
        problems.append(f'my_settings must be a dict such as {{"pool_size": 5}}, got {type(settings).__name__}')
    else:
        for key, value in settings.items():
            if key not in SETTINGS:
                close = difflib.get_close_matches(str(key), list(SETTINGS), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"the settings are {', '.join(SETTINGS)}"
                problems.append(f"{key!r} is not one of the service's settings; {hint}")
                continue
            problems.extend(_value_problems(key, value))
        merged = {**SETTINGS, **{k: v for k, v in settings.items() if k in SETTINGS}}
        total = merged["pool_size"] + merged["max_overflow"]
        if not problems and total > MAX_CONNECTIONS:
            problems.append(
                f"pool_size + max_overflow = {total}: more than {MAX_CONNECTIONS} connections for one worker; "
                "Little's law says how many the traffic needs"
            )
    if not isinstance(replace, dict):
        problems.append(f"my_endpoints must be a dict of route -> function, got {type(replace).__name__}")
        return problems
    for path, function in replace.items():
        place, problem = normalise_place(path, endpoints)
        if problem:
            problems.append(problem)
        elif place == "engine":
            problems.append("'engine' is fixed through my_settings, not my_endpoints")
        elif place != path:
            problems.append(f"write the route as {place!r}, not {path!r}: the function replaces the whole route")
        if not callable(function):
            problems.append(f"the value for {path!r} must be a function (def or async def), got {function!r}")
        elif inspect.isclass(function):
            problems.append(f"the value for {path!r} is a class; give the endpoint function")
    return problems


def _value_problems(key: str, value: Any) -> list[str]:
    if key == "statement_timeout" and value is None:
        return []
    if isinstance(value, str):
        return [f"{key} is the text {value!r}; write the number without quotes"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return [f"{key} must be a number, got {value!r}"]
    if key in ("pool_size", "max_overflow") and not isinstance(value, int):
        return [f"{key}={value}: a number of connections is a whole number"]
    low, high = LIMITS[key]
    unit = "" if key in ("pool_size", "max_overflow") else " s"
    if value < low:
        meaning = {
            "pool_size": "pool_size=0 means 'no limit' in SQLAlchemy, and a limit is the point",
            "max_overflow": "max_overflow=-1 means 'no limit on overflow', and a limit is the point",
        }.get(key, "")
        return [f"{key}={value}: use at least {low:g}{unit}" + (f" ({meaning})" if meaning else "")]
    if value > high:
        return [f"{key}={value}: at most {high:g}{unit} here, so that a run stays short"]
    return []


def verdicts(before: Observation, after: Observation) -> list[str]:
    """One line per defect: fixed, or what the run after the fixes still shows."""
    lines = []
    leak = HOME["leak"]
    if after.checked_out_after == 0 and not after.leaks:
        lines.append(f"leak: FIXED. 0 connections checked out after the load (before: {before.checked_out_after}).")
    else:
        where = after.leaks[0].where if after.leaks else leak
        lines.append(
            f"leak: not yet. {after.checked_out_after} connection(s) still out after the load, taken at {where}."
        )
    price = HOME["blocking_call"]
    blocked = [s for s in after.loop.stalls if s.endpoint == price and s.filename is not None]
    if len(blocked) <= 2 and not any(s.function == "legacy_tax_cents" for s in after.loop.stalls):
        lines.append(
            f"blocking call: FIXED. The loop watch caught the loop in {price} {len(blocked)} times "
            f"(before: {before.stalls(price)}); loop lag p95 {ms(after.loop.lag_percentile(95))} ms "
            f"(before: {ms(before.loop.lag_percentile(95))} ms)."
        )
    else:
        lines.append(
            f"blocking call: not yet. The loop was stuck {len(blocked)} times in {price}, at {blocked[0].place}."
        )
    needed = sum(after.needed(e) for e in after.endpoints())
    if after.timeouts == 0 and after.capacity >= 1.2 * needed:
        lines.append(
            f"pool too small: FIXED. 0 timeouts (before: {before.timeouts}); the pool has {after.capacity} for about "
            f"{needed:.1f} busy."
        )
    else:
        lines.append(
            f"pool too small: not yet. {after.timeouts} timeouts; Little's law from this run: about {needed:.1f} "
            f"connections busy, and the pool has {after.capacity} (leave room for bursts)."
        )
    eta = HOME["io_in_transaction"]
    calls, holding = after.calls_holding(eta)
    if not calls:
        lines.append(f"I/O in a transaction: cannot tell. {eta} called no one in this run (did its requests fail?).")
    elif holding == 0:
        lines.append(
            f"I/O in a transaction: FIXED. {eta} called the courier {calls} times, never while holding a connection "
            f"(before: {before.calls_holding(eta)[1]} of {before.calls_holding(eta)[0]}); it holds one "
            f"{ms(after.hold(95, eta))} ms at p95 (before: {ms(before.hold(95, eta))} ms)."
        )
    else:
        lines.append(
            f"I/O in a transaction: not yet. {holding} of {eta}'s {calls} calls to the courier were made while it "
            f"held a connection, {ms(after.hold(95, eta))} ms at p95: the courier's {COURIER_DELAY} s count."
        )
    lines.append(_timeout_verdict(before, after))
    return lines


def _timeout_verdict(before: Observation, after: Observation) -> str:
    reports = HOME["missing_timeout"]
    limit = after.settings["statement_timeout"]
    cancelled = sum(1 for r in _records(after, ORDINARY_REPORT) if r.status == 503)
    runaway_finished = any(r.status == 200 for r in _records(after, RUNAWAY_REPORT))
    longest = max(after.holds(reports), default=0.0)
    if limit is None:
        return (
            f"missing timeout: not yet. statement_timeout is None; the longest report held its connection "
            f"{longest:.1f} s. Nothing stops the next runaway statement."
        )
    if cancelled:
        return (
            f"missing timeout: too tight. statement_timeout = {limit} s cancelled {cancelled} of the ordinary "
            f"7-day reports, which need {ms(before.hold(50, reports))} ms; leave room above them."
        )
    if longest > limit + 0.3 or runaway_finished:
        return f"missing timeout: not yet. A report still held its connection {longest:.1f} s (limit {limit} s)" + (
            "; the 30-day report ran to its end." if runaway_finished else "."
        )
    return (
        f"missing timeout: FIXED. No report held its connection longer than {longest:.1f} s "
        f"(before: {max(before.holds(reports), default=0.0):.1f} s); the runaway got a 503 instead."
    )


def _records(observation: Observation, path: str) -> list[Any]:
    """The request records of one stream of the traffic, none if the run did not send it."""
    return observation.results[path].records if path in observation.results else []


def gauge_table(runs: list[tuple[str, Observation]], title: str) -> Table:
    """The four gauges, latency and loop lag of each run, one row per run."""
    rows = []
    for what, run in runs:
        gauges = run.gauges()
        rows.append({"run": what} | gauges | {"p95 /catalog/items (ms)": ms(run.latency(95, "/catalog/items"))})
    return Table(rows, title=title)


@dataclass
class FixReport:
    """What trying the learner's fixes gave: feedback lines, and the run (None when nothing ran)."""

    lines: list[str]
    after: Observation | None = None
    table: Table | None = None

    def __str__(self) -> str:
        return "\n".join(self.lines)

    __repr__ = __str__


async def try_fixes(capstone: Capstone, before: Observation, settings: Any, replace: Any) -> FixReport:
    """Run the service with the learner's fixes and judge each defect against the run before."""
    problems = fix_problems(settings, replace, before.endpoints())
    if problems:
        return FixReport([f"not yet: {problem}" for problem in problems])
    if not settings and not replace:
        return FixReport(
            [
                "nothing to try yet: put settings in my_settings and replacement endpoints in my_endpoints, "
                "then run this cell."
            ]
        )
    try:
        after = await capstone.run(settings=settings, replace=replace, label="with your fixes")
    except Exception as exc:  # FastAPI refuses an endpoint's signature, for instance: say so, do not break the notebook
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return FixReport([f"not yet: the service could not run with your fixes: {type(exc).__name__}: {first}"])
    lines = verdicts(before, after)
    own_errors = [e for e in after.errors if "QueuePool limit" not in e]
    if own_errors:
        last = own_errors[0].strip().splitlines()[-1]
        lines.append(f"and: the service logged {len(own_errors)} error(s) of another kind, the first ending in: {last}")
    fixed = sum(line.split(":", 1)[1].strip().startswith("FIXED") for line in lines if ":" in line)
    lines.append(f"{fixed} of 5 fixed in this run.")
    table = gauge_table([("before", before), ("with your fixes", after)], "Before and after your fixes")
    return FixReport(lines, after, table)
