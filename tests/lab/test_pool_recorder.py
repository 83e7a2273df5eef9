"""PoolRecorder against a real engine on the private stack."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import create_async_engine

from support.lab.pool_recorder import PoolRecorder
from support.stack import get_stack

pytestmark = pytest.mark.stack  # needs PostgreSQL and PgBouncer


@pytest.fixture(scope="module")
def stack():
    return get_stack()


def test_records_checkouts_waits_and_timeouts(stack):
    async def scenario():
        engine = create_async_engine(stack.database_url, pool_size=2, max_overflow=1, pool_timeout=0.3)
        recorder = PoolRecorder(engine)
        held = []
        for _ in range(3):
            connection = await engine.connect()
            await connection.execute(text("SELECT 1"))
            held.append(connection)
        with pytest.raises(PoolTimeoutError):
            await engine.connect()
        peak_while_held = recorder.checked_out
        for connection in held:
            await connection.close()
        recorder.stop()
        await engine.dispose()
        return recorder, peak_while_held

    recorder, peak_while_held = asyncio.run(scenario())
    assert peak_while_held == 3
    assert recorder.peak_checked_out == 3
    assert recorder.checked_out == 0
    assert [w.outcome for w in recorder.waits] == ["ok", "ok", "ok", "timeout"]
    assert recorder.timeouts == 1
    assert recorder.waits[-1].waited >= 0.29
    times, counts = recorder.timeline()
    assert counts[0] == 0 and max(counts) == 3 and counts[-1] == 0
    assert times == sorted(times)


def test_stop_restores_the_pool(stack):
    engine = create_async_engine(stack.database_url)
    pool = engine.sync_engine.pool
    recorder = PoolRecorder(engine)
    assert "connect" in vars(pool)
    recorder.stop()
    assert "connect" not in vars(pool)
    recorder.stop()  # a second stop does nothing


def test_mean_checked_out_weighs_counts_by_time(stack):
    engine = create_async_engine(stack.database_url)
    recorder = PoolRecorder(engine)
    recorder.samples[:] = [(0.0, 0), (1.0, 2), (3.0, 1)]  # 0 for 1 s, 2 for 2 s, then 1
    assert recorder.mean_checked_out(0.0, 4.0) == pytest.approx((0 + 4 + 1) / 4)
    assert recorder.mean_checked_out(1.0, 3.0) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="must come after"):
        recorder.mean_checked_out(2.0, 2.0)
    recorder.stop()


def test_a_recorder_started_mid_run_counts_from_the_pools_real_state(stack):
    """Interrupt a run, start recording at once: the count starts at what is still out and ends at 0."""

    async def scenario():
        engine = create_async_engine(stack.database_url, pool_size=3, max_overflow=2)
        holding = []

        async def slow_query():
            async with engine.connect() as connection:
                holding.append(connection)
                await connection.execute(text("SELECT pg_sleep(0.5)"))

        in_flight = [asyncio.create_task(slow_query()) for _ in range(4)]
        while len(holding) < 4:  # the "interrupted" run holds 4 connections, checked out and busy
            await asyncio.sleep(0.01)
        recorder = PoolRecorder(engine)
        at_start = recorder.checked_out
        await asyncio.gather(*in_flight)
        left = await recorder.wait_until_returned(timeout=5)
        recorder.stop()
        await engine.dispose()
        return recorder, at_start, left

    recorder, at_start, left = asyncio.run(scenario())
    assert at_start == 4 == recorder.checked_out_at_start, f"started at {at_start}, the pool had 4 out"
    assert min(count for _, count in recorder.samples) >= 0, f"the count went negative: {recorder.samples}"
    assert recorder.checked_out == 0 and left == 0, f"{recorder.checked_out} still counted out at the end"
    assert "checked out at start=4" in repr(recorder)


def test_null_pool_is_tallied_from_events(stack):
    from sqlalchemy.pool import NullPool

    async def scenario():
        engine = create_async_engine(stack.database_url, poolclass=NullPool)
        with PoolRecorder(engine) as recorder:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
                inside = recorder.checked_out
        await engine.dispose()
        return recorder, inside

    recorder, inside = asyncio.run(scenario())
    assert (inside, recorder.checked_out, recorder.peak_checked_out) == (1, 0, 1)


SETUP_CELL = """
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from support.lab.app_server import serve
from support.lab.load import open_loop
from support.lab.pool_recorder import PoolRecorder
from support.stack import get_stack

stack = get_stack()
engine = create_async_engine(stack.database_url, pool_timeout=0.25)
Session = async_sessionmaker(engine)
app = FastAPI(title="interrupted-sweep")

@app.get("/report")
async def report(seconds: float):
    async with Session() as session:
        await session.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
    return {"slept": seconds}

served = await serve(app)
"""

SWEEP_CELL = """
for seconds in (0.2, 0.3):
    with PoolRecorder(engine) as recorder:
        run = await open_loop(f"{served.url}/report?seconds={seconds}", rate=50, duration=1.5, timeout=10)
    assert recorder.checked_out == 0, f"{recorder.checked_out} connections still counted out: {recorder}"
print("sweep done")
"""


def test_an_interrupted_sweep_reruns_at_once():
    """Jupyter's "Interrupt kernel" mid-sweep, then the same cell again straight away, three times."""
    from tests.kernels import kernel

    with kernel() as k:
        k.run(SETUP_CELL, timeout=90)
        for attempt in range(3):
            msg_id = k.start_cell(SWEEP_CELL)
            time.sleep(1.0 + 0.4 * attempt)  # somewhere inside the first or second step
            k.manager.interrupt_kernel()
            reply = k.reply_to(msg_id, timeout=30)
            assert reply["content"]["status"] == "error", "the interrupt arrived after the cell had finished"
            assert "sweep done" in k.run(SWEEP_CELL, timeout=60), f"re-run {attempt + 1} failed"
        k.run("await served.stop()\nawait engine.dispose()")


def test_counts_stay_exact_when_threads_check_out_at_once(stack):
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    url = make_url(stack.database_url).set(drivername="postgresql+psycopg")
    engine = create_engine(url, pool_size=4, max_overflow=4, pool_timeout=5)
    recorder = PoolRecorder(engine)

    def use_connections(_):
        for _ in range(25):
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")

    with ThreadPoolExecutor(max_workers=8) as threads:
        list(threads.map(use_connections, range(8)))
    recorder.stop()
    engine.dispose()
    assert recorder.checked_out == 0
    assert 1 <= recorder.peak_checked_out <= 8
    assert len(recorder.waits) == 200 and recorder.timeouts == 0
    assert len(recorder.samples) == 1 + 2 * 200 + 1  # start, one per checkout and checkin, stop
