"""Plumbing for notebook 10 (timeouts as guards): a server that never answers,
the servers' own log lines, and a run's latency per status code.

The notebook's point is in what the timeouts do; these helpers only set the
scene and read the results, so the cells stay short.
"""

from __future__ import annotations

import contextlib
import math
import re
import socket
from collections.abc import Iterator
from pathlib import Path

from support.lab.load import LoadResult
from support.lab.tables import Table
from support.stack import Stack

# "2026-11-27 11:11:24.702 UTC [20306] " at the start of PostgreSQL's and PgBouncer's lines.
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \S+ \[\d+\] ")


@contextlib.contextmanager
def unresponsive_port() -> Iterator[int]:
    """A 127.0.0.1 port that accepts TCP connections and never says a word.

    The operating system completes the TCP handshake for a listening socket
    even if nobody calls accept(), so a client connects, sends its startup
    message and waits for an answer that never comes: what a database behind a
    dead network path or a hung host looks like. Only a connect timeout ends
    the wait.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]
    finally:
        listener.close()


def server_log(stack: Stack, server: str, containing: str) -> list[str]:
    """Lines of a private stack's PostgreSQL or PgBouncer log that contain `containing`.

    The time stamp and process id at the start of each line are dropped. Only
    a stack this kernel started (``start_private_stack``) has its logs here; an
    attached stack's logs live wherever that stack was started.
    """
    if server not in ("postgres", "pgbouncer"):
        raise ValueError(f"server must be 'postgres' or 'pgbouncer', got {server!r}")
    if stack.mode != "private" or not stack.directory:
        raise ValueError("only a private stack's logs can be read here; this one was started elsewhere")
    pattern = "postgres.log" if server == "postgres" else "pgbouncer-*.log"
    lines = []
    for path in sorted(Path(stack.directory).glob(pattern)):
        for line in path.read_text(errors="replace").splitlines():
            if containing in line:
                lines.append(_LOG_PREFIX.sub("", line))
    return lines


def latency_by_status(runs: dict[str, LoadResult]) -> Table:
    """One row per run and status code: how many, and how long they took (ms).

    Requests that got no response at all are counted under their error's
    class name instead of a status code.
    """
    rows = []
    for name, run in runs.items():
        groups: dict[str, list[float]] = {}
        for record in run.records:
            key = str(record.status) if record.status is not None else str(record.error)
            groups.setdefault(key, []).append(record.latency)
        for key in sorted(groups):
            latencies = sorted(groups[key])
            rows.append(
                {
                    "run": name,
                    "status": key,
                    "requests": len(latencies),
                    "min (ms)": round(latencies[0] * 1000),
                    "p50 (ms)": round(_nearest_rank(latencies, 50) * 1000),
                    "max (ms)": round(latencies[-1] * 1000),
                }
            )
    return Table(rows, title="Latency by status code")


def _nearest_rank(ordered: list[float], percent: float) -> float:
    return ordered[math.ceil(percent / 100 * len(ordered)) - 1]
