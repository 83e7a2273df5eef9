"""Putting load on an app over real HTTP, in the two ways the course compares.

A closed loop is a fixed set of clients, each waiting for its answer before
asking again: when the server slows down, so does the load, which hides how
bad things are. An open loop sends requests on a timetable whatever the
latency, the way independent users arrive: when the server slows down,
requests pile up, and that pile-up is what exhausts a connection pool.

Real users arrive at random: ``open_loop(..., arrivals="poisson")`` draws
exponential gaps between starts (a Poisson process), so short bursts and
queueing appear below saturation as they do in production;
``arrivals="even"`` keeps a strict timetable where a cell needs one.

Each request is recorded (when due and started, how long it took, its status
or the class of the error that ended it) for notebooks to summarise and plot,
and bounded by a timeout so a hung server yields records, not a hung cell.

The app under test and the load share the kernel's event loop. When the loop
is too busy to start requests on time, the generator, not the app, shapes the
result: every open-loop run measures how late its requests started against
their schedule and says so (``LoadResult.generator_fell_behind``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from .local_http import local_client
from .progress import Progress

#: httpx applies `timeout` to each phase of a request (connecting, writing,
#: each read), so a server trickling out a body could keep one alive without
#: end; this multiple of `timeout` is the hard limit on a request as a whole.
_WHOLE_REQUEST_TIMEOUT_FACTOR = 3
#: An open loop whose requests start later than this (p95) behind their
#: schedule was limited by the generator: a timer wakes within a millisecond
#: or two on an idle loop, so tens of milliseconds mean the loop was busy.
GENERATOR_LAG_LIMIT = 0.05

Arrivals = Literal["even", "poisson"]


@dataclass(frozen=True)
class RequestRecord:
    """What happened to one request.

    `status` is None when no response came back; `error` then names the
    exception class that ended the request ("ReadTimeout", "ConnectError",
    "TimeoutError" for the whole-request limit).
    """

    started_at: float  # seconds since the start of the run
    latency: float  # seconds until the response or the error
    status: int | None
    error: str | None
    start_lag: float = 0.0  # open loop: seconds the request started behind its schedule

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(repr=False)
class LoadResult:
    """The records of one run, in order of start time, and how long it took.

    Its repr is a few-line summary rather than the dataclass default, because
    a run is mostly looked at as the last line of a notebook cell and a dump
    of thousands of records would bury what matters.
    """

    mode: str
    url: str
    records: list[RequestRecord]
    wall_time: float

    def statuses(self) -> list[int | None]:
        return [record.status for record in self.records]

    def latencies(self) -> list[float]:
        return [record.latency for record in self.records]

    def start_lags(self) -> list[float]:
        return [record.start_lag for record in self.records]

    @property
    def generator_fell_behind(self) -> bool:
        """True when requests started so late (p95 over GENERATOR_LAG_LIMIT) that the load was the limit."""
        p95 = _latency_percentiles(self.start_lags())["p95"]
        return p95 is not None and p95 > GENERATOR_LAG_LIMIT

    def summary(self) -> dict[str, Any]:
        """Counts, latency percentiles (seconds, nearest rank) and rates.

        Rates are per second of wall time: "rate" counts every finished
        request, "ok_rate" only the 2xx ones (the useful throughput).
        "start_lag" is how late requests started against an open loop's
        schedule (zeros for a closed loop, which has none).
        """
        ok = [record for record in self.records if record.ok]
        return {
            "mode": self.mode,
            "requests": len(self.records),
            "ok": len(ok),
            "by_status": dict(sorted(Counter(r.status for r in self.records if r.status is not None).items())),
            "by_error": dict(Counter(r.error for r in self.records if r.error is not None).most_common()),
            "latency": _latency_percentiles(self.latencies()),
            "ok_latency": _latency_percentiles([record.latency for record in ok]),
            "wall_time": self.wall_time,
            "rate": _per_second(len(self.records), self.wall_time),
            "ok_rate": _per_second(len(ok), self.wall_time),
            "start_lag": _latency_percentiles(self.start_lags()),
            "generator_fell_behind": self.generator_fell_behind,
        }

    def __str__(self) -> str:
        s = self.summary()
        statuses = ", ".join(f"{status}: {count}" for status, count in s["by_status"].items()) or "none"
        errors = ", ".join(f"{name}: {count}" for name, count in s["by_error"].items()) or "none"
        return "\n".join(
            [
                f"{s['mode']} -> {self.url}",
                f"  {s['requests']} requests in {s['wall_time']:.2f} s: {s['rate']:.1f}/s, {s['ok_rate']:.1f} ok/s",
                f"  ok {s['ok']} | statuses {statuses} | errors {errors}",
                f"  latency p50/p95/max {_format_percentiles(s['latency'])}"
                f" (ok only {_format_percentiles(s['ok_latency'])})",
            ]
            + (
                [
                    f"  WARNING: the load generator fell behind its schedule (start lag p50/p95/max "
                    f"{_format_percentiles(s['start_lag'])}): the kernel's event loop, not the app, "
                    "limited this run; ask for a lower rate or make the endpoint cheaper."
                ]
                if s["generator_fell_behind"]
                else []
            )
        )

    __repr__ = __str__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


async def closed_loop(
    url: str,
    *,
    clients: int,
    requests_per_client: int,
    timeout: float = 10.0,
    client: httpx.AsyncClient | None = None,
) -> LoadResult:
    """`clients` concurrent clients, each sending `requests_per_client` GETs in turn.

    Without `client`, one is made with exactly `clients` connections, so the
    concurrency is what was asked for. A `client` you pass keeps its own
    connection limits (a smaller pool shows up as PoolTimeout errors) and is
    left open. A progress bar appears if the run lasts longer than 1 s.
    """
    _check_url(url)
    _check_whole_number("clients", clients, "how many clients send requests at the same time, e.g. clients=10")
    _check_whole_number(
        "requests_per_client",
        requests_per_client,
        "how many requests each client sends one after another, e.g. requests_per_client=20",
    )
    _check_positive("timeout", timeout, "seconds each request may take, e.g. timeout=10")
    mode = f"closed loop: {clients} clients x {requests_per_client} requests"
    records: list[RequestRecord] = []
    async with contextlib.AsyncExitStack() as resources:
        if client is None:
            client = await resources.enter_async_context(_load_client(clients, timeout, url))
        http = client
        progress = resources.enter_context(Progress(clients * requests_per_client, "closed loop", None))
        started = time.perf_counter()

        async def one_client() -> None:
            for _ in range(requests_per_client):
                records.append(await timed_get(http, url, timeout, started))
                progress.advance()

        async with asyncio.TaskGroup() as group:
            for _ in range(clients):
                group.create_task(one_client())
        wall_time = time.perf_counter() - started
    return LoadResult(mode, url, _by_start(records), wall_time)


def arrival_times(rate: float, duration: float, arrivals: Arrivals = "even", seed: int | None = None) -> list[float]:
    """When each request of an open loop is due, in seconds from the start.

    "even": i/`rate` for every such time before `duration` (`rate` x
    `duration` requests, rounded up, at least one). "poisson": exponential
    gaps with mean 1/`rate`, the first at 0, until `duration`: the count
    varies from run to run around `rate` x `duration`. `seed` makes a
    Poisson timetable repeatable.
    """
    _check_positive("rate", rate, "requests started per second, e.g. rate=50")
    _check_positive("duration", duration, "seconds during which requests start, e.g. duration=5")
    if arrivals == "even":
        count = max(1, math.ceil(rate * duration - 1e-9))  # the epsilon absorbs float error in rate*duration
        return [i / rate for i in range(count)]
    if arrivals == "poisson":
        draw = random.Random(seed)
        times, now = [], 0.0
        while now < duration:
            times.append(now)
            now += draw.expovariate(rate)
        return times
    raise ValueError(
        f'arrivals must be "even" (a strict timetable) or "poisson" (random, as users arrive), got {arrivals!r}'
    )


async def open_loop(
    url: str,
    *,
    rate: float,
    duration: float,
    timeout: float = 10.0,
    arrivals: Arrivals = "even",
    seed: int | None = None,
) -> LoadResult:
    """GETs started on a timetable for `duration` seconds, however slow the answers.

    The timetable comes from `arrival_times()`: evenly spaced, or Poisson
    arrivals (`arrivals="poisson"`, exponential gaps at mean `rate`). Each
    request comes from a client of its own, like an independent user: no
    limit makes a new request wait for earlier ones (which would turn this
    back into a closed loop), and no shared connection pool costs more the
    more requests are in flight (httpx's pool scans all its connections at
    every request and response, so hundreds in flight made the generator,
    not the app, the slow part). Each record keeps how late its request
    started (`start_lag`); the result warns when the generator fell behind.
    A progress bar shows once the run has lasted 1 s (see `Progress`).
    """
    _check_url(url)
    _check_positive("timeout", timeout, "seconds each request may take, e.g. timeout=10")
    schedule = arrival_times(rate, duration, arrivals, seed)
    mode = f"open loop ({arrivals}): {rate:g} requests/s for {duration:g} s"
    records: list[RequestRecord] = []
    with Progress(len(schedule), "open loop", duration) as progress:
        started = time.perf_counter()

        async def one_request(due: float) -> None:
            async with _load_client(1, timeout, url) as client:
                records.append(await timed_get(client, url, timeout, started, due))
            progress.advance()

        async with asyncio.TaskGroup() as group:
            for due in schedule:
                delay = started + due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                group.create_task(one_request(due))
        wall_time = time.perf_counter() - started
    return LoadResult(mode, url, _by_start(records), wall_time)


async def timed_get(
    client: httpx.AsyncClient, url: str, timeout: float, run_started: float, due: float | None = None
) -> RequestRecord:
    """One GET as a record: never raises for a failed request, never outlives 3 x `timeout`."""
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    try:
        async with asyncio.timeout(timeout * _WHOLE_REQUEST_TIMEOUT_FACTOR):
            response = await client.get(url, timeout=timeout)
        status = response.status_code
    except (httpx.HTTPError, TimeoutError) as exc:
        error = type(exc).__name__
    lag = 0.0 if due is None else max(0.0, started - run_started - due)
    return RequestRecord(started - run_started, time.perf_counter() - started, status, error, lag)


def _load_client(connections: int, timeout: float, url: str) -> httpx.AsyncClient:
    """A local client with exactly `connections` connections (open_loop makes one per request: see local_http)."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return local_client(url, timeout=timeout, limits=limits)


