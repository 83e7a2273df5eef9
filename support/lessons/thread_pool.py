"""Notebook 08: watching the thread pool that runs `def` endpoints, next to the connection pool.

FastAPI runs every `def` endpoint and every `def` dependency through
``anyio.to_thread.run_sync``, which takes a token from the event loop's
default ``CapacityLimiter`` (40 tokens unless changed) for as long as the
function runs. A thread that waits for a database connection keeps its
token all the while. The lesson needs to see both pools at once, and to get
back to a clean state after a deadlock that only `pool_timeout` ends:

* `ThreadSampler` records how many tokens are borrowed and how many tasks
  wait for one, every few milliseconds, on the same clock as a `PoolRecorder`;
* `settle()` waits until every worker thread has finished and every
  connection is back, so the next cell starts clean;
* `longest_stall()` and `snapshot_when_stalled()` put a number and the
  server's view on "nothing moved": the pool full and not one connection
  checked out or returned;
* `requests_behind_a_block()` measures the opposite mistake, a blocking call
  inside `async def`: what it does to the requests that already hold a
  connection.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from matplotlib.axes import Axes
from sqlalchemy.engine import make_url

from ..lab.local_http import local_client
from ..lab.loop_lag import LoopLagMonitor
from ..lab.pool_recorder import PoolRecorder

T = TypeVar("T")

#: How often ThreadSampler reads the limiter; a request's thread lives for tens of milliseconds at least.
SAMPLE_INTERVAL = 0.005


def sync_database_url(url: str) -> str:
    """The same database with SQLAlchemy's psycopg (version 3) driver, for ``create_engine``.

    The course's stack URLs name asyncpg, which only an async engine can use.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {parsed.drivername}://...")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def thread_limiter() -> CapacityLimiter:
    """The running event loop's default thread limiter: the one `def` endpoints take their tokens from."""
    return anyio.to_thread.current_default_thread_limiter()


class ThreadSampler:
    """Tokens of the default thread limiter in use, and tasks waiting for one, over time.

    Runs as a task on the current loop. Pass the `PoolRecorder` started for
    the same run as `clock` so that both timelines share their zero.
    """

    def __init__(self, clock: PoolRecorder | None = None, interval: float = SAMPLE_INTERVAL) -> None:
        self.limiter = thread_limiter()
        self.total_tokens = int(self.limiter.total_tokens)
        self.interval = interval
        self._origin = time.perf_counter() - (clock.elapsed if clock is not None else 0.0)
        self.samples: list[tuple[float, int, int]] = []  # (seconds, threads busy, tasks waiting)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ThreadSampler:
        self._task = asyncio.get_running_loop().create_task(self._sample(), name="thread sampler")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._record()

    def _record(self) -> None:
        statistics = self.limiter.statistics()
        self.samples.append((time.perf_counter() - self._origin, statistics.borrowed_tokens, statistics.tasks_waiting))

    async def _sample(self) -> None:
        while True:
            self._record()
            await asyncio.sleep(self.interval)

    @property
    def peak_busy(self) -> int:
        return max((busy for _, busy, _ in self.samples), default=0)

    @property
    def peak_waiting(self) -> int:
        return max((waiting for _, _, waiting in self.samples), default=0)

    def timeline(self) -> tuple[list[float], list[int], list[int]]:
        """Times (s), threads busy and tasks waiting for a thread, for a step plot."""
        return (
            [t for t, _, _ in self.samples],
            [busy for _, busy, _ in self.samples],
            [waiting for _, _, waiting in self.samples],
        )

    def __repr__(self) -> str:
        return (
            f"ThreadSampler(total_tokens={self.total_tokens}, peak busy={self.peak_busy}, "
            f"peak waiting={self.peak_waiting}, {len(self.samples)} samples)"
        )


async def settle(engine: Any, timeout: float = 5.0) -> tuple[int, int]:
    """Wait until no worker thread is busy and the engine has nothing checked out.

    Returns (threads busy, connections checked out) as last seen: (0, 0) when
    everything finished within `timeout` seconds. A thread blocked in the pool
    ends by itself at the latest after the engine's `pool_timeout`, so a
    timeout a little longer than that is enough.
    """
    pool = getattr(engine, "sync_engine", engine).pool
    limiter = thread_limiter()
    deadline = time.perf_counter() + timeout
    while True:
        busy, checked_out = int(limiter.borrowed_tokens), pool.checkedout()
        if (busy, checked_out) == (0, 0) or time.perf_counter() > deadline:
            return busy, checked_out
        await asyncio.sleep(0.02)


def longest_stall(recorder: PoolRecorder, level: int) -> float:
    """Longest time (s) the checked-out count stayed at `level` with no checkout or checkin at all."""
    samples = recorder.samples + ([(recorder.elapsed, recorder.checked_out)] if recorder.recording else [])
    return max(
        (t1 - t0 for (t0, count), (t1, _) in zip(samples, samples[1:]) if count == level),
        default=0.0,
    )


