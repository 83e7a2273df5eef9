"""support.lab.load against real apps served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

from support.lab.app_server import ServedApp, serve
from support.lab.load import (
    GENERATOR_LAG_LIMIT,
    LoadResult,
    RequestRecord,
    arrival_times,
    closed_loop,
    open_loop,
)
from tests.async_bodies import run

pytestmark = pytest.mark.timeout(60)


class InFlight:
    """Counts the requests an endpoint is handling at once, and the peak."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    async def hold(self, seconds: float) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.now -= 1


def load_test_app(in_flight: InFlight) -> FastAPI:
    app = FastAPI(title="load target")
    calls = itertools.count(1)

    @app.get("/slow")
    async def slow(seconds: float = 0.2) -> dict[str, bool]:
        await in_flight.hold(seconds)
        return {"ok": True}

    @app.get("/every-third-fails")
    async def every_third_fails() -> Response:
        return Response(status_code=503 if next(calls) % 3 == 0 else 200)

    @app.get("/hang")
    async def hang() -> None:
        await asyncio.Event().wait()

    @app.get("/trickle")
    async def trickle() -> StreamingResponse:
        async def a_byte_every_tenth_of_a_second() -> AsyncIterator[bytes]:
            while True:
                yield b"."
                await asyncio.sleep(0.1)

        return StreamingResponse(a_byte_every_tenth_of_a_second())

    return app


async def serve_load_target() -> tuple[ServedApp, InFlight]:
    in_flight = InFlight()
    return await serve(load_test_app(in_flight)), in_flight


def test_closed_loop_sends_every_request_with_all_clients_at_once(capfd: pytest.CaptureFixture[str]) -> None:
    async def body() -> tuple[LoadResult, InFlight]:
        served, in_flight = await serve_load_target()
        return await closed_loop(f"{served.url}/slow", clients=5, requests_per_client=3), in_flight

    result, in_flight = run(body())
    assert in_flight.peak == 5
    assert len(result.records) == 15
    assert result.statuses() == [200] * 15
    summary = result.summary()
    assert (summary["requests"], summary["ok"], summary["by_status"], summary["by_error"]) == (15, 15, {200: 15}, {})
    assert capfd.readouterr().err == ""  # a short run shows no progress bar


def test_closed_loop_counts_statuses_and_error_classes() -> None:
    async def body() -> tuple[LoadResult, LoadResult]:
        served, _ = await serve_load_target()
        mixed = await closed_loop(f"{served.url}/every-third-fails", clients=3, requests_per_client=4)
        await served.stop()
        refused = await closed_loop(served.url, clients=2, requests_per_client=2)
        return mixed, refused

    mixed, refused = run(body())
    assert mixed.summary()["by_status"] == {200: 8, 503: 4}
    assert mixed.summary()["ok"] == 8
    assert [record.ok for record in mixed.records].count(False) == 4
    assert refused.summary()["by_error"] == {"ConnectError": 4}
    assert refused.statuses() == [None] * 4


def test_closed_loop_uses_a_given_client_and_leaves_it_open() -> None:
    async def body() -> None:
        served, _ = await serve_load_target()
        async with httpx.AsyncClient(trust_env=False) as client:
            result = await closed_loop(f"{served.url}/slow?seconds=0", clients=2, requests_per_client=2, client=client)
            assert result.summary()["ok"] == 4
            assert not client.is_closed
            assert (await client.get(f"{served.url}/slow?seconds=0")).status_code == 200

    run(body())


@pytest.mark.stack  # serves an app for seconds: outside the fast set
def test_open_loop_arrivals_keep_their_schedule_whatever_the_latency() -> None:
    # 150 requests/s against answers taking 2 s: well over httpx's default
    # limit of 100 connections must be in flight at once.
    rate, duration = 150, 1.0

    async def body() -> tuple[LoadResult, InFlight]:
        served, in_flight = await serve_load_target()
        return await open_loop(f"{served.url}/slow?seconds=2", rate=rate, duration=duration), in_flight

    result, in_flight = run(body())
    assert len(result.records) == 150
    assert result.summary()["ok"] == 150
    assert in_flight.peak > 100
    starts = [record.started_at for record in result.records]
    assert starts == sorted(starts)
    assert starts[-1] > 0.8 * duration, "spread over the duration, not bunched at the start"
    # Each request started on its timetable slot i/rate, or late by exactly the lag it reports
    # (a busy machine makes the lag larger, never the timetable different).
    dues = sorted(record.started_at - record.start_lag for record in result.records)
    assert all(abs(due - i / rate) < 0.01 for i, due in enumerate(dues))


