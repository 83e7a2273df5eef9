"""crowd() and ServerSampler against the real stack."""

from __future__ import annotations

import asyncio
import socket

import pytest

from support.lessons.pgbouncer_crowd import ServerSampler, crowd
from support.stack import defaults, get_stack

pytestmark = pytest.mark.stack  # needs PostgreSQL and PgBouncer


async def _short_transaction(connection) -> None:
    async with connection.transaction():
        await connection.execute("SELECT pg_sleep(0.005)")


def test_many_clients_through_pgbouncer_stay_within_its_server_pool():
    stack = get_stack()
    pool_size = int(defaults.PGBOUNCER_SETTINGS["default_pool_size"])
    seen_when_connected = []

    async def scenario():
        async with ServerSampler(stack, interval=0.01) as sampler:

            async def look():
                seen_when_connected.append(await sampler.sample())

            result = await crowd(
                stack.pgbouncer_url,
                60,
                _short_transaction,
                connect_concurrency=20,
                statement_cache_size=0,
                when_all_connected=look,
            )
        return result, sampler

    result, sampler = asyncio.run(scenario())
    assert result.connected == 60 and result.errors == 0
    assert seen_when_connected[0].clients_active >= 60
    assert sampler.max_clients >= 60
    assert 0 < sampler.max_bouncer_servers <= pool_size
    assert len(sampler.samples) >= 3


def test_failures_are_counted_not_raised():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def never_called(connection) -> None:
        raise AssertionError("no connection should have opened")

    result = asyncio.run(crowd(f"postgresql://course:x@127.0.0.1:{port}/course", 5, never_called, timeout=5))
    assert result.connected == 0 and result.errors == 5
    assert sum(result.connect_errors.values()) == 5 and not result.work_errors
    assert len(result.first_errors) == 1
