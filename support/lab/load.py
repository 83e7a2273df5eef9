"""Putting load on an app over real HTTP, in the two ways the course compares.

A closed loop is a fixed set of clients, each waiting for its answer before
asking again: when the server slows down, so does the load, which hides how
bad things are. An open loop sends requests on a timetable whatever the
latency, the way independent users arrive: when the server slows down,
requests pile up, and that pile-up is what exhausts a connection pool.

Each request is recorded (when it started, how long it took, its status or
the class of the error that ended it) so that notebooks can summarise and plot
a run, and every request is bounded by a timeout so a hung server yields
timeout records instead of a hung cell.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
from tqdm.auto import tqdm

#: httpx applies `timeout` to each phase of a request (connecting, writing,
#: each read), so a server trickling out a body could keep one alive without
#: end; this multiple of `timeout` is the hard limit on a request as a whole.
_WHOLE_REQUEST_TIMEOUT_FACTOR = 3
#: Runs shorter than this get no progress bar: it would only flicker.
_PROGRESS_AFTER_SECONDS = 2.0


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

    def summary(self) -> dict[str, Any]:
        """Counts, latency percentiles (seconds, nearest rank) and rates.

        Rates are per second of wall time: "rate" counts every finished
        request, "ok_rate" only the 2xx ones (the useful throughput).
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
    left open. A progress bar appears if the run lasts longer than 2 s.
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
        http = client if client is not None else await resources.enter_async_context(_load_client(clients, timeout))
        progress = resources.enter_context(_Progress(clients * requests_per_client, "closed loop", None))
        started = time.perf_counter()

        async def one_client() -> None:
            for _ in range(requests_per_client):
                records.append(await _timed_get(http, url, timeout, started))
                progress.advance()

        async with asyncio.TaskGroup() as group:
            for _ in range(clients):
                group.create_task(one_client())
        wall_time = time.perf_counter() - started
    return LoadResult(mode, url, _by_start(records), wall_time)


async def open_loop(url: str, *, rate: float, duration: float, timeout: float = 10.0) -> LoadResult:
    """GETs starting every 1/`rate` seconds for `duration` seconds, however slow the answers.

    Request i starts at i/`rate`, for every such time before `duration`:
    `rate` x `duration` requests, rounded up, at least one. The client has no
    connection limit: a limit would make new requests wait for earlier ones,
    which would turn this back into a closed loop. A progress bar shows from
    the start when `duration` is over 2 s, and otherwise once the run has
    lasted 2 s.
    """
    _check_url(url)
    _check_positive("rate", rate, "requests started per second, e.g. rate=50")
    _check_positive("duration", duration, "seconds during which requests start, e.g. duration=5")
    _check_positive("timeout", timeout, "seconds each request may take, e.g. timeout=10")
    count = max(1, math.ceil(rate * duration - 1e-9))  # the epsilon absorbs float error in rate*duration
    mode = f"open loop: {rate:g} requests/s for {duration:g} s"
    records: list[RequestRecord] = []
    async with _load_client(None, timeout) as client:
        with _Progress(count, "open loop", duration) as progress:
            started = time.perf_counter()

            async def one_request() -> None:
                records.append(await _timed_get(client, url, timeout, started))
                progress.advance()

            async with asyncio.TaskGroup() as group:
                for i in range(count):
                    delay = started + i / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    group.create_task(one_request())
            wall_time = time.perf_counter() - started
    return LoadResult(mode, url, _by_start(records), wall_time)


async def _timed_get(client: httpx.AsyncClient, url: str, timeout: float, run_started: float) -> RequestRecord:
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    try:
        async with asyncio.timeout(timeout * _WHOLE_REQUEST_TIMEOUT_FACTOR):
            response = await client.get(url, timeout=timeout)
        status = response.status_code
    except (httpx.HTTPError, TimeoutError) as exc:
        error = type(exc).__name__
    return RequestRecord(started - run_started, time.perf_counter() - started, status, error)


def _load_client(connections: int | None, timeout: float) -> httpx.AsyncClient:
    """A client for load on a local app.

    trust_env=False because proxy settings from the environment
    (HTTP_PROXY and friends) must not reroute requests meant for 127.0.0.1.
    """
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False)


class _Progress:
    """A tqdm bar for runs long enough to deserve one.

    Any run still going after 2 s gets a bar, counting the requests already
    done: how long a run takes depends on the server. An open loop that will
    run for more than 2 s anyway (expected_seconds) shows its bar from the
    start.
    """

    def __init__(self, total: int, description: str, expected_seconds: float | None) -> None:
        self._total = total
        self._description = description
        self._started = time.perf_counter()
        self._done = 0
        self._bar: tqdm | None = None
        if expected_seconds is not None and expected_seconds > _PROGRESS_AFTER_SECONDS:
            self._show()

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def advance(self) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.update()
        elif time.perf_counter() - self._started > _PROGRESS_AFTER_SECONDS:
            self._show()

    def _show(self) -> None:
        self._bar = tqdm(total=self._total, initial=self._done, desc=self._description, leave=False)


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
