"""How late the event loop runs what it was asked to run: loop lag.

An async app serves every request on one thread. While any code on that
thread runs without awaiting (``time.sleep``, a synchronous database driver,
a long computation), nothing else on the loop moves: not other requests, not
timers, not the pool's timeouts. The symptom is hard to see from inside a
request, but easy to measure from outside it: a task that asks to sleep for a
short interval wakes up late by however long the loop was busy.

Usage::

    async with LoopLagMonitor() as lag:   # a task on the running loop
        ...run load...
    lag.summary()      # {"samples": n, "p50": s, "p95": s, "max": s}
    lag.timeline()     # (seconds since start, lag in seconds) per wake-up
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

#: The default interval: short enough to catch a 20 ms block, long enough to cost nothing.
DEFAULT_INTERVAL = 0.01


class LoopLagMonitor:
    """A task that sleeps `interval` seconds again and again and records how late it wakes.

    Each sample is (when it woke, seconds since the monitor started; how much
    later than asked). A loop with nothing blocking it wakes the task within
    a millisecond or so; a loop blocked for 50 ms shows a sample of about
    50 ms. Start and stop it around what you want to measure, with ``async
    with`` or ``start()`` / ``await stop()``.
    """

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval <= 1:
            raise ValueError(f"interval must be a number of seconds between 0 and 1, e.g. 0.01; got {interval!r}")
        self.interval = float(interval)
        self.samples: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None
        self._origin = 0.0

    async def __aenter__(self) -> LoopLagMonitor:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start sampling on the running loop; starting a running monitor does nothing."""
        if self.running:
            return
        loop = asyncio.get_running_loop()
        self._origin = loop.time()
        self._task = loop.create_task(self._sample(), name="loop lag monitor")

    async def stop(self) -> None:
        """Stop sampling; the samples stay readable. Stopping twice does nothing."""
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked_at = loop.time()
            await asyncio.sleep(self.interval)
            woke_at = loop.time()
            self.samples.append((woke_at - self._origin, max(0.0, woke_at - asked_at - self.interval)))

    def lags(self) -> list[float]:
        return [lag for _, lag in self.samples]

    def timeline(self) -> tuple[list[float], list[float]]:
        """Wake-up times (s since start) and lags (s), for a plot."""
        return [t for t, _ in self.samples], self.lags()

    def summary(self) -> dict[str, Any]:
        """Number of samples and the lag's p50, p95 and max in seconds (None without samples).

        Percentiles are by nearest rank, so each is a lag that was observed.
        """
        ordered = sorted(self.lags())

        def nearest_rank(percent: float) -> float | None:
            return ordered[math.ceil(percent / 100 * len(ordered)) - 1] if ordered else None

        return {
            "samples": len(ordered),
            "p50": nearest_rank(50),
            "p95": nearest_rank(95),
            "max": ordered[-1] if ordered else None,
        }

    def __repr__(self) -> str:
        s = self.summary()
        if not s["samples"]:
            return f"LoopLagMonitor(interval={self.interval}, no samples)"
        return (
            f"LoopLagMonitor(interval={self.interval}, {s['samples']} samples, lag p50 {s['p50'] * 1000:.1f} ms, "
            f"p95 {s['p95'] * 1000:.1f} ms, max {s['max'] * 1000:.1f} ms)"
        )
