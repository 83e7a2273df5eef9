"""Series, scrape() and the alert-rule evaluator."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from support.lab.app_server import serve
from support.lab.pool_alerts import AlertRule, Series, evaluate, scrape


def exposition(checked_out: float, capacity: float = 10, waiting: float = 0, pool: str = "db") -> str:
    return (
        "# TYPE db_pool_checked_out gauge\n"
        f'db_pool_checked_out{{pool="{pool}"}} {checked_out}\n'
        "# TYPE db_pool_capacity gauge\n"
        f'db_pool_capacity{{pool="{pool}"}} {capacity}\n'
        "# TYPE db_pool_waiting gauge\n"
        f'db_pool_waiting{{pool="{pool}"}} {waiting}\n'
        "# TYPE db_pool_checkouts_total counter\n"
        f'db_pool_checkouts_total{{pool="{pool}"}} {checked_out * 10}\n'
    )


def series_of(checked_out: list[float | None], every: float = 0.5, **kwargs: float) -> Series:
    """One scrape per value, `every` seconds apart; None is a failed scrape."""
    series = Series(origin=0.0)
    for index, count in enumerate(checked_out):
        if count is None:
            series.add_failure(index * every, "ConnectError")
        else:
            series.add(index * every, exposition(count, **kwargs))
    return series


def test_series_keeps_samples_by_name_and_labels():
    series = series_of([1, 2, None, 4])
    assert series.values("db_pool_checked_out", pool="db") == ([0.0, 0.5, 1.5], [1.0, 2.0, 4.0])
    assert series.value_at(2, "db_pool_checked_out", pool="db") is None
    assert series.values("db_pool_checked_out", pool="other") == ([], [])
    assert series.failures == [(1.0, "ConnectError")] and len(series) == 4
    assert series.rate("db_pool_checkouts_total", pool="db") == ([0.5, 1.5], [20.0, 20.0])
    assert "db_pool_checkouts_total" in series.names()


def test_fires_once_true_for_the_whole_for_duration():
    rule = AlertRule("Busy", "db_pool_checked_out", above=5, for_seconds=1)
    outcome = evaluate(rule, series_of([0, 6, 7, 8, 8, 1]), pool="db")
    assert outcome.fired and outcome.pending_since == 0.5 and outcome.fired_at == 1.5
    assert outcome.firing == ((1.5, 2.5),) and outcome.peak == 8 and outcome.evaluations == 6
    assert "fired at 1.50 s" in str(outcome)


def test_a_false_evaluation_or_a_missing_scrape_resets_the_pending_alert():
    rule = AlertRule("Busy", "db_pool_checked_out", above=5, for_seconds=1)
    reset = evaluate(rule, series_of([6, 6, 0, 6, 6, 0]), pool="db")
    assert not reset.fired and not reset.true_at_end
    not_fired = evaluate(rule, series_of([6, 6, None, 6, 6]), pool="db")
    assert not not_fired.fired and not_fired.pending_since == 0.0 and not_fired.true_at_end
    assert "did not fire" in str(not_fired)


def test_threshold_is_strictly_above_and_for_zero_fires_at_once():
    assert not evaluate(AlertRule("A", "db_pool_checked_out", 5, 0), series_of([5, 5]), pool="db").fired
    assert evaluate(AlertRule("A", "db_pool_checked_out", 5, 0), series_of([5, 6]), pool="db").fired_at == 0.5


def test_of_capacity_compares_a_fraction():
    rule = AlertRule("Full", "db_pool_checked_out", above=0.8, for_seconds=0.5, of_capacity=True)
    outcome = evaluate(rule, series_of([8, 9, 9, 10], capacity=10), pool="db")
    assert outcome.fired_at == 1.0 and outcome.peak == 1.0
    assert rule.expr == "db_pool_checked_out / db_pool_capacity > 0.8"


def test_unknown_series_is_an_error_naming_what_exists():
    with pytest.raises(ValueError, match="db_pool_checked_out"):
        evaluate(AlertRule("A", "db_pool_nonsense", 0, 0), series_of([1]), pool="db")


def test_rule_text_and_validation():
    rule = AlertRule("DbPoolWaiting", "db_pool_waiting", 0, 1, for_text="1m", summary="requests wait")
    assert rule.as_prometheus().splitlines() == [
        "- alert: DbPoolWaiting",
        "  expr: db_pool_waiting > 0",
        "  for: 1m",
        "  annotations:",
        '    summary: "requests wait"',
    ]
    for bad in (
        dict(name="has space", metric="db_pool_waiting", above=0, for_seconds=1),
        dict(name="A", metric="db pool", above=0, for_seconds=1),
        dict(name="A", metric="db_pool_waiting", above=-1, for_seconds=1),
        dict(name="A", metric="db_pool_waiting", above=0, for_seconds="1m"),
        dict(name="A", metric="db_pool_checked_out", above=80, for_seconds=1, of_capacity=True),
    ):
        with pytest.raises(ValueError):
            AlertRule(**bad)  # type: ignore[arg-type]


def test_scrape_collects_over_http_while_the_block_runs():
    state = {"count": 0}
    app = FastAPI()

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> str:
        return exposition(state["count"])

    async def scenario() -> Series:
        served = await serve(app, name="scrape-test")
        try:
            async with scrape(served.url + "/metrics", every=0.05) as series:
                for count in range(1, 5):
                    state["count"] = count
                    await asyncio.sleep(0.06)
        finally:
            await served.stop()
        return series

    series = asyncio.run(scenario())
    times, values = series.values("db_pool_checked_out", pool="db")
    assert series.failures == [] and len(times) >= 4
    assert times == sorted(times) and values[-1] == 4 and set(values) <= {0, 1, 2, 3, 4}


def test_scrape_records_failures_and_validates():
    async def scenario() -> Series:
        async with scrape("http://127.0.0.1:9/metrics", every=0.05, timeout=0.5) as series:
            await asyncio.sleep(0.01)
        return series

    series = asyncio.run(scenario())
    assert series.failures and all(not s for s in series.samples)
    with pytest.raises(ValueError):
        asyncio.run(scrape("http://127.0.0.1:9/", every=0).__aenter__())
