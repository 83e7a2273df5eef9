"""LoopLagMonitor on a plain asyncio loop (no servers)."""

from __future__ import annotations

import asyncio
import time

import pytest

from support.lab.loop_lag import LoopLagMonitor


def test_a_blocking_call_shows_up_as_lag():
    async def scenario():
        async with LoopLagMonitor(interval=0.01) as lag:
            await asyncio.sleep(0.05)
            time.sleep(0.2)  # blocks the loop: the monitor cannot wake meanwhile
            await asyncio.sleep(0.05)
        return lag

    lag = asyncio.run(scenario())
    summary = lag.summary()
    assert summary["samples"] >= 3
    assert summary["max"] >= 0.15
    times, lags = lag.timeline()
    assert times == sorted(times) and len(times) == len(lags) == summary["samples"]
    assert summary["p50"] <= summary["p95"] <= summary["max"]
    assert "max" in repr(lag)


def test_an_idle_loop_has_little_lag():
    async def scenario():
        async with LoopLagMonitor(interval=0.01) as lag:
            await asyncio.sleep(0.3)
        return lag

    lag = asyncio.run(scenario())
    # generous: the test machine may be busy, but nothing here blocks for 100 ms
    assert lag.summary()["samples"] >= 5
    assert lag.summary()["p50"] < 0.1


def test_start_and_stop_are_idempotent_and_samples_survive():
    async def scenario():
        lag = LoopLagMonitor()
        lag.start()
        lag.start()
        assert lag.running
        await asyncio.sleep(0.05)
        await lag.stop()
        await lag.stop()
        return lag

    lag = asyncio.run(scenario())
    assert not lag.running
    assert lag.summary()["samples"] >= 1


def test_without_samples():
    lag = LoopLagMonitor()
    assert lag.summary() == {"samples": 0, "p50": None, "p95": None, "max": None}
    assert "no samples" in repr(lag)


@pytest.mark.parametrize("interval", [0, -1, 2, "0.01", True, float("nan")])
def test_rejects_a_bad_interval(interval):
    with pytest.raises(ValueError, match="interval"):
        LoopLagMonitor(interval=interval)
