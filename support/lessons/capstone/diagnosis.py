"""Checking the learner's diagnosis of the service, one finding at a time.

A finding is ``{"endpoint": ..., "cause": ...}``: where the defect is (a
route template, or ``"engine"`` for the pool's settings) and what kind it is
(one of ``CAUSES``). The check reads the learner's input generously (a
concrete path such as ``/orders/7`` is matched to its route, a cause may be
written with spaces), says exactly what it could not read, and answers each
finding from the evidence of the learner's own run: what the tools showed
about that place, why the chosen cause does or does not fit, and which tool
to look at next. It keeps no state, so it can be run again and again.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from .evidence import Observation, ms

#: The kinds of defect a finding can name, with what each means.
CAUSES: dict[str, str] = {
    "leak": "a connection is taken and, on some path, never given back",
    "io_in_transaction": "slow I/O (such as an HTTP call) while a transaction holds the connection",
    "blocking_call": "a blocking call inside async def stops the event loop",
    "pool_too_small": "correct code, but the traffic keeps more connections busy than the pool has",
    "missing_timeout": "nothing limits how long a statement may run",
    "slow_query": "a query that is slow every time it runs",
    "stale_connection": "connections that died while they sat in the pool",
}
#: The place for defects in the pool's settings rather than in one endpoint's code.
ENGINE = "engine"
#: Where the defects are, and of which kind. Several keys may name the same defect.
DEFECTS: dict[tuple[str, str], str] = {
    ("/orders/{order_id}", "leak"): "leak",
    ("/catalog/items/{item_id}/price", "blocking_call"): "blocking_call",
    (ENGINE, "pool_too_small"): "pool_too_small",
    ("/orders/{order_id}/eta", "io_in_transaction"): "io_in_transaction",
    ("/reports/sales", "missing_timeout"): "missing_timeout",
    (ENGINE, "missing_timeout"): "missing_timeout",
}
#: The place where each defect shows, for feedback on a right cause at the wrong place.
HOME = {
    "leak": "/orders/{order_id}",
    "blocking_call": "/catalog/items/{item_id}/price",
    "pool_too_small": ENGINE,
    "io_in_transaction": "/orders/{order_id}/eta",
    "missing_timeout": "/reports/sales",
}
_SYNONYMS = {
    "session_leak": "leak",
    "connection_leak": "leak",
    "leaked_session": "leak",
    "io_inside_transaction": "io_in_transaction",
    "slow_io_in_transaction": "io_in_transaction",
    "external_call_in_transaction": "io_in_transaction",
    "blocking": "blocking_call",
    "blocking_io": "blocking_call",
    "sync_call": "blocking_call",
    "pool_size": "pool_too_small",
    "small_pool": "pool_too_small",
    "no_timeout": "missing_timeout",
    "statement_timeout": "missing_timeout",
    "stale_connections": "stale_connection",
}
_KEYS = ("endpoint", "cause")
TOTAL = len(set(DEFECTS.values()))


@dataclass
class DiagnosisFeedback:
    """Feedback lines, and which defects the findings identified."""

    lines: list[str] = field(default_factory=list)
    found: set[str] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return len(self.found) == TOTAL

    def __str__(self) -> str:
        return "\n".join(self.lines)

    __repr__ = __str__


def normalise_cause(cause: Any) -> tuple[str | None, str | None]:
    """(the cause, None) or (None, what is wrong with it)."""
    if not isinstance(cause, str) or not cause.strip():
        return None, f"the cause must be one of the words listed, as text, got {cause!r}"
    word = re.sub(r"[\s\-/]+", "_", cause.strip().lower())
    word = _SYNONYMS.get(word, word)
    if word in CAUSES:
        return word, None
    close = difflib.get_close_matches(word, list(CAUSES) + list(_SYNONYMS), n=1, cutoff=0.6)
    hint = f"did you mean {_SYNONYMS.get(close[0], close[0])!r}? " if close else ""
    return None, f"{cause!r} is not a cause I know; {hint}the causes are: {', '.join(CAUSES)}"


def normalise_place(place: Any, endpoints: list[str]) -> tuple[str | None, str | None]:
    """(the route template or 'engine', None) or (None, what is wrong with it)."""
    if not isinstance(place, str) or not place.strip():
        return None, f"the endpoint must be a route such as {endpoints[0]!r}, as text, got {place!r}"
    text = place.strip()
    text = re.sub(r"^(GET|POST|PUT|DELETE)\s+", "", text, flags=re.IGNORECASE).split("?")[0]
    if text.lower() in (ENGINE, "the engine", "pool", "the pool", "settings", "engine settings"):
        return ENGINE, None
    if not text.startswith("/"):
        text = "/" + text
    text = text.rstrip("/") or "/"
    if text in endpoints:
        return text, None
    for template in endpoints:
        if re.fullmatch(re.sub(r"\{[^/]+\}", r"[^/]+", template), text):
            return template, None
    close = difflib.get_close_matches(text, endpoints, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    listed = ", ".join(repr(e) for e in endpoints + [ENGINE])
    return None, f"{place!r} is not an endpoint of the service; {hint}the places are: {listed}"


def check_diagnosis(findings: Any, evidence: Observation) -> DiagnosisFeedback:
    """Feedback on each finding, from the evidence of the run the learner looked at."""
    feedback = DiagnosisFeedback()
    endpoints = evidence.endpoints()
    if isinstance(findings, dict):
        findings = [findings]
    if not isinstance(findings, (list, tuple)):
        feedback.lines.append(
            'not yet: findings must be a list of dicts such as [{"endpoint": "/health", "cause": "leak"}], '
            f"got {type(findings).__name__}"
        )
        return feedback
    if not findings:
        feedback.lines.append(
            f"nothing to check yet: add a finding for each defect you find ({TOTAL} are planted). "
            + _unexplained(evidence, set())[0]
        )
        return feedback
    seen: set[tuple[str, str]] = set()
    for number, finding in enumerate(findings, 1):
        label = f"finding {number}"
        problem = _shape_problem(finding)
        if problem:
            feedback.lines.append(f"{label}: {problem}")
            continue
        place, place_problem = normalise_place(finding["endpoint"], endpoints)
        cause, cause_problem = normalise_cause(finding["cause"])
        problems = [p for p in (place_problem, cause_problem) if p]
        if problems:
            feedback.lines.append(f"{label}: " + "; ".join(problems))
            continue
        assert place is not None and cause is not None
        if (place, cause) in seen:
            feedback.lines.append(f"{label}: the same as an earlier finding ({place}, {cause}); counted once")
            continue
        seen.add((place, cause))
        read_as = "" if finding["endpoint"].strip() == place else f" (read {finding['endpoint']!r} as {place})"
        defect = DEFECTS.get((place, cause))
        if defect is not None:
            feedback.found.add(defect)
            feedback.lines.append(f"{label}: RIGHT{read_as}: {place} -> {cause}. {_confirm(defect, evidence)}")
        else:
            feedback.lines.append(f"{label}: not this one{read_as}: {_redirect(place, cause, evidence)}")
    feedback.lines.append(f"found {len(feedback.found)} of {TOTAL}.")
    if not feedback.complete:
        feedback.lines.extend(_unexplained(evidence, feedback.found))
    else:
        feedback.lines.append("All of them. Now fix them (next section) and prove each fix with a run.")
    return feedback


def _shape_problem(finding: Any) -> str | None:
    if not isinstance(finding, dict):
        return f'each finding is a dict such as {{"endpoint": "/health", "cause": "leak"}}, got {finding!r}'
    problems = []
    for key in finding:
        if key not in _KEYS:
            close = difflib.get_close_matches(str(key), _KEYS, n=1)
            problems.append(f"{key!r} is not a key here" + (f"; did you mean {close[0]!r}?" if close else ""))
    problems += [f"it has no {key!r}" for key in _KEYS if key not in finding]
    return "; ".join(problems) or None


# ------------------------------------------------------------ what the evidence says


def _pool_facts(place: str, ev: Observation) -> str:
    stats = ev.pool.get(place)
    if stats is None or not (stats.log_checkouts or stats.holds):
        return f"{place} took no connection from the pool in this run"
    return (
        f"the pool log shows {place} checked out {stats.log_checkouts} connection(s) and returned "
        f"{stats.log_returns}; they were held {ms(ev.hold(50, place))} ms at p50, "
        f"{ms(ev.hold(95, place))} ms at p95, {ms(max(stats.holds, default=0.0))} ms at most"
    )


def _confirm(defect: str, ev: Observation) -> str:
    """The evidence that backs a right finding, from this run."""
    if defect == "leak":
        if not ev.leaks:
            return "Evidence: on the 404 path the session is never closed (this run's leak detector caught none)."
        return (
            f"Evidence: {len(ev.leaks)} connection(s) still out after the load, checked out at {ev.leaks[0].where}; "
            "on the server 'idle in transaction' until the run's clean-up closed them."
        )
    if defect == "blocking_call":
        return (
            f"Evidence: the loop watch caught the loop stuck in this endpoint {times(ev.stalls(HOME['blocking_call']))}"
            "; "
            "a synchronous call inside async def holds every other request up."
        )
    if defect == "pool_too_small":
        return (
            f"Evidence: Little's law from this run needs about {_needed_total(ev):.1f} connections busy, "
            f"the pool has {ev.capacity}; {ev.timeouts} checkouts timed out."
        )
    if defect == "io_in_transaction":
        calls, holding = ev.calls_holding(HOME["io_in_transaction"])
        if not holding:
            return "Evidence: the courier call sits inside session.begin() (this run caught no such call)."
        return (
            f"Evidence: {holding} of its {calls} calls to the courier were made while holding a connection, held "
            f"{ms(ev.hold(95, HOME['io_in_transaction']))} ms at p95; on the server 'idle in transaction': "
            "the database waits for the app."
        )
    return (
        f"Evidence: a statement ran {ev.longest_statement('pg_sleep'):.1f} s ('active' in pg_stat_activity) and "
        f"statement_timeout is {ev.settings['statement_timeout']}: nothing stops a runaway report."
    )


def times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _needed_total(ev: Observation) -> float:
    return sum(ev.needed(endpoint) for endpoint in ev.endpoints())


def _what_it_shows(place: str, ev: Observation) -> str:
    """A one-line summary of the evidence about a place (never naming its defect)."""
    if place == ENGINE:
        return (
            f"The pool has {ev.capacity} connections (pool_size {ev.settings['pool_size']} + max_overflow "
            f"{ev.settings['max_overflow']}); adding up the 'needs' column (arrivals x median hold) gives "
            f"{_needed_total(ev):.1f}, {ev.needed('/reports/sales'):.1f} of them for /reports/sales alone."
        )
    latency = f"{ev.requests(place)} requests, p95 {ms(ev.latency(95, place))} ms"
    loop = f"the loop watch caught the loop in it {times(ev.stalls(place))}"
    return f"{place}: {latency}; {_pool_facts(place, ev)}; {loop}."


def _why_not(place: str, cause: str, ev: Observation) -> str:
    """Why `cause` does not fit what the evidence shows about `place`."""
    stats = ev.pool.get(place)
    if cause == "pool_too_small":
        return (
            "The pool is shared by every endpoint, so its size is a setting, not a defect of one endpoint; "
            "if you think the pool is too small, write 'engine' as the place."
        )
    if place == ENGINE and cause not in ("stale_connection", "slow_query"):
        return (
            f"'engine' stands for the pool's settings (pool_size, max_overflow, pool_timeout, statement_timeout); "
            f"a {cause} would be in some endpoint's code. {_where_to_look(cause)}"
        )
    if cause == "leak":
        if stats is None or not stats.log_checkouts:
            return "A leak keeps a connection it took; this endpoint took none."
        return (
            "A leak never gives a connection back; the pool log shows every one of its connections returned "
            f"({stats.log_returns} of {stats.log_checkouts})."
        )
    if cause == "io_in_transaction":
        if stats is None or not stats.holds:
            return "I/O inside a transaction holds a connection; this endpoint took none."
        calls, holding = ev.calls_holding(place)
        if not calls:
            return (
                "I/O inside a transaction means waiting on something else while holding a connection; this endpoint "
                "calls no one (the 'calls out' column), and its hold times are what its queries take."
            )
        return (
            f"{holding} of its {calls} outgoing calls were made while holding a connection; compare its hold time "
            "with what pg_stat_activity says its connections were doing."
        )
    if cause == "blocking_call":
        if place == "/catalog/menu.pdf":
            return (
                "It does call time.sleep, but it is a plain def endpoint: FastAPI runs it in a worker thread, "
                "so the event loop goes on serving (notebook 08). The loop watch shows where the loop itself was stuck."
            )
        if ev.stalls(place) <= 2:
            return (
                "A blocking call shows in the loop watch as the place where the loop was stuck, and hardly any "
                f"sample was in {place}: if it is slow, it is waiting for a loop that something else holds."
            )
        return f"The loop watch did catch the loop in {place}; look at the line it names, and what runs there."
    if cause == "missing_timeout":
        return (
            f"A missing timeout lets one statement run on; {place}'s longest hold was "
            f"{ms(max(stats.holds, default=0.0)) if stats else '-'} ms. Look in pg_stat_activity for a statement "
            "'active' far longer than its endpoint's usual hold."
        )
    if cause == "slow_query":
        if place == ENGINE:
            return "A slow query is in some endpoint's SQL, not in the pool's settings; compare hold times at p50."
        if place == "/reports/sales":
            return (
                f"Its usual report holds a connection {ms(ev.hold(50, place))} ms: that is what the report costs, "
                "and it is the same every time. Look at pg_stat_activity for the one statement that ran far longer "
                "than that, and at what the settings do to stop it."
            )
        return f"Its queries hold a connection {ms(ev.hold(50, place))} ms at p50; that is not slow."
    return (
        "Stale connections fail with 'connection is closed' or 'terminating connection'; the service's error log "
        f"has {_error_kinds(ev)}."
    )


def _error_kinds(ev: Observation) -> str:
    kinds = {error.strip().splitlines()[-1].split(":")[0] for error in ev.errors}
    return "no error at all" if not kinds else "only " + ", ".join(sorted(kinds))


def _where_to_look(cause: str) -> str:
    return {
        "leak": "For a leak, look for checkouts never returned: the 'still out' column and the leak detector's "
        "'where'.",
        "blocking_call": "For a blocking call, look at the loop watch: which endpoint ran while the loop was stuck, "
        "and on which line.",
        "io_in_transaction": "For I/O in a transaction, compare hold times with pg_stat_activity: 'idle in "
        "transaction' means the app kept a transaction open while it did something else.",
        "missing_timeout": "For a missing timeout, look in pg_stat_activity during the load for a statement "
        "'active' for seconds.",
        "pool_too_small": "For the pool's size, add up the 'needs' column and compare it with pool_size + "
        "max_overflow.",
        "slow_query": "No endpoint here is slow every time beyond what it has to do; compare hold times at p50.",
        "stale_connection": "No connection died in the pool here: the error log would say so.",
    }[cause]


def _redirect(place: str, cause: str, ev: Observation) -> str:
    own = [defect for (where, _), defect in DEFECTS.items() if where == place]
    if own:
        return (
            f"{place} does have a problem, but the evidence does not say '{cause}'. {_what_it_shows(place, ev)} "
            f"{_why_not(place, cause, ev)} Which cause does that fit?"
        )
    if place != ENGINE and cause in HOME:
        where = "" if cause == "pool_too_small" else _where_to_look(cause)
        return f"{_what_it_shows(place, ev)} {_why_not(place, cause, ev)} {where}".strip()
    return f"{_what_it_shows(place, ev)} {_why_not(place, cause, ev)}"


def _unexplained(ev: Observation, found: set[str]) -> list[str]:
    """The symptoms of this run no finding explains yet, by the evidence that shows them."""
    again = "not clear in this run; run the traffic cell again to see it"
    lines = []
    if "leak" not in found:
        lines.append(
            f"{ev.checked_out_after} connection(s) were still checked out after the load ('checked out after load')."
            if ev.checked_out_after
            else f"a connection kept after the load: {again}."
        )
    if "blocking_call" not in found:
        lines.append(
            f"the event loop lagged up to {ms(max(ev.loop.lags, default=0.0))} ms, and the loop watch saw it stuck "
            f"{times(ev.stalls())}: /health, which does nothing, took {ms(ev.latency(95, '/health'))} ms at p95."
        )
    if "pool_too_small" not in found:
        lines.append(f"{ev.timeouts} checkouts gave up after pool_timeout ({ev.settings['pool_timeout']} s).")
    if "io_in_transaction" not in found:
        holding = sum(ev.calls_holding(endpoint)[1] for endpoint in ev.endpoints())
        lines.append(
            f"{holding} outgoing call(s) were made while the calling request held a connection (the pool table's "
            "'calls out' column), and pg_stat_activity showed transactions 'idle in transaction' during the load."
            if holding
            else f"outgoing calls made while holding a connection: {again}."
        )
    if "missing_timeout" not in found:
        longest = ev.longest_statement("pg_sleep")
        lines.append(
            f"a statement stayed 'active' for {longest:.1f} s (pg_stat_activity)."
            if longest >= 1
            else f"a statement that runs for seconds: {again}."
        )
    return ["Still unexplained in your run: " + " ".join(f"({i}) {line}" for i, line in enumerate(lines, 1))]
