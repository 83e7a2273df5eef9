"""watch_servers() against the real stack, and the dashboard drawn from real samples."""

from __future__ import annotations

import asyncio
import os

import matplotlib
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from support.lab.dashboard import ServerSamples, plot_dashboard, watch_servers
from support.lab.naming import named
from support.lab.pool_alerts import Series
from support.stack import get_stack

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

pytestmark = pytest.mark.stack  # needs PostgreSQL and PgBouncer


def test_sees_a_transaction_held_through_pgbouncer():
    stack = get_stack()
    name = f"dashboard-test-{os.getpid()}"

    async def scenario() -> ServerSamples:
        engine = create_async_engine(
            stack.pgbouncer_url,
            connect_args=named(name, statement_cache_size=0, prepared_statement_cache_size=0),
        )
        try:
            async with watch_servers(stack, name, every=0.05) as samples:
                async with engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))  # a transaction begins and stays open
                    await asyncio.sleep(0.4)
                await asyncio.sleep(0.1)
        finally:
            await engine.dispose()
        return samples

    samples = asyncio.run(scenario())
    assert samples.errors == [] and len(samples.times) >= 4
    assert samples.peak("pools", "sv_active") >= 1
    assert samples.peak("activity", "idle in transaction") == 1
    assert samples.peak("activity", "oldest transaction (s)") >= 0.2
    assert samples.stats[-1]["total_xact_count"] >= samples.stats[0]["total_xact_count"]
    assert "idle in transaction" in samples.states()

    figure, axes = plt.subplots(3, 1, sharex=True)
    series = Series(origin=samples.origin)
    series.add(0.0, 'db_pool_checked_out{pool="db"} 1\ndb_pool_capacity{pool="db"} 5\n')
    plot_dashboard(series, "db", samples, tuple(axes))
    assert [ax.get_title() for ax in axes][1] == "PgBouncer: SHOW POOLS"
    plt.close(figure)
