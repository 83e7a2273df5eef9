"""PoolRecorder against a real engine on the private stack."""

from __future__ import annotations

import asyncio

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
