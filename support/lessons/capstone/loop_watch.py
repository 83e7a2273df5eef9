"""Loop lag, and where the event loop was stuck while it lagged.

Every request, every query and the load generator itself share one event
loop. Code that blocks it (a synchronous call inside ``async def``) delays
all of them at once, which shows as latency everywhere and points nowhere.
Two measurements point somewhere:

* loop lag: a task asks to sleep ``interval`` seconds over and over and
  records how much later than asked it woke up;
* a watchdog thread: whenever that task has not run for longer than
  ``stall`` seconds, the loop is stuck in whatever code runs on it right now.
  The thread takes that code's stack (``sys._current_frames()``), keeps the
  innermost frame outside library code, and notes the endpoint whose request
  task is running (from a task -> endpoint map the caller keeps).

One sample is taken per ``interval`` of a stall, so samples x interval is
roughly the time the loop was blocked there.
"""

from __future__ import annotations

import asyncio
import linecache
import math
import sys
import sysconfig
import threading
import time
import types
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from ...lab.leak_detector import LIBRARY_PATHS, describe_place

#: Library code: what the leak detector skips, the standard library, and these instruments.
_STDLIB = sysconfig.get_paths()["stdlib"]
_INSTRUMENTS = ("/support/lab/",) + tuple(
    f"/support/lessons/capstone/{name}.py" for name in ("instruments", "traffic", "loop_watch", "harness", "evidence")
)


@dataclass(frozen=True)
class StallSample:
    """One look at a stuck loop: when, the endpoint whose task ran, and the code it ran."""

    at: float
    endpoint: str | None
    filename: str | None
    lineno: int
    function: str

    @property
    def place(self) -> str:
        if self.filename is None:
            return "(library code only)"
        return describe_place(self.filename, self.lineno, self.function)

    @property
    def code(self) -> str:
        return linecache.getline(self.filename, self.lineno).strip() if self.filename else ""


def is_library(filename: str) -> bool:
    return filename.startswith((_STDLIB, "<frozen")) or any(part in filename for part in LIBRARY_PATHS + _INSTRUMENTS)


def application_frame(frame: types.FrameType | None) -> types.FrameType | None:
    """The innermost frame of `frame`'s stack that is not library code."""
    while frame is not None and is_library(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


class LoopWatch:
    """Loop lag samples and stall samples, between ``start()`` and ``stop()`` (both on the loop)."""

    def __init__(
        self, *, interval: float = 0.01, stall: float = 0.03, tasks: Mapping[asyncio.Task, str] | None = None
    ) -> None:
        self.interval = interval
        self.stall = stall
        self.tasks: Mapping[asyncio.Task, str] = tasks if tasks is not None else {}
        self.lags: list[float] = []
        self.stalls: list[StallSample] = []
        self._last_tick = time.monotonic()
        self._running = threading.Event()
        self._ticker: asyncio.Task | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop, self._loop_thread = loop, threading.get_ident()
        self._origin = self._last_tick = time.monotonic()
        self._running.set()
        self._ticker = asyncio.create_task(self._tick(), name="loop watch")
        self._thread = threading.Thread(target=self._watch, name="loop watchdog", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._running.clear()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, loop.time() - before - self.interval))
            self._last_tick = time.monotonic()

    def _watch(self) -> None:
        while self._running.is_set():
            time.sleep(self.interval)
            now = time.monotonic()
            if now - self._last_tick > self.interval + self.stall:
                self._sample(now)

    def _sample(self, now: float) -> None:
        frame = application_frame(sys._current_frames().get(self._loop_thread))
        try:
            task = asyncio.current_task(self._loop)
        except RuntimeError:
            task = None
        endpoint = self.tasks.get(task) if task is not None else None
        if frame is None:
            self.stalls.append(StallSample(now - self._origin, endpoint, None, 0, ""))
        else:
            code = frame.f_code
            self.stalls.append(
                StallSample(now - self._origin, endpoint, code.co_filename, frame.f_lineno, code.co_name)
            )

    # ------------------------------------------------------------ results

    def lag_percentile(self, percent: float) -> float:
        """Nearest-rank percentile of the lag samples, in seconds (0 without samples)."""
        ordered = sorted(self.lags)
        return ordered[math.ceil(percent / 100 * len(ordered)) - 1] if ordered else 0.0

    @property
    def blocked_in_application(self) -> float:
        """Roughly how long the loop was stuck in application code (not library code): samples x interval."""
        return sum(1 for sample in self.stalls if sample.filename is not None) * self.interval

    def blocked_by_endpoint(self) -> Counter[str | None]:
        return Counter(sample.endpoint for sample in self.stalls)

    def places(self) -> list[tuple[StallSample, int]]:
        """One sample per place the loop was stuck in, with how many samples found it there, most first."""
        counts = Counter((s.endpoint, s.filename, s.lineno, s.function) for s in self.stalls)
        first: dict[tuple[str | None, str | None, int, str], StallSample] = {}
        for sample in self.stalls:
            first.setdefault((sample.endpoint, sample.filename, sample.lineno, sample.function), sample)
        return [(first[key], count) for key, count in counts.most_common()]
