"""PoolMetrics: pool events and checkout waits as Prometheus metrics.

The fast tests use a synchronous SQLite engine with a QueuePool (the same
pool code as the async one, no server needed); the stack tests use an
AsyncEngine against PostgreSQL.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool, QueuePool

from support.lab.pool_metrics import WAIT_BUCKETS, PoolMetrics, add_metrics_route, pool_state


def samples(metrics: PoolMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, parsed by prometheus_client's own parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.exposition())
        for s in family.samples
    }


def value(metrics: PoolMetrics, name: str, pool: str = "db") -> float:
    return samples(metrics)[(name, (("pool", pool),))]


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(
        f"sqlite:///{tmp_path / 'pool.db'}", poolclass=QueuePool, pool_size=1, max_overflow=1, pool_timeout=0.2
    )
    yield engine
    engine.dispose()


def test_counts_checkouts_timeouts_and_connections(engine):
    metrics = PoolMetrics()
    metrics.watch(engine, pool="db")
    first, second = engine.connect(), engine.connect()
    assert value(metrics, "db_pool_checked_out") == 2 and value(metrics, "db_pool_capacity") == 2
    assert value(metrics, "db_pool_overflow") == 1 and value(metrics, "db_pool_size") == 1
    with pytest.raises(PoolTimeoutError):
        engine.connect()
    time.sleep(0.05)
    assert value(metrics, "db_pool_longest_checkout_seconds") >= 0.2
    first.close()
    second.close()  # the queue is full: this one is closed, overflow drops
    assert value(metrics, "db_pool_checked_out") == 0 and value(metrics, "db_pool_idle") == 1
    assert value(metrics, "db_pool_checkouts_total") == 2
    assert value(metrics, "db_pool_checkout_timeouts_total") == 1
    assert value(metrics, "db_pool_connections_opened_total") == 2
    assert value(metrics, "db_pool_connections_closed_total") == 1
    assert value(metrics, "db_pool_longest_checkout_seconds") == 0
    assert value(metrics, "db_pool_oldest_connection_seconds") > 0
    assert value(metrics, "db_pool_checkout_wait_seconds_count") == 3
    assert value(metrics, "db_pool_checkout_wait_seconds_sum") >= 0.2
    metrics.stop()


def test_waiting_counts_checkouts_in_progress(engine):
    metrics = PoolMetrics()
    metrics.watch(engine, pool="db")
    held = [engine.connect(), engine.connect()]
    outcome: list[str] = []
    waiter = threading.Thread(target=lambda: outcome.append(_try_connect(engine)))
    waiter.start()
    time.sleep(0.05)
    waiting_meanwhile = value(metrics, "db_pool_waiting")
    held[0].close()  # the waiter gets this one
    waiter.join(timeout=5)
    assert waiting_meanwhile == 1 and outcome == ["ok"]
    assert value(metrics, "db_pool_waiting") == 0
    held[1].close()
    metrics.stop()


def _try_connect(engine) -> str:
    try:
        engine.connect().close()
    except PoolTimeoutError:
        return "timeout"
    return "ok"


def test_invalidation_is_counted_and_closes(engine):
    metrics = PoolMetrics()
    metrics.watch(engine, pool="db")
    with engine.connect() as connection:
        connection.invalidate()
    assert value(metrics, "db_pool_connections_invalidated_total") == 1
    assert value(metrics, "db_pool_connections_closed_total") == 1
    metrics.stop()


def test_histogram_buckets_are_cumulative(engine):
    metrics = PoolMetrics()
    metrics.watch(engine, pool="db")
    for _ in range(3):
        engine.connect().close()
    got = samples(metrics)
    buckets = [got[("db_pool_checkout_wait_seconds_bucket", (("le", le), ("pool", "db")))] for le in _les()]
    assert buckets == sorted(buckets) and buckets[-1] == 3
    metrics.stop()


def _les() -> list[str]:
    return [repr(bound) for bound in WAIT_BUCKETS] + ["+Inf"]


def test_follows_the_engine_after_dispose_and_stop_restores_it(engine):
    metrics = PoolMetrics()
    metrics.watch(engine, pool="db")
    old_pool = engine.pool
    engine.connect().close()
    engine.dispose()
    assert engine.pool is not old_pool
    engine.connect().close()  # counted through the new pool (SQLAlchemy copies listeners to it)
    assert value(metrics, "db_pool_checkouts_total") == 2 and value(metrics, "db_pool_idle") == 1
    listeners = dict(metrics._watched[0].listeners)
    metrics.stop()
    assert "raw_connection" not in vars(engine)
    assert not any(event.contains(pool, name, fn) for pool in (old_pool, engine.pool) for name, fn in listeners.items())
    engine.connect().close()
    assert not [key for key in samples(metrics) if key[0] == "db_pool_checkouts_total"], "stopped: no samples"


def test_two_pools_in_one_registry_and_refusals(engine, tmp_path):
    other = create_engine(f"sqlite:///{tmp_path / 'other.db'}", poolclass=QueuePool, pool_size=2, max_overflow=-1)
    metrics = PoolMetrics(CollectorRegistry())
    metrics.watch(engine, pool="db")
    metrics.watch(other, pool="other")
    assert value(metrics, "db_pool_capacity", "other") == math.inf
    with pytest.raises(ValueError, match="already watched"):
        metrics.watch(create_engine("sqlite://"), pool="db")
    with pytest.raises(ValueError, match="already instrumented"):
        PoolMetrics().watch(engine, pool="again")
    metrics.stop()
    other.dispose()


def test_pool_state_of_a_null_pool():
    engine = create_engine("sqlite://", poolclass=NullPool)
    assert pool_state(engine.pool) == {"checked_out": 0, "idle": 0, "overflow": 0, "size": 0, "capacity": math.inf}


def test_metrics_route_serves_the_text_format(engine):
    metrics = PoolMetrics()
    metrics.watch(engine, pool="db")
    app = FastAPI()
    add_metrics_route(app, metrics)

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            return await client.get("/metrics")

    response = asyncio.run(get())
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert 'db_pool_checked_out{pool="db"} 0.0' in response.text
    assert "/metrics" not in app.openapi()["paths"]
    metrics.stop()


@pytest.mark.stack
def test_async_engine_waiting_and_timeout_on_postgres():
    from support.stack import get_stack

    stack = get_stack()

    async def scenario() -> tuple[float, float, float]:
        engine = create_async_engine(stack.database_url, pool_size=1, max_overflow=0, pool_timeout=0.4)
        metrics = PoolMetrics()
        metrics.watch(engine, pool="db")
        held = await engine.connect()
        await held.execute(text("SELECT 1"))

        async def second_checkout() -> None:
            await engine.connect()

        attempt = asyncio.create_task(second_checkout())
        await asyncio.sleep(0.1)
        waiting = value(metrics, "db_pool_waiting")
        with pytest.raises(PoolTimeoutError):
            await attempt
        timeouts, after = value(metrics, "db_pool_checkout_timeouts_total"), value(metrics, "db_pool_waiting")
        await held.close()
        await engine.dispose()
        metrics.stop()
        return waiting, timeouts, after

    assert asyncio.run(scenario()) == (1, 1, 0)
