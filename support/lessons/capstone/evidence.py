"""What one run of traffic against the service left behind, as tables and figures.

An ``Observation`` holds every instrument's record of one run (made by
``Capstone.run``) and answers the questions the course's tools answer:
which requests failed and how slow they were, which endpoint took which
connections and for how long, what PostgreSQL saw, where the event loop was
stuck, what the app logged. Numbers only; what they mean is the learner's part.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ...lab.leak_detector import HeldConnection
from ...lab.load import GENERATOR_LAG_LIMIT, LoadResult
from ...lab.pool_recorder import PoolRecorder
from ...lab.tables import Table
from .instruments import EndpointPool, Snapshot
from .loop_watch import LoopWatch
from .traffic import Stream

#: The leak detector lists connections held longer than this when the load is over.
LEAK_THRESHOLD = 0.4
#: Loop lag at p95 (seconds) beyond which a run without a blocking call was starved of CPU.
LOOP_LAG_LIMIT = 0.02


def percentile(values: list[float], percent: float) -> float | None:
    """Nearest rank, so the value is one that was observed; None without values."""
    ordered = sorted(values)
    return ordered[math.ceil(percent / 100 * len(ordered)) - 1] if ordered else None


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def short_query(query: str, width: int = 72) -> str:
    return query if len(query) <= width else query[: width - 3] + "..."


@dataclass
class Observation:
    """Everything recorded during one run of the traffic mix."""

    label: str
    settings: dict[str, Any]
    replaced: tuple[str, ...]
    streams: tuple[Stream, ...]
    duration: float
    endpoint_of: dict[str, str]  # stream path -> route template
    results: dict[str, LoadResult]  # stream path -> its requests
    pool: dict[str, EndpointPool]  # route template -> its use of the pool
    still_out: Counter[str]  # route template -> connections taken and not returned
    still_out_ages: dict[str, list[float]]
    pool_log: list[tuple[str, str]]  # (endpoint, pool log message)
    recorder: PoolRecorder
    idle_samples: list[tuple[float, int]]
    checked_out_after: int
    idle_after: int
    leaks: list[HeldConnection]
    loop: LoopWatch
    activity: list[Snapshot]
    errors: list[str]
    wall_time: float

    # ------------------------------------------------------------ small facts

    @property
    def capacity(self) -> int:
        return int(self.settings["pool_size"]) + int(self.settings["max_overflow"])

    def endpoints(self) -> list[str]:
        """The route templates the traffic reached, in the order of the mix."""
        return list(dict.fromkeys(self.endpoint_of[stream.path] for stream in self.streams))

    def records(self, endpoint: str) -> list[Any]:
        return [
            r for path, result in self.results.items() if self.endpoint_of[path] == endpoint for r in result.records
        ]

    def requests(self, endpoint: str | None = None) -> int:
        if endpoint is None:
            return sum(len(result.records) for result in self.results.values())
        return len(self.records(endpoint))

    def statuses(self, endpoint: str | None = None) -> Counter[str]:
        records = (
            [r for result in self.results.values() for r in result.records]
            if endpoint is None
            else self.records(endpoint)
        )
        return Counter(str(r.status) if r.status is not None else str(r.error) for r in records)

    def server_errors(self, endpoint: str | None = None) -> int:
        return sum(
            count for status, count in self.statuses(endpoint).items() if not status.isdigit() or int(status) >= 500
        )

    def latency(self, percent: float, endpoint: str | None = None) -> float:
        records = (
            [r for result in self.results.values() for r in result.records]
            if endpoint is None
            else self.records(endpoint)
        )
        return percentile([r.latency for r in records], percent) or 0.0

    def holds(self, endpoint: str) -> list[float]:
        return self.pool[endpoint].holds if endpoint in self.pool else []

    def hold(self, percent: float, endpoint: str) -> float:
        return percentile(self.holds(endpoint), percent) or 0.0

    def calls_holding(self, endpoint: str) -> tuple[int, int]:
        """(outgoing calls, of which made while holding a connection) by this endpoint's requests."""
        stats = self.pool.get(endpoint)
        return (stats.outgoing_calls, stats.calls_holding) if stats else (0, 0)

    def busy(self, endpoint: str) -> float:
        """Connections this endpoint kept busy on average over the run (held time / run time)."""
        held = sum(self.holds(endpoint)) + sum(self.still_out_ages.get(endpoint, []))
        return held / self.wall_time if self.wall_time else 0.0

    def needed(self, endpoint: str) -> float:
        """Little's law: arrivals per second x median time each request holds a connection.

        What the endpoint would keep busy if every request got its connection at once;
        the median leaves out rare extremes (a runaway query, a leak).
        """
        holds = self.holds(endpoint)
        if not holds:
            return 0.0
        # Requests that got a connection: all but the 500s (a pool timeout; a 503 got its connection).
        answered = sum(1 for r in self.records(endpoint) if r.status is not None and r.status != 500)
        checkouts_per_request = max(1.0, len(holds) / max(1, answered))
        rate = self.requests(endpoint) / self.duration
        return rate * checkouts_per_request * (percentile(holds, 50) or 0.0)

    @property
    def start_lag(self) -> float:
        """How late the load's requests started against their timetable, at p95 (seconds)."""
        return percentile([r.start_lag for result in self.results.values() for r in result.records], 95) or 0.0

    @property
    def generator_fell_behind(self) -> bool:
        """Requests started late (``support.lab.load``'s test): a blocking defect, or a machine too busy."""
        return self.start_lag > GENERATOR_LAG_LIMIT

    @property
    def too_busy(self) -> bool:
        """True when the machine, not the service, shaped the latencies of a run without a blocking call:
        the load started late, or the loop watch's 10 ms sleeps woke later than LOOP_LAG_LIMIT at p95."""
        return self.generator_fell_behind or self.loop.lag_percentile(95) > LOOP_LAG_LIMIT

    @property
    def timeouts(self) -> int:
        return self.recorder.timeouts

    @property
    def peak_waiting(self) -> int:
        """The most checkouts waiting at the same moment (from the recorder's waits)."""
        edges = sorted(
            [(w.started_at, 1) for w in self.recorder.waits]
            + [(w.started_at + w.waited, -1) for w in self.recorder.waits]
        )
        peak = now = 0
        for _, step in edges:
            now += step
            peak = max(peak, now)
        return peak

    def longest_statement(self, containing: str = "") -> float:
        """The longest a statement was seen running ('active') in pg_stat_activity, in seconds."""
        ages = [
            row["state_age"] or 0.0
            for snapshot in self.activity
            for row in snapshot.rows
            if row["state"] == "active" and containing in (row["query"] or "")
        ]
        return max(ages, default=0.0)

    def idle_in_transaction(self, containing: str = "", *, after_load: bool = False) -> int:
        """The most connections seen 'idle in transaction' at once (or in the last snapshot)."""
        snapshots = self.activity[-1:] if after_load else self.activity
        return max(
            (
                sum(1 for row in s.rows if row["state"] == "idle in transaction" and containing in (row["query"] or ""))
                for s in snapshots
            ),
            default=0,
        )

    def stalls(self, endpoint: str | None = None) -> int:
        if endpoint is None:
            return len(self.loop.stalls)
        return self.loop.blocked_by_endpoint()[endpoint]

    # ------------------------------------------------------------ tables

    def gauges(self) -> dict[str, Any]:
        """The four gauges of the pool, and latency, for one row of a before/after table."""
        return {
            "checked out (peak)": self.recorder.peak_checked_out,
            "checked out after load": self.checked_out_after,
            "idle after load": self.idle_after,
            "waiting (peak)": self.peak_waiting,
            "timeouts": self.timeouts,
            "5xx / failed": self.server_errors(),
            "p95 latency (ms)": ms(self.latency(95)),
            "loop stuck in app code (ms)": ms(self.loop.blocked_in_application),
        }

    def latency_table(self) -> Table:
        rows = []
        for stream in self.streams:
            result = self.results[stream.path]
            summary = result.summary()
            statuses = Counter(str(r.status) if r.status is not None else str(r.error) for r in result.records)
            rows.append(
                {
                    "request": f"GET {stream.path}",
                    "requests": summary["requests"],
                    "statuses": ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())),
                    "p50 (ms)": ms(summary["latency"]["p50"]),
                    "p95 (ms)": ms(summary["latency"]["p95"]),
                    "max (ms)": ms(summary["latency"]["max"]),
                }
            )
        return Table(rows, title=f"{self.label}: each request of the mix")

    def pool_table(self) -> Table:
        rows = []
        for endpoint in self.endpoints():
            stats = self.pool.get(endpoint, EndpointPool())
            rows.append(
                {
                    "endpoint": endpoint,
                    "requests": self.requests(endpoint),
                    "checked out (log)": stats.log_checkouts,
                    "returned (log)": stats.log_returns,
                    "still out": self.still_out.get(endpoint, 0),
                    "hold p50 (ms)": ms(percentile(stats.holds, 50)),
                    "hold p95 (ms)": ms(percentile(stats.holds, 95)),
                    "hold max (ms)": ms(max(stats.holds, default=None)),
                    "calls out (holding)": f"{stats.outgoing_calls} ({stats.calls_holding})"
                    if stats.outgoing_calls
                    else "-",
                    "busy (avg)": round(self.busy(endpoint), 2),
                    "needs (λ × hold p50)": round(self.needed(endpoint), 2),
                }
            )
        title = (
            f"{self.label}: the pool, per endpoint (pool_size {self.settings['pool_size']} + "
            f"max_overflow {self.settings['max_overflow']} = {self.capacity})"
        )
        return Table(rows, title=title)

    def leak_table(self) -> Table:
        return Table(
            [held.as_row() for held in self.leaks],
            columns=["age (s)", "where", "code", "pid"],
            title=f"{self.label}: connections held longer than {LEAK_THRESHOLD:g} s after the load (leak detector)",
        )

    def activity_table(self, *, after_load: bool = False) -> Table:
        """pg_stat_activity grouped by state and query: during the load (most at once, oldest), or after it."""
        snapshots = self.activity[-1:] if after_load else self.activity[:-1] or self.activity
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for snapshot in snapshots:
            seen: Counter[tuple[str, str]] = Counter()
            for row in snapshot.rows:
                key = (row["state"] or "", short_query(row["query"] or ""))
                seen[key] += 1
                group = groups.setdefault(
                    key, {"most at once": 0, "longest in this state (s)": 0.0, "transaction age max (s)": 0.0}
                )
                group["longest in this state (s)"] = max(group["longest in this state (s)"], row["state_age"] or 0.0)
                group["transaction age max (s)"] = max(group["transaction age max (s)"], row["transaction_age"] or 0.0)
            for key, count in seen.items():
                groups[key]["most at once"] = max(groups[key]["most at once"], count)
        rows = [{"state": state, "query": query} | values for (state, query), values in groups.items()]
        rows.sort(key=lambda row: (row["state"], -row["most at once"]))
        when = "after the load" if after_load else f"during the load ({len(snapshots)} snapshots)"
        return Table(
            rows,
            columns=["state", "most at once", "longest in this state (s)", "transaction age max (s)", "query"],
            title=f"{self.label}: pg_stat_activity of the service's connections, {when}",
        )

    def loop_table(self) -> Table:
        rows = [
            {
                "endpoint running": sample.endpoint or "(no request)",
                "samples": count,
                "blocked (ms, about)": round(count * self.loop.interval * 1000),
                "where": sample.place,
                "code": sample.code,
            }
            for sample, count in self.loop.places()
        ]
        lag = self.loop
        title = (
            f"{self.label}: where the event loop was stuck (loop lag p50 {ms(lag.lag_percentile(50))} ms, "
            f"p95 {ms(lag.lag_percentile(95))} ms, max {ms(max(lag.lags, default=0.0))} ms)"
        )
        return Table(rows, columns=["endpoint running", "samples", "blocked (ms, about)", "where", "code"], title=title)

    def error_table(self) -> Table:
        """What the app logged as errors, by the last line of each traceback."""
        last_lines = Counter(short_query(error.strip().splitlines()[-1], 110) for error in self.errors)
        return Table(
            [{"count": count, "last line": line} for line, count in last_lines.most_common()],
            title=f"{self.label}: errors the service logged ({len(self.errors)})",
        )

    def plot(self) -> Figure:
        """The four gauges over time, like a dashboard."""
        fig, axes = plt.subplots(1, 4, figsize=(12, 2.6), layout="constrained", sharex=True)
        times, counts = self.recorder.timeline()
        axes[0].step(times, counts, where="post")
        axes[0].axhline(self.capacity, color="tab:red", linestyle="--", linewidth=1, label=f"limit {self.capacity}")
        axes[0].legend(fontsize="x-small", loc="lower right")
        if self.idle_samples:
            axes[1].step(*zip(*self.idle_samples), where="post", color="tab:green")
        edges = sorted(
            [(w.started_at, 1) for w in self.recorder.waits]
            + [(w.started_at + w.waited, -1) for w in self.recorder.waits]
        )
        level, wait_t, wait_n = 0, [0.0], [0]
        for at, step in edges:
            level += step
            wait_t.append(at)
            wait_n.append(level)
        axes[2].step(wait_t, wait_n, where="post", color="tab:orange")
        timeout_at = sorted(w.started_at + w.waited for w in self.recorder.waits if w.outcome == "timeout")
        axes[3].step([0.0] + timeout_at, list(range(len(timeout_at) + 1)), where="post", color="tab:red")
        for ax, title in zip(axes, ("checked out", "idle", "waiting for a connection", "timeouts (so far)")):
            ax.set_title(title, fontsize="medium")
            ax.set_xlabel("seconds")
            ax.set_ylim(bottom=0)
        fig.suptitle(self.label)
        return fig