def _by_start(records: list[RequestRecord]) -> list[RequestRecord]:
    return sorted(records, key=lambda record: record.started_at)


def _latency_percentiles(latencies: list[float]) -> dict[str, float | None]:
    """p50, p95 and max by nearest rank, so each is a latency actually observed."""
    ordered = sorted(latencies)

    def nearest_rank(percent: float) -> float | None:
        return ordered[math.ceil(percent / 100 * len(ordered)) - 1] if ordered else None

    return {"p50": nearest_rank(50), "p95": nearest_rank(95), "max": ordered[-1] if ordered else None}


def _per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def _format_percentiles(percentiles: dict[str, float | None]) -> str:
    return " / ".join(_format_seconds(percentiles[key]) for key in ("p50", "p95", "max"))


def _format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def _check_url(url: str) -> None:
    try:
        scheme = httpx.URL(url).scheme
    except (httpx.InvalidURL, TypeError):
        scheme = ""
    if scheme not in ("http", "https"):
        raise ValueError(f"url must be an absolute http:// address such as served.url + '/items', got {url!r}")


def _check_whole_number(name: str, value: object, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1 ({meaning}), got {value!r}")


def _check_positive(name: str, value: object, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
        raise ValueError(f"{name} must be a number greater than 0 ({meaning}), got {value!r}")
