"""backends(): an engine's connections as PostgreSQL lists them."""

from __future__ import annotations

import asyncio
import os

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from support.lab.server_activity import backends
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