def test_open_loop_sends_rate_times_duration_requests() -> None:
    async def body() -> list[int]:
        served, _ = await serve_load_target()
        url = f"{served.url}/slow?seconds=0"
        # 50 * 0.14 is 7.000000000000001 in floating point: still 7 requests.
        runs = [await open_loop(url, rate=r, duration=d) for r, d in ((50, 0.14), (0.5, 1.0), (4, 0.5))]
        return [len(result.records) for result in runs]

    assert run(body()) == [7, 1, 2]


def test_open_loop_requests_share_no_connection() -> None:
    # Independent users: a connection of its own per request, so no pool is shared
    # (httpx's pool costs more per request the more requests it holds).
    app = FastAPI(title="client ports")
    ports: list[int] = []

    @app.get("/port")
    async def port(request: Request) -> dict[str, bool]:
        assert request.client is not None
        ports.append(request.client.port)
        return {"ok": True}

    async def body() -> LoadResult:
        served = await serve(app)
        try:
            return await open_loop(f"{served.url}/port", rate=200, duration=0.1)
        finally:
            await served.stop()

    result = run(body())
    assert result.summary()["ok"] == 20
    assert len(set(ports)) == 20, "every request came over a connection of its own"


@pytest.mark.stack  # serves an app for seconds: outside the fast set
def test_a_hanging_endpoint_yields_timeouts_not_a_hang() -> None:
    async def body() -> tuple[LoadResult, LoadResult]:
        served, _ = await serve_load_target()
        closed = await asyncio.wait_for(
            closed_loop(f"{served.url}/hang", clients=3, requests_per_client=2, timeout=0.3), timeout=10
        )
        opened = await asyncio.wait_for(open_loop(f"{served.url}/hang", rate=20, duration=0.5, timeout=0.3), timeout=10)
        await served.stop(timeout=0.5)  # its requests hang on after the clients gave up
        return closed, opened

    closed, opened = run(body())
    assert closed.summary()["by_error"] == {"ReadTimeout": 6}
    assert opened.summary()["by_error"] == {"ReadTimeout": 10}
    assert closed.summary()["ok"] == opened.summary()["ok"] == 0
    assert all(record.status is None for record in closed.records + opened.records)


