"""Recording what a SQLAlchemy pool does while load runs.

Two things explain pool exhaustion: how many connections are checked out at
each moment, and how long each request for a connection waited (and whether
it gave up). The first is sampled at the pool's "checkout" and "checkin"
events. The pool has no event for "started waiting", so the second wraps the
pool's public ``connect()`` method on this one pool instance, which is what
the engine calls for every connection it needs.

The count is a tally of those events, but it starts from the pool's own
count (``pool.checkedout()``), not from zero: a recorder started while the
requests of an interrupted run still hold connections starts at their
number and comes back down to 0, instead of going negative. ``stop()``
sets the final count to the pool's own again. (The pool's count also
includes connections still being opened, which have not been handed out;
sampling it at every event would inflate the peak at the start of a run.)
Pools that keep no count (NullPool) are tallied from 0.

A synchronous engine checks connections out and in from many threads at once
(FastAPI runs ``def`` endpoints in a thread pool), so the count is updated
under a lock.

Usage::

    recorder = PoolRecorder(engine)      # AsyncEngine or Engine
    ...run load...
    recorder.stop()
    recorder.peak_checked_out, recorder.timeouts, recorder.timeline()
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

from sqlalchemy import event
from sqlalchemy.exc import TimeoutError as PoolTimeoutError


@dataclass(frozen=True)
class CheckoutWait:
    """One request for a connection: when, how long it waited, what came of it."""

    started_at: float
    waited: float
    outcome: str  # "ok", "timeout" or the exception class name


class PoolRecorder:
    """Checked-out count over time and checkout waits of one engine's pool."""

    def __init__(self, engine) -> None:
        self.pool = getattr(engine, "sync_engine", engine).pool
        self._origin = time.perf_counter()
        self._counts_itself = callable(getattr(self.pool, "checkedout", None))
        self._checked_out = self.pool.checkedout() if self._counts_itself else 0
        self._lock = threading.Lock()
        #: Connections already checked out when recording began (from an earlier, interrupted run).
        self.checked_out_at_start = self._checked_out
        self.samples: list[tuple[float, int]] = [(0.0, self._checked_out)]
        self.waits: list[CheckoutWait] = []
        event.listen(self.pool, "checkout", self._on_checkout)
        event.listen(self.pool, "checkin", self._on_checkin)
        self._original_connect = self.pool.connect
        self.pool.connect = self._timed_connect
        self.recording = True

    def _now(self) -> float:
        return time.perf_counter() - self._origin

    @property
    def elapsed(self) -> float:
        """Seconds since the recorder started: the clock of `samples` and `waits`."""
        return self._now()

    def _on_checkout(self, dbapi_connection, connection_record, connection_proxy) -> None:
        with self._lock:
            self._checked_out += 1
            self.samples.append((self._now(), self._checked_out))

    def _on_checkin(self, dbapi_connection, connection_record) -> None:
        with self._lock:
            self._checked_out -= 1
            self.samples.append((self._now(), self._checked_out))

    def _timed_connect(self):
        started = self._now()
        try:
            connection = self._original_connect()
        except PoolTimeoutError:
            self.waits.append(CheckoutWait(started, self._now() - started, "timeout"))
            raise
        except Exception as exc:
            self.waits.append(CheckoutWait(started, self._now() - started, type(exc).__name__))
            raise
        self.waits.append(CheckoutWait(started, self._now() - started, "ok"))
        return connection

    def stop(self) -> None:
        """Detach from the pool; what was recorded stays readable."""
        if not self.recording:
            return
        event.remove(self.pool, "checkout", self._on_checkout)
        event.remove(self.pool, "checkin", self._on_checkin)
        del self.pool.connect  # the class's own method shows through again
        with self._lock:
            if self._counts_itself:
                self._checked_out = self.pool.checkedout()
            self.samples.append((self._now(), self._checked_out))
        self.recording = False

    def __enter__(self) -> PoolRecorder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def checked_out(self) -> int:
        """Connections checked out, as counted by the events (the pool's own count after stop())."""
        return self._checked_out

    async def wait_until_returned(self, timeout: float = 5.0) -> int:
        """Wait (at most `timeout` s) until every connection is back; return how many still are not.

        After an interrupted run the requests it started finish on their own
        a moment later; a cell can wait for them instead of failing on them.
        """
        deadline = time.perf_counter() + timeout
        while self._pool_count() > 0 and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        return self._pool_count()

    def _pool_count(self) -> int:
        return self.pool.checkedout() if self._counts_itself else self._checked_out

    @property
    def peak_checked_out(self) -> int:
        return max(count for _, count in self.samples)

    @property
    def timeouts(self) -> int:
        return sum(1 for wait in self.waits if wait.outcome == "timeout")

    def timeline(self) -> tuple[list[float], list[int]]:
        """Times (s since the recorder started) and checked-out counts, for a step plot."""
        times, counts = zip(*self.samples)
        return list(times), list(counts)

    def mean_checked_out(self, start: float, end: float) -> float:
        """Time-weighted average of the checked-out count between two moments.

        This is Little's L, the number of connections busy on average, which
        the peak overstates (a burst of new connections at the start of a
        run shows in the peak, hardly in the mean).
        """
        if end <= start:
            raise ValueError(f"end ({end}) must come after start ({start})")
        times, counts = self.timeline()
        total = 0.0
        for t0, t1, count in zip(times, times[1:] + [end], counts):
            total += count * max(0.0, min(t1, end) - max(t0, start))
        return total / (end - start)

    def summary(self) -> dict[str, float]:
        waited = sorted(wait.waited for wait in self.waits)
        return {
            "checkouts requested": len(self.waits),
            "timed out": self.timeouts,
            "peak checked out": self.peak_checked_out,
            "checked out now": self._checked_out,
            "longest wait (s)": round(waited[-1], 3) if waited else 0.0,
        } | ({"checked out at start": self.checked_out_at_start} if self.checked_out_at_start else {})

    def __repr__(self) -> str:
        return "PoolRecorder(" + ", ".join(f"{k}={v}" for k, v in self.summary().items()) + ")"