async def snapshot_when_stalled(
    recorder: PoolRecorder,
    level: int,
    probe: Callable[[], Awaitable[T]],
    *,
    quiet: float = 0.2,
    timeout: float = 5.0,
) -> tuple[float, T] | None:
    """Run `probe()` once the pool has sat at `level` checked out for `quiet` seconds with no event.

    Meant to run next to a load test, to catch what the server sees during a
    stall. Returns (seconds the pool had been still, what `probe` returned),
    or None if no such stall happened within `timeout` seconds.
    """
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        last_event_at, count = recorder.samples[-1]
        still_for = recorder.elapsed - last_event_at
        if count == level and still_for >= quiet:
            return still_for, await probe()
        await asyncio.sleep(0.02)
    return None


def plot_threads_and_connections(
    threads: ThreadSampler,
    recorder: PoolRecorder,
    *,
    pool_limit: int,
    ax: Axes | None = None,
    title: str = "Threads busy and connections checked out",
) -> Axes:
    """Both pools on one time axis, each with its limit drawn in."""
    import matplotlib.pyplot as plt

    if ax is None:
        ax = plt.subplots(figsize=(7, 3), layout="constrained")[1]
    times, busy, _ = threads.timeline()
    ax.step(times, busy, where="post", color="tab:orange", label="threads busy")
    ax.axhline(threads.total_tokens, color="tab:orange", linestyle=":", label=f"thread tokens = {threads.total_tokens}")
    pool_times, counts = recorder.timeline()
    ax.step(pool_times, counts, where="post", color="tab:blue", label="connections checked out")
    ax.axhline(pool_limit, color="tab:blue", linestyle="--", label=f"pool_size + max_overflow = {pool_limit}")
    ax.set_xlabel("seconds")
    ax.set_ylim(bottom=0, top=max(threads.total_tokens, pool_limit) * 1.15)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize="x-small")
    return ax


@dataclass
class BlockedRun:
    """What happened to requests that were in flight when one request blocked the loop.

    `held_at_block` is how many connections were checked out when the blocking
    request was sent; `query_latencies` are those of the requests already in
    flight, in seconds; `lag` and `pool` watched the whole run.
    """

    block_path: str
    held_at_block: int
    query_latencies: list[float]
    block_latency: float
    statuses: list[int]
    lag: LoopLagMonitor
    pool: PoolRecorder

    def connection_seconds(self) -> float:
        """Connections checked out, integrated over the run: what the block cost the pool."""
        end = self.pool.samples[-1][0]
        return self.pool.mean_checked_out(0.0, end) * end if end > 0 else 0.0

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.query_latencies)

        def nearest_rank(percent: float) -> float:
            return ordered[math.ceil(percent / 100 * len(ordered)) - 1]

        return {
            "p50": nearest_rank(50),
            "p95": nearest_rank(95),
            "max": ordered[-1],
            "lag max": self.lag.summary()["max"] or 0.0,
            "connection-seconds": self.connection_seconds(),
        }


async def requests_behind_a_block(
    base_url: str,
    engine: Any,
    *,
    block_path: str,
    query_path: str = "/query",
    in_flight: int = 10,
    timeout: float = 10.0,
) -> BlockedRun:
    """Send `in_flight` requests to `query_path`, then, once they all hold a connection, one to `block_path`.

    The requests in flight each check out a connection of `engine` (the app's
    async engine) for their query. The blocking request is sent only when
    that many connections have been handed out (or after 5 s), so that what
    the block does to requests already holding connections is measured, not
    luck.
    """
    async with local_client(base_url, timeout=timeout) as client:

        async def timed(path: str) -> tuple[float, int]:
            started = time.perf_counter()
            response = await client.get(path)
            return time.perf_counter() - started, response.status_code

        with PoolRecorder(engine) as recorder:
            async with LoopLagMonitor() as lag:
                queries = [asyncio.create_task(timed(query_path)) for _ in range(in_flight)]
                # The pool's own count includes connections still being opened; the
                # recorder counts only those handed to a request.
                deadline = time.perf_counter() + 5.0
                while recorder.checked_out < in_flight and time.perf_counter() < deadline:
                    await asyncio.sleep(0.005)
                held = recorder.checked_out
                block_latency, block_status = await timed(block_path)
                answered = await asyncio.gather(*queries)
    return BlockedRun(
        block_path=block_path,
        held_at_block=held,
        query_latencies=[latency for latency, _ in answered],
        block_latency=block_latency,
        statuses=[status for _, status in answered] + [block_status],
        lag=lag,
        pool=recorder,
    )
