"""Waiting, briefly, until a pool has every connection back.

A client can have its answer a moment before the server has returned the
request's connection to the pool (FastAPI runs a dependency's clean-up after
the response is sent), and a cell interrupted in the middle of a load run
leaves requests on the server that finish later. A check that reads "back to
0" therefore waits for it first, with a short time limit so that a real leak
still shows up as a number and never as a hang.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any


async def settled(engine: Any, timeout: float = 2.0) -> int:
    """The pool's checked-out count, once it is 0 or `timeout` seconds have passed.

    `engine` is an AsyncEngine or an Engine. Returns what is still checked
    out, so ``assert await settled(engine) == 0`` reads as the claim it checks.
    """
    pool = getattr(engine, "sync_engine", engine).pool
    deadline = time.monotonic() + timeout
    while pool.checkedout() > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return pool.checkedout()
