"""Notebook 09: how long a request holds its connection while it does slow work.

The pool does not care how long a query takes; it cares how long a connection
stays checked out. A request that reads, waits 0.3 s for another service and
then writes holds its connection for the whole 0.3 s, and Little's law turned
around gives what that costs: a pool of N connections serves at most
N / (seconds held per request) requests per second. So the instrument here
times every checkout, from the pool's own events, and says how each one
ended: returned after a rollback, or invalidated (closed instead of being
reused), which is what cancellation does to a connection in the middle of a
query.

Also here: the arithmetic (``capacity``), the before/after picture, and the
exercise check's feedback, which is a pure function so that it can be
unit-tested with every mistake a learner can make.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from sqlalchemy import event

#: The pool events a ConnectionWatch listens to, in the words it logs them with.
_EVENTS = {
    "checkout": "checked out",
    "reset": "rolled back on return",
    "invalidate": "invalidated (closed, not reused)",
    "checkin": "returned to the pool",
}


@dataclass(frozen=True)
class Hold:
    """One checkout: when it began, how long the connection was held, how it ended."""

    started_at: float  # seconds since the watch started
    seconds: float
    outcome: str  # "returned" or "invalidated"


class ConnectionWatch:
    """Every checkout of one engine's pool: how long it lasted and how it ended.

    The pool's ``checkout`` and ``checkin`` events fire for each connection
    record, so the time between them is the hold time of one checkout,
    whatever the request did meanwhile (queries, waiting for another
    service, streaming). ``invalidate`` fires before ``checkin`` when the
    connection is closed rather than returned for reuse; ``reset`` fires when
    it is rolled back on its way back. ``note()`` adds the app's own moments
    to the same timeline, so one printout shows what the code did and what
    the pool did.

    Usage::

        with ConnectionWatch(engine) as watch:
            ...run load...
        watch.holds, watch.seconds_per_request(ok_requests), watch.print_timeline()
    """

    def __init__(self, engine: Any) -> None:
        self.pool = getattr(engine, "sync_engine", engine).pool
        self._origin = time.perf_counter()
        self._open: dict[int, tuple[float, bool]] = {}  # id(record) -> (checked out at, invalidated)
        self.holds: list[Hold] = []
        self.timeline: list[tuple[float, str]] = []
        self._listeners: dict[str, Callable[..., None]] = {
            "checkout": self._on_checkout,
            "reset": self._on_reset,
            "invalidate": self._on_invalidate,
            "checkin": self._on_checkin,
        }
        for name, listener in self._listeners.items():
            event.listen(self.pool, name, listener)
        self.watching = True

    def _now(self) -> float:
        return time.perf_counter() - self._origin

    def note(self, what: str) -> None:
        """Add a moment of the app's own to the timeline."""
        self.timeline.append((self._now(), what))

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        self._open[id(record)] = (self._now(), False)
        self.timeline.append((self._now(), f"pool: {_EVENTS['checkout']}"))

    def _on_reset(self, dbapi_connection: Any, record: Any, reset_state: Any) -> None:
        self.timeline.append((self._now(), f"pool: {_EVENTS['reset']}"))

    def _on_invalidate(self, dbapi_connection: Any, record: Any, exception: Any) -> None:
        if id(record) in self._open:
            self._open[id(record)] = (self._open[id(record)][0], True)
        self.timeline.append((self._now(), f"pool: {_EVENTS['invalidate']}"))

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        self.timeline.append((self._now(), f"pool: {_EVENTS['checkin']}"))
        opened = self._open.pop(id(record), None)
        if opened is not None:
            started, invalidated = opened
            self.holds.append(Hold(started, self._now() - started, "invalidated" if invalidated else "returned"))

    @property
    def checked_out(self) -> int:
        """Checkouts seen that have not come back yet."""
        return len(self._open)

    def outcomes(self) -> list[str]:
        """How each finished checkout ended, in order: "returned" or "invalidated"."""
        return [hold.outcome for hold in self.holds]

    def hold_seconds(self) -> list[float]:
        return [hold.seconds for hold in self.holds]

    def seconds_per_request(self, requests: int) -> float:
        """Connection-seconds per request: all hold time divided by the requests served.

        A request that opens two short transactions holds two connections
        one after the other; what the pool pays is their sum.
        """
        if requests < 1:
            raise ValueError(f"requests must be at least 1, got {requests!r}")
        return sum(self.hold_seconds()) / requests

    def print_timeline(self, since: float | None = None) -> None:
        """The notes and pool events in order, in ms from the first one shown."""
        shown = sorted(entry for entry in self.timeline if since is None or entry[0] >= since)
        origin = shown[0][0] if shown else 0.0
        for at, what in shown:
            print(f"  +{(at - origin) * 1000:7.1f} ms  {what}")

    def stop(self) -> None:
        """Stop listening; what was recorded stays readable. A second stop does nothing."""
        if not self.watching:
            return
        for name, listener in self._listeners.items():
            event.remove(self.pool, name, listener)
        self.watching = False

    def __enter__(self) -> ConnectionWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        held = self.hold_seconds()
        mean = f"{sum(held) / len(held) * 1000:.1f} ms" if held else "-"
        return f"ConnectionWatch(checkouts={len(held)}, mean hold={mean}, still checked out={self.checked_out})"


