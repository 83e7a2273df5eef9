"""settled(): waiting briefly for a pool to have every connection back."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from unittest import mock

from sqlalchemy.pool import QueuePool

from support.lab.settle import settled


def test_returns_at_once_when_nothing_is_out():
    pool = QueuePool(mock.MagicMock, pool_size=2)
    started = time.monotonic()
    assert asyncio.run(settled(SimpleNamespace(pool=pool), timeout=5)) == 0
    assert time.monotonic() - started < 0.5


def test_waits_for_a_connection_that_comes_back_and_gives_up_on_one_that_does_not():
    pool = QueuePool(mock.MagicMock, pool_size=2)
    engine = SimpleNamespace(pool=pool)

    async def scenario():
        late, kept = pool.connect(), pool.connect()
        asyncio.get_running_loop().call_later(0.1, late.close)
        started = time.monotonic()
        left = await settled(engine, timeout=0.5)
        waited = time.monotonic() - started
        kept.close()
        return left, waited

    left, waited = asyncio.run(scenario())
    assert left == 1, "the connection that never came back is reported, not waited for forever"
    assert 0.45 <= waited < 2
