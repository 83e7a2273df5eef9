"""Checking a set of timeouts for contradictions (notebook 10).

Timeouts nest. The load balancer (or proxy, or client) waits for the app, the
app's request limit covers everything a request does, and inside a request the
database work is bounded by ``statement_timeout`` and the waits before it by
``pool_timeout`` (and PgBouncer's ``query_wait_timeout``). When an inner
timeout is not shorter than the one around it, the outer one fires first: the
user gets a generic 504 while the app keeps working and holding a connection,
and the precise error (the pool's TimeoutError, the server's "canceling
statement due to statement timeout") never reaches the code that would turn it
into a useful answer.

``check_budget()`` takes the timeouts in seconds and returns a ``BudgetCheck``:
findings written for a learner, each either a *contradiction* (the nesting is
broken) or *advice* (nothing is broken, but it will hurt under load). ``None``
means "no limit" for the four main timeouts and "not used" for the optional
ones. Bad input raises ValueError with a message that says what to write.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CONTRADICTION = "contradiction"
ADVICE = "advice"

#: Waiting for a pool slot should take at most this share of the request's budget.
POOL_WAIT_SHARE = 0.25


@dataclass(frozen=True)
class Finding:
    """One problem in a budget: how bad it is, which settings, and why it matters."""

    severity: str  # CONTRADICTION or ADVICE
    settings: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        mark = "✗" if self.severity == CONTRADICTION else "!"
        return f"{mark} {self.message}"


@dataclass(frozen=True)
class BudgetCheck:
    """The timeouts that were checked (seconds, None = no limit) and what was found."""

    timeouts: dict[str, float | None]
    findings: tuple[Finding, ...]

    @property
    def contradictions(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == CONTRADICTION]

    @property
    def advice(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ADVICE]

    @property
    def ok(self) -> bool:
        """True when nothing contradicts (advice may remain)."""
        return not self.contradictions

    @property
    def clean(self) -> bool:
        """True when there is nothing to say at all."""
        return not self.findings

    def chain(self) -> str:
        """The nesting as one line, outermost first: ">" where it holds, "<=" where it does not."""
        t = self.timeouts
        names = ("load balancer", "request", "statement_timeout")
        values = (t["load_balancer"], t["request"], t["statement_timeout"])
        line = f"{names[0]} {_seconds(values[0])}"
        for outer, (name, inner) in zip(values, zip(names[1:], values[1:])):
            holds = _or_infinite(inner) < _or_infinite(outer)
            line += f" {'>' if holds else '<='} {name} {_seconds(inner)}"
        waits = [f"pool_timeout {_seconds(t['pool_timeout'])}"]
        waits += [f"{name} {_seconds(t[name])}" for name in _OPTIONAL if t.get(name) is not None]
        return line + "; " + ", ".join(waits)

    def __str__(self) -> str:
        lines = [self.chain()]
        lines += [str(f) for f in self.findings] or ["✓ no contradictions, no advice: every inner timeout fits"]
        return "\n".join(lines)


_OPTIONAL = ("connect_timeout", "command_timeout", "query_wait_timeout", "query_timeout")


def check_budget(
    *,
    load_balancer: float,
    request: float | None,
    statement_timeout: float | None,
    pool_timeout: float | None,
    connect_timeout: float | None = None,
    command_timeout: float | None = None,
    query_wait_timeout: float | None = None,
    query_timeout: float | None = None,
) -> BudgetCheck:
    """Check timeouts (in seconds) for contradictions, innermost against outermost.

    - ``load_balancer``: the outermost limit (load balancer, proxy, or the client).
    - ``request``: the app's own limit on one request (uvicorn has none: None).
    - ``statement_timeout``: PostgreSQL's limit on one statement (None: not set).
    - ``pool_timeout``: SQLAlchemy's wait for a free connection (None: forever).
    - ``connect_timeout``: asyncpg's ``timeout`` for opening a connection (its default is 60).
    - ``command_timeout``: asyncpg's client-side limit on one statement.
    - ``query_wait_timeout``, ``query_timeout``: PgBouncer's (use when the app goes through it).
    """
    timeouts = {
        "load_balancer": _validated("load_balancer", load_balancer, allow_none=False),
        "request": _validated("request", request),
        "statement_timeout": _validated("statement_timeout", statement_timeout),
        "pool_timeout": _validated("pool_timeout", pool_timeout),
        "connect_timeout": _validated("connect_timeout", connect_timeout),
        "command_timeout": _validated("command_timeout", command_timeout),
        "query_wait_timeout": _validated("query_wait_timeout", query_wait_timeout),
        "query_timeout": _validated("query_timeout", query_timeout),
    }
    findings = _nesting(timeouts) + _waits(timeouts) + _optional(timeouts)
    return BudgetCheck(timeouts, tuple(findings))


def _nesting(t: dict[str, float | None]) -> list[Finding]:
    """load balancer > request > statement_timeout."""
    lb, request, statement = t["load_balancer"], t["request"], t["statement_timeout"]
    assert lb is not None
    found = []
    if request is None:
        found.append(
            _contradiction(
                ("request",),
                f"the app sets no request timeout: when the load balancer gives up after {_seconds(lb)}, the app "
                "keeps working on a request nobody waits for, holding its connection. Give requests a limit "
                "shorter than the load balancer's.",
            )
        )
    elif request >= lb:
        found.append(
            _contradiction(
                ("request", "load_balancer"),
                f"request {_seconds(request)} is not shorter than the load balancer's {_seconds(lb)}: the load "
                "balancer answers 504 first, and whatever the app would have said (a 503 with Retry-After) never "
                "reaches the user.",
            )
        )
    outer_name, outer = _outer(t)
    if statement is None:
        found.append(
            _contradiction(
                ("statement_timeout",),
                f"statement_timeout is not set: a runaway query keeps running, and keeps its connection, long after "
                f"the {outer_name} ({_seconds(outer)}) has given up on it.",
            )
        )
    elif statement >= outer:
        found.append(
            _contradiction(
                ("statement_timeout", outer_name),
                f"statement_timeout {_seconds(statement)} is not shorter than the {outer_name}'s "
                f"{_seconds(outer)}: the {outer_name} gives up first and the query keeps running on the server.",
            )
        )
    return found


def _waits(t: dict[str, float | None]) -> list[Finding]:
    """Waiting for a connection plus the longest statement must fit in the request; the wait should be short."""
    pool, statement, query_wait = t["pool_timeout"], t["statement_timeout"], t["query_wait_timeout"]
    outer_name, outer = _outer(t)
    if pool is None:
        return [
            _contradiction(
                ("pool_timeout",),
                "pool_timeout=None waits for a free connection forever: under overload requests pile up until "
                f"the {outer_name} ({_seconds(outer)}) cuts them off. Use a short number of seconds.",
            )
        ]
    if pool >= outer:
        return [
            _contradiction(
                ("pool_timeout", outer_name),
                f"pool_timeout {_seconds(pool)} is not shorter than the {outer_name}'s {_seconds(outer)}: the "
                f"{outer_name} gives up before the pool does, so the pool's TimeoutError never reaches your "
                "error handler.",
            )
        ]
    if statement is not None and statement < outer:
        worst = pool + (query_wait or 0) + statement
        if worst > outer:
            path = f"pool_timeout {_seconds(pool)}"
            if query_wait:
                path += f" + query_wait_timeout {_seconds(query_wait)}"
            return [
                _contradiction(
                    ("pool_timeout", "statement_timeout", outer_name),
                    f"a request may wait {path} for a connection and then run a statement for "
                    f"statement_timeout {_seconds(statement)}: {_seconds(worst)} in all, more than the {outer_name}'s "
                    f"{_seconds(outer)}. The {outer_name} fires first, so the pool's TimeoutError or the server's "
                    "cancel never reaches your error handler.",
                )
            ]
    if t["request"] is not None and pool > POOL_WAIT_SHARE * outer:
        return [
            _advice(
                ("pool_timeout",),
                f"pool_timeout {_seconds(pool)} is a long wait, more than a quarter of the request's "
                f"{_seconds(outer)}: under overload every request queues that long before it fails. A short wait "
                f"(at most {_seconds(POOL_WAIT_SHARE * outer)} here) turns overload into quick 503s.",
            )
        ]
    return []


def _optional(t: dict[str, float | None]) -> list[Finding]:
    """The client-side and PgBouncer timeouts, where given."""
    outer_name, outer = _outer(t)
    statement = t["statement_timeout"]
    found = []
    connect = t["connect_timeout"]
    if connect is not None and connect >= outer:
        found.append(
            _contradiction(
                ("connect_timeout", outer_name),
                f"connect_timeout {_seconds(connect)} (asyncpg's default is 60 s) is not shorter than the "
                f"{outer_name}'s {_seconds(outer)}: a database that does not answer holds the request until the "
                f"{outer_name} gives up. Set connect_args={{'timeout': ...}} to a few seconds.",
            )
        )
    command = t["command_timeout"]
    if command is not None:
        if command >= outer:
            found.append(
                _contradiction(
                    ("command_timeout", outer_name),
                    f"command_timeout {_seconds(command)} is not shorter than the {outer_name}'s {_seconds(outer)}.",
                )
            )
        elif statement is not None and command <= statement:
            found.append(
                _advice(
                    ("command_timeout", "statement_timeout"),
                    f"command_timeout {_seconds(command)} fires before statement_timeout {_seconds(statement)}: "
                    "the client gives up first with a bare TimeoutError and SQLAlchemy throws the connection away. "
                    "Let the server cancel first (a clear error, the connection survives) and keep the client's "
                    "timeout a little longer, for a network that stops answering.",
                )
            )
    query_wait = t["query_wait_timeout"]
    if query_wait is not None and query_wait >= outer:
        found.append(
            _contradiction(
                ("query_wait_timeout", outer_name),
                f"PgBouncer's query_wait_timeout {_seconds(query_wait)} (its default is 120 s) is not shorter than "
                f"the {outer_name}'s {_seconds(outer)}: clients stay queued in PgBouncer after the request is over.",
            )
        )
    query = t["query_timeout"]
    if query is not None and statement is not None and query <= statement:
        found.append(
            _contradiction(
                ("query_timeout", "statement_timeout"),
                f"PgBouncer's query_timeout {_seconds(query)} is not longer than statement_timeout "
                f"{_seconds(statement)}: PgBouncer drops the connection first and the query keeps running on the "
                "server. Its docs say: use it only slightly above statement_timeout, for network problems.",
            )
        )
    return found


def _outer(t: dict[str, float | None]) -> tuple[str, float]:
    """The limit around the database work: the request's, or the load balancer's if the app sets none."""
    if t["request"] is not None:
        return "request", t["request"]
    lb = t["load_balancer"]
    assert lb is not None
    return "load balancer", lb


def _validated(name: str, value: object, *, allow_none: bool = True) -> float | None:
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{name} must be a number of seconds: the outermost limit (load balancer, proxy or client)")
    if isinstance(value, str):
        raise ValueError(f"{name} must be a number of seconds, not the text {value!r} (write 0.5 for '500ms')")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds or None, got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number of seconds; for 'no limit' write None, got {value!r}")
    if value <= 0:
        hint = " (0 means 'no limit' in PostgreSQL and PgBouncer; write None for that)" if value == 0 else ""
        raise ValueError(f"{name} must be more than 0 seconds{hint}, got {value!r}")
    return float(value)


def _contradiction(settings: tuple[str, ...], message: str) -> Finding:
    return Finding(CONTRADICTION, settings, message)


def _advice(settings: tuple[str, ...], message: str) -> Finding:
    return Finding(ADVICE, settings, message)


def _or_infinite(value: float | None) -> float:
    return math.inf if value is None else value


def _seconds(value: float | None) -> str:
    if value is None:
        return "no limit"
    return f"{value:g} s"
