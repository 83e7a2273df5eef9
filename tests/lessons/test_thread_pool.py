"""support.lessons.thread_pool: the helpers notebook 08 uses to watch both pools."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import anyio.to_thread
import matplotlib
import pytest
from sqlalchemy import create_engine

from support.lab.pool_recorder import PoolRecorder
from support.lessons.thread_pool import (
    ThreadSampler,
    longest_stall,
    plot_threads_and_connections,
    settle,
    snapshot_when_stalled,
    sync_database_url,
    thread_limiter,
)

matplotlib.use("Agg")


def offline_recorder() -> PoolRecorder:
    """A recorder on an engine that never connects (nothing listens on port 9)."""
    return PoolRecorder(create_engine("postgresql+psycopg://u:p@127.0.0.1:9/nowhere"))


def test_sync_database_url_names_psycopg_and_keeps_the_rest():
    url = sync_database_url("postgresql+asyncpg://course:s%40cret@127.0.0.1:5432/course")
    assert url == "postgresql+psycopg://course:s%40cret@127.0.0.1:5432/course"
    assert sync_database_url("postgresql://a@h/db").startswith("postgresql+psycopg://")


def test_sync_database_url_rejects_other_databases():
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        sync_database_url("mysql+pymysql://a@h/db")


def test_thread_sampler_counts_busy_threads_on_the_loops_limiter():
    async def scenario():
        async with ThreadSampler(interval=0.002) as threads:
            await asyncio.gather(*(anyio.to_thread.run_sync(time.sleep, 0.2) for _ in range(3)))
        return threads, thread_limiter().total_tokens

    threads, total = asyncio.run(scenario())
    assert threads.total_tokens == total == 40
    assert threads.peak_busy == 3
    times, busy, waiting = threads.timeline()
    assert times == sorted(times) and busy[-1] == 0 and max(waiting) == 0
    assert "peak busy=3" in repr(threads)


def test_thread_sampler_sees_tasks_waiting_for_a_token():
    async def scenario():
        limiter = thread_limiter()
        limiter.total_tokens = 2
        try:
            async with ThreadSampler(interval=0.002) as threads:
                await asyncio.gather(*(anyio.to_thread.run_sync(time.sleep, 0.15) for _ in range(4)))
        finally:
            limiter.total_tokens = 40
        return threads

    threads = asyncio.run(scenario())
    assert threads.total_tokens == 2 and threads.peak_busy == 2 and threads.peak_waiting == 2


def test_settle_waits_for_threads_and_connections():
    pool = SimpleNamespace(checked_out=1)
    engine = SimpleNamespace(pool=SimpleNamespace(checkedout=lambda: pool.checked_out))

    async def scenario():
        async def give_back_later():
            await asyncio.sleep(0.1)
            pool.checked_out = 0

        giving_back = asyncio.create_task(give_back_later())
        thread = asyncio.create_task(anyio.to_thread.run_sync(time.sleep, 0.2))
        await asyncio.sleep(0.01)
        settled = await settle(engine, timeout=3)
        await asyncio.gather(giving_back, thread)
        return settled

    started = time.perf_counter()
    assert asyncio.run(scenario()) == (0, 0)
    assert time.perf_counter() - started >= 0.2


def test_settle_gives_up_after_its_timeout():
    engine = SimpleNamespace(pool=SimpleNamespace(checkedout=lambda: 3))
    assert asyncio.run(settle(engine, timeout=0.1)) == (0, 3)


def test_longest_stall_measures_time_at_a_level_without_events():
    recorder = offline_recorder()
    recorder.stop()
    recorder.samples[:] = [(0.0, 0), (0.1, 1), (0.2, 2), (1.2, 1), (1.3, 2), (1.5, 0)]
    assert longest_stall(recorder, 2) == pytest.approx(1.0)
    assert longest_stall(recorder, 1) == pytest.approx(0.1)
    assert longest_stall(recorder, 5) == 0.0


def test_snapshot_when_stalled_probes_a_still_full_pool():
    recorder = offline_recorder()
    recorder.samples.append((recorder.elapsed, 3))  # as if three connections were just checked out

    async def probe():
        return "server view"

    found = asyncio.run(snapshot_when_stalled(recorder, 3, probe, quiet=0.1, timeout=2))
    assert found is not None and found[0] >= 0.1 and found[1] == "server view"
    assert asyncio.run(snapshot_when_stalled(recorder, 4, probe, quiet=0.05, timeout=0.2)) is None
    recorder.stop()


def test_plot_draws_both_pools_with_their_limits():
    async def sample():
        async with ThreadSampler() as threads:
            await asyncio.sleep(0.02)
        return threads

    recorder = offline_recorder()
    recorder.stop()
    ax = plot_threads_and_connections(asyncio.run(sample()), recorder, pool_limit=15)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["threads busy", "thread tokens = 40", "connections checked out", "pool_size + max_overflow = 15"]


@pytest.mark.stack
def test_requests_behind_a_block_wait_out_the_block_holding_their_connections():
    from fastapi import FastAPI
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from support.lab.app_server import serve
    from support.lessons.thread_pool import requests_behind_a_block
    from support.stack import get_stack

    stack = get_stack()

    async def scenario():
        engine = create_async_engine(stack.database_url, pool_size=5, max_overflow=0)
        sessions = async_sessionmaker(engine)
        app = FastAPI(title="blocked")

        @app.get("/query")
        async def query():
            async with sessions() as session:
                await session.execute(text("SELECT pg_sleep(0.05)"))

        @app.get("/block")
        async def block():
            time.sleep(0.25)  # blocks the loop on purpose

        served = await serve(app)
        try:
            return await requests_behind_a_block(served.url, engine, block_path="/block", in_flight=3)
        finally:
            await served.stop()
            await engine.dispose()

    run = asyncio.run(scenario())
    assert run.held_at_block == 3
    assert len(run.query_latencies) == 3 and min(run.query_latencies) >= 0.23
    assert run.statuses == [200, 200, 200, 200]
    summary = run.summary()
    assert summary["lag max"] >= 0.23
    assert summary["connection-seconds"] >= 3 * 0.23
    assert summary["p50"] <= summary["p95"] <= summary["max"]
