"""What the evidence of the learner's own run says about a place and a cause (feedback for the diagnosis)."""

from __future__ import annotations

from .defects import DEFECTS, ENGINE, HOME
from .evidence import Observation, ms


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
        "'active' far longer than its endpoint's usual hold.",
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
        longest, usual = ev.longest_statement("pg_sleep"), ev.hold(50, HOME["missing_timeout"])
        lines.append(
            f"a statement stayed 'active' for {longest:.1f} s (pg_stat_activity), where its endpoint usually holds a "
            f"connection {ms(usual)} ms."
            if longest > 0 and longest >= 2 * usual
            else f"a statement that runs far longer than the others: {again}."
        )
    return ["Still unexplained in your run: " + " ".join(f"({i}) {line}" for i, line in enumerate(lines, 1))]