@pytest.mark.stack  # serves an app for seconds: outside the fast set
def test_a_response_that_never_ends_is_cut_off_by_the_whole_request_limit() -> None:
    # Each read gets a byte well within `timeout`, so httpx never times out;
    # the limit on the request as a whole (3 x timeout) ends it.
    async def body() -> LoadResult:
        served, _ = await serve_load_target()
        return await asyncio.wait_for(
            closed_loop(f"{served.url}/trickle", clients=2, requests_per_client=1, timeout=0.3), timeout=10
        )

    result = run(body())
    assert result.summary()["by_error"] == {"TimeoutError": 2}
    assert all(record.latency > 0.8 for record in result.records)  # not httpx's 0.3 s


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: closed_loop("http://127.0.0.1:1/", clients=0, requests_per_client=1), "clients must be"),
        (lambda: closed_loop("http://127.0.0.1:1/", clients=2.5, requests_per_client=1), "clients must be"),
        (lambda: closed_loop("http://127.0.0.1:1/", clients=1, requests_per_client=0), "requests_per_client must be"),
        (lambda: closed_loop("http://127.0.0.1:1/", clients=1, requests_per_client=1, timeout=0), "timeout must be"),
        (lambda: open_loop("http://127.0.0.1:1/", rate=0, duration=1), "rate must be"),
        (lambda: open_loop("http://127.0.0.1:1/", rate=float("nan"), duration=1), "rate must be"),
        (lambda: open_loop("http://127.0.0.1:1/", rate=10, duration=-1), "duration must be"),
        (lambda: open_loop("127.0.0.1:8000/items", rate=10, duration=1), "url must be"),
    ],
)
def test_bad_arguments_raise_a_value_error_that_says_what_to_pass(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        asyncio.run(call())
    assert "e.g." in str(raised.value) or "such as" in str(raised.value)


def test_summary_counts_and_nearest_rank_percentiles() -> None:
    records = [RequestRecord(started_at=i * 0.1, latency=(i + 1) / 100, status=200, error=None) for i in range(18)]
    records += [RequestRecord(1.8, 0.5, 503, None), RequestRecord(1.9, 1.0, None, "ReadTimeout")]
    result = LoadResult("hand-made", "http://127.0.0.1:1/", records, wall_time=2.0)

    summary = result.summary()
    assert summary["requests"] == 20 and summary["ok"] == 18
    assert summary["by_status"] == {200: 18, 503: 1}
    assert summary["by_error"] == {"ReadTimeout": 1}
    assert summary["latency"] == {"p50": 0.10, "p95": 0.5, "max": 1.0}
    assert summary["ok_latency"] == {"p50": 0.09, "p95": 0.18, "max": 0.18}
    assert (summary["rate"], summary["ok_rate"]) == (10.0, 9.0)
    assert result.latencies()[-1] == 1.0 and result.statuses()[-2:] == [503, None]

    text = str(result)
    assert repr(result) == text
    assert len(text.splitlines()) <= 5
    assert "503: 1" in text and "ReadTimeout: 1" in text and "RequestRecord" not in text


@pytest.mark.stack  # serves an app for seconds: outside the fast set
def test_a_long_open_loop_shows_a_progress_bar(capfd: pytest.CaptureFixture[str]) -> None:
    async def body() -> None:
        served, _ = await serve_load_target()
        await open_loop(f"{served.url}/slow?seconds=0", rate=4, duration=2.5)

    run(body())
    assert "open loop" in capfd.readouterr().err


def test_poisson_arrivals_keep_the_mean_rate_with_exponential_gaps() -> None:
    rate, duration = 100.0, 200.0
    times = arrival_times(rate, duration, "poisson", seed=7)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    mean_gap = sum(gaps) / len(gaps)
    assert abs(len(times) / duration - rate) / rate < 0.10, "mean rate within 10 %"
    # exponential gaps: standard deviation equals the mean, and 1 - 1/e of the gaps are shorter than the mean
    spread = (sum((g - mean_gap) ** 2 for g in gaps) / len(gaps)) ** 0.5
    assert abs(spread / mean_gap - 1) < 0.05
    assert abs(sum(g < mean_gap for g in gaps) / len(gaps) - (1 - math.exp(-1))) < 0.02
    assert times[0] == 0 and times == sorted(times) and times[-1] < duration


def test_poisson_timetables_repeat_with_a_seed_and_differ_without() -> None:
    assert arrival_times(50, 2, "poisson", seed=1) == arrival_times(50, 2, "poisson", seed=1)
    assert arrival_times(50, 2, "poisson", seed=1) != arrival_times(50, 2, "poisson", seed=2)


def test_even_arrivals_are_a_strict_timetable() -> None:
    assert arrival_times(4, 1) == [0, 0.25, 0.5, 0.75]
    assert arrival_times(4, 0.1) == [0], "at least one request"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 10, "duration": 1, "arrivals": "random"}, "poisson"),
        ({"rate": 0, "duration": 1}, "rate must be"),
        ({"rate": 10, "duration": -1}, "duration must be"),
    ],
)
def test_bad_timetables_are_refused_with_a_message(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        arrival_times(**kwargs)


@pytest.mark.stack  # serves an app for seconds: outside the fast set
def test_open_loop_says_when_the_generator_not_the_app_was_the_limit() -> None:
    app = FastAPI(title="loop blocker")

    @app.get("/block")
    async def block() -> dict[str, bool]:
        time.sleep(0.15)  # blocks the event loop the load generator shares
        return {"ok": True}

    @app.get("/cheap")
    async def cheap() -> dict[str, bool]:
        return {"ok": True}

    async def body() -> tuple[LoadResult, LoadResult]:
        served = await serve(app)
        try:
            blocked = await open_loop(f"{served.url}/block", rate=40, duration=1, arrivals="poisson", seed=3)
            easy = await open_loop(f"{served.url}/cheap", rate=20, duration=1, arrivals="poisson", seed=3)
        finally:
            await served.stop()
        return blocked, easy

    blocked, easy = run(body())
    assert blocked.generator_fell_behind and "fell behind" in str(blocked)
    assert blocked.summary()["start_lag"]["p95"] > GENERATOR_LAG_LIMIT
    # A cheap endpoint lets the generator keep (much closer to) its timetable; on a busy machine it
    # may still lag a little, and then it must say so too.
    assert easy.summary()["start_lag"]["p95"] < blocked.summary()["start_lag"]["p95"]
    assert ("fell behind" in str(easy)) == easy.generator_fell_behind
    assert "open loop (poisson)" in str(easy)
