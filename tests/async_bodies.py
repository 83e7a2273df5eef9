"""Running an async test body from a plain pytest test."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from support.lab.app_server import stop_all


def run(test_body: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
    """Run an async test body on a fresh loop; no server outlives the test."""

    async def body_then_stop_servers() -> Any:
        try:
            return await asyncio.wait_for(test_body, timeout)
        finally:
            await stop_all()

    return asyncio.run(body_then_stop_servers())
