"""backends(): an engine's connections as PostgreSQL lists them."""

from __future__ import annotations

import asyncio
import os

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from support.lab.server_activity import activity, backends
from support.stack import get_stack

pytestmark = pytest.mark.stack  # needs PostgreSQL and PgBouncer


def test_lists_an_engines_connections_with_state_and_waits_for_them_to_go():
    stack = get_stack()
    name = f"test-activity-{os.getpid()}"

    async def scenario():
        engine = create_async_engine(stack.database_url, connect_args={"server_settings": {"application_name": name}})
        held = [await engine.connect() for _ in range(3)]
        await held[0].begin()
        await held[0].execute(text("SELECT 1"))
        while_held = await backends(stack, name)
        pids = {(await c.execute(text("SELECT pg_backend_pid()"))).scalar_one() for c in held}
        for connection in held:
            await connection.close()
        await engine.dispose()
        after = await backends(stack, f"{name}%", expect=0)
        return while_held, pids, after

    while_held, pids, after = asyncio.run(scenario())
    assert {pid for pid, _ in while_held} == pids
    assert sorted(state for _, state in while_held) == ["idle", "idle", "idle in transaction"]
    assert after == []


def test_activity_gives_the_age_of_each_state():
    stack = get_stack()
    name = f"test-activity-age-{os.getpid()}"

    async def scenario():
        engine = create_async_engine(stack.database_url, connect_args={"server_settings": {"application_name": name}})
        idle_in_transaction = await engine.connect()
        await idle_in_transaction.execute(text("SELECT 1"))
        first = await activity(stack, name)
        await asyncio.sleep(0.5)
        second = await activity(stack, name)
        await idle_in_transaction.close()
        after_close = await activity(stack, name)
        await engine.dispose()
        return first, second, after_close

    first, second, after_close = asyncio.run(scenario())
    assert [b.state for b in first] == ["idle in transaction"] and first[0].application_name == name
    assert second[0].in_state >= first[0].in_state + 0.45, "the age grows while nothing happens"
    assert second[0].transaction_age is not None and second[0].transaction_age >= second[0].in_state
    assert [b.state for b in after_close] == ["idle"] and after_close[0].transaction_age is None
    assert after_close[0].in_state < second[0].in_state, "a new state starts a new age"