def capacity(connections: int, hold_seconds: float) -> float:
    """Requests per second a pool can serve: Little's law, solved for the rate.

    Busy connections = rate x seconds each request holds one; the busy count
    cannot exceed the pool's connections, so the rate cannot exceed
    connections / hold_seconds. The hold time is what matters, not the
    query time: a request that waits for another service with its
    connection checked out pays for the wait.
    """
    if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
        raise ValueError(f"connections must be a whole number of at least 1, got {connections!r}")
    if not (isinstance(hold_seconds, (int, float)) and 0 < hold_seconds < math.inf):
        raise ValueError(f"hold_seconds must be a number of seconds greater than 0, got {hold_seconds!r}")
    return connections / hold_seconds


def pool_limit(engine: Any) -> int:
    """pool_size + max_overflow of an engine's QueuePool: the most connections it opens."""
    pool = getattr(engine, "sync_engine", engine).pool
    return int(pool.size() + pool._max_overflow)


def plot_before_after(
    labels: Sequence[str],
    hold_ms: Sequence[float],
    capacities: Sequence[float],
    *,
    offered_rate: float | None = None,
    connections: int | None = None,
) -> Figure:
    """Two bar charts side by side: hold time per request, and the capacity it allows."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
    colours = ["tab:red", "tab:green", "tab:blue", "tab:orange"][: len(labels)]
    left.bar(labels, hold_ms, color=colours)
    left.set(title="Connection held per request", ylabel="milliseconds", ylim=(0, max(hold_ms) * 1.15))
    for x, value in enumerate(hold_ms):
        left.annotate(f"{value:.0f} ms", (x, value), ha="center", va="bottom", fontsize="small")
    right.bar(labels, capacities, color=colours)
    right.set_yscale("log")
    right.set_ylim(1, max([*capacities, offered_rate or 0]) * 2.5)  # bars start at 1/s, room for the labels
    pool = f" of {connections} connections" if connections else ""
    right.set(title=f"Capacity{pool} (Little's law)", ylabel="requests per second (log scale)")
    for x, value in enumerate(capacities):
        right.annotate(f"{value:.0f}/s", (x, value), ha="center", va="bottom", fontsize="small")
    if offered_rate is not None:
        right.axhline(offered_rate, color="gray", linestyle="--", label=f"offered load {offered_rate:g}/s")
        right.legend(loc="upper left", fontsize="small")
    return fig


def exercise_feedback(
    *,
    statuses: dict[int, int],
    requests: int,
    saved: int,
    holds: Iterable[float],
    call_seconds: float,
    left_checked_out: int,
    function_scope: bool = False,
    first_error: str | None = None,
) -> str:
    """Feedback on the exercise's endpoint, naming the mistake the measurements show.

    ``statuses`` counts the HTTP statuses of the load run (``requests`` sent),
    ``saved`` the rows the endpoint wrote during it, ``holds`` the seconds of
    each checkout, ``call_seconds`` how long the slow call takes,
    ``left_checked_out`` the connections still out once the run settled,
    ``function_scope`` whether the endpoint's session dependency uses
    ``scope="function"``, ``first_error`` the last line of the first error
    the server logged. Checked in order of what to fix first.
    """
    holds = list(holds)
    ok = sum(count for status, count in statuses.items() if 200 <= status < 300)
    failed = {status: count for status, count in statuses.items() if not 200 <= status < 300}
    unanswered = requests - sum(statuses.values())
    failures = f"{requests - ok} of {requests} requests failed (statuses {failed}" + (
        f", {unanswered} without an answer)" if unanswered else ")"
    )
    if left_checked_out:
        return (
            f"not yet: {left_checked_out} connection(s) were still checked out after the run. A session is "
            "left open somewhere: get it from the dependency, or use `async with ExerciseSession() as s:`."
        )
    long_holds = [seconds for seconds in holds if seconds >= 0.8 * call_seconds]
    if long_holds:
        scope_hint = (
            ' `scope="function"` does not help here: it closes the session when the endpoint returns, '
            "and the call happens before that."
            if function_scope
            else ""
        )
        symptom = f" Meanwhile {failures}." if ok < requests else ""
        return (
            f"not yet: {len(long_holds)} of {len(holds)} checkouts held their connection for "
            f"{min(long_holds):.2f} s or more, as long as the {call_seconds:g} s shipping call: the "
            "transaction is still open while the endpoint awaits the call. End it first "
            f"(`await session.commit()` after the read), then call, then write and commit.{scope_hint}{symptom}"
        )
    if ok < requests:
        logged = f" The server logged: {first_error}" if first_error else ""
        return f"not yet: {failures}.{logged}"
    if not holds:
        return "not yet: the endpoint never used the database; it must read the cart and save the quote."
    if saved < ok:
        return (
            f"not yet: {ok} answers but only {saved} quotes saved. The write after the call must be "
            "committed (`await session.commit()`): closing the session rolls back whatever is not."
        )
    per_request = sum(holds) / ok
    return (
        f"well done: {ok} of {requests} answered, {saved} quotes saved, each request held connections for "
        f"{per_request * 1000:.0f} ms in all (the call takes {call_seconds * 1000:.0f} ms)."
    )
