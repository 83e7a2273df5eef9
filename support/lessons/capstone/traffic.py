"""A mix of endpoints under Poisson arrivals, in one open loop.

``support.lab.load.open_loop`` drives one URL. Production traffic is a mix,
and the mix matters here: one endpoint's defect shows up as another
endpoint's latency. Each stream of the mix gets its own Poisson timetable
(``support.lab.load.arrival_times``, seeded, so a run can be repeated); the
timetables are merged and sent by one client, and each stream's requests
come back as a ``LoadResult`` of its own, with the same records and
summary as ``open_loop`` gives.
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import sys
import time
from dataclasses import dataclass

import httpx

from ...lab.load import LoadResult, RequestRecord, arrival_times, timed_get
from ...lab.local_http import local_client


def _skip_missing_sniffio() -> None:
    """Make httpcore's per-request ``import sniffio`` fail at once when sniffio is not installed.

    httpcore asks ``import sniffio`` several times per request and falls back to
    asyncio when the import fails. anyio 4.16 no longer installs sniffio, and a
    failed import is not remembered: each one searches sys.path again, a few
    file-system calls every time, on the event loop. With ``None`` in
    sys.modules the import fails immediately, with the same outcome.
    """
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


_skip_missing_sniffio()


@dataclass(frozen=True)
class Stream:
    """Requests for one URL path (with its query string), arriving at `rate` per second on average.

    Seen from an arbitrary moment, the first arrival of a Poisson stream is
    itself an exponential wait away, so each stream starts at a draw of its
    own (not every stream at 0, which would be a burst no real traffic has),
    unless `start` pins its first request to a moment of the run.
    """

    path: str
    rate: float
    seed: int
    start: float | None = None

    def schedule(self, duration: float) -> list[float]:
        first = self.start if self.start is not None else random.Random(self.seed + 1000).expovariate(self.rate)
        return [
            first + due for due in arrival_times(self.rate, duration, "poisson", self.seed) if first + due < duration
        ]


async def mixed_open_loop(
    base_url: str, streams: tuple[Stream, ...], *, duration: float, timeout: float = 5.0
) -> dict[str, LoadResult]:
    """Send every stream's requests on its timetable, all at once; a LoadResult per stream path."""
    # In time order; requests due at the same moment in the order of `streams`.
    timetable = sorted(
        ((due, index, stream.path) for index, stream in enumerate(streams) for due in stream.schedule(duration)),
    )
    records: dict[str, list[RequestRecord]] = {stream.path: [] for stream in streams}
    # No keep-alive: httpcore looks at every idle connection each time it places a request,
    # which costs more than opening a new loopback connection.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with local_client(base_url, timeout=timeout, limits=limits) as client:
        started = time.perf_counter()

        async def one(due: float, path: str) -> None:
            records[path].append(await timed_get(client, path, timeout, started, due))

        async with asyncio.TaskGroup() as group:
            for due, _, path in timetable:
                delay = started + due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                group.create_task(one(due, path))
        wall_time = time.perf_counter() - started
    rates = {stream.path: stream.rate for stream in streams}
    return {
        path: LoadResult(
            f"open loop (poisson, in a mix): {rates[path]:g} requests/s for {duration:g} s",
            base_url + path,
            sorted(found, key=lambda record: record.started_at),
            wall_time,
        )
        for path, found in records.items()
    }


async def warm_up(base_url: str, paths: tuple[str, ...], timeout: float = 5.0) -> None:
    """One request to each path, all at once, before a run.

    The first request through a fresh app and engine pays for lazy imports,
    statement compilation and new connections; a service that has been up
    for a while has paid already.
    """
    async with local_client(base_url, timeout=timeout) as client:
        await asyncio.gather(*(client.get(path) for path in paths))
