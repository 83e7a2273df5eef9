"""Notebook 09's helpers: the capacity arithmetic, the exercise feedback, and the watch on a real pool."""

from __future__ import annotations

import asyncio
import math

import matplotlib
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from support.lessons.slow_work import ConnectionWatch, capacity, exercise_feedback, plot_before_after, pool_limit
from support.stack import get_stack

matplotlib.use("Agg")

CALL = 0.4


def feedback(**overrides) -> str:
    """Feedback for a run of 20 requests; by default a correct endpoint."""
    measured = dict(
        statuses={200: 20},
        requests=20,
        saved=20,
        holds=[0.01] * 40,
        call_seconds=CALL,
        left_checked_out=0,
        function_scope=False,
        first_error=None,
    )
    return exercise_feedback(**{**measured, **overrides})


# --- capacity --------------------------------------------------------------------------------


def test_capacity_is_littles_law_solved_for_the_rate():
    assert math.isclose(capacity(5, 0.4), 12.5)
    assert math.isclose(capacity(15, 0.02), 750.0)


@pytest.mark.parametrize("connections", [0, -1, 2.5, True, "5"])
def test_capacity_rejects_a_bad_pool(connections):
    with pytest.raises(ValueError, match="connections must be a whole number"):
        capacity(connections, 0.1)


@pytest.mark.parametrize("hold", [0, -0.1, math.inf, math.nan, "0.3", None])
def test_capacity_rejects_a_bad_hold_time(hold):
    with pytest.raises(ValueError, match="hold_seconds must be a number"):
        capacity(5, hold)


def test_pool_limit_reads_size_and_overflow():
    engine = create_async_engine("postgresql+asyncpg://u:p@127.0.0.1:1/db", pool_size=3, max_overflow=4)
    assert pool_limit(engine) == 7


def test_plot_before_after_draws_two_panels():
    fig = plot_before_after(["before", "after"], [400, 20], [12.5, 250], offered_rate=25, connections=5)
    left, right = fig.axes
    assert [bar.get_height() for bar in left.patches] == [400, 20]
    assert right.get_yscale() == "log" and "5 connections" in right.get_title()


# --- exercise feedback -----------------------------------------------------------------------


def test_a_correct_endpoint_is_praised_with_its_numbers():
    message = feedback()
    assert message.startswith("well done") and "20 of 20" in message and "20 ms" in message


def test_holding_across_the_call_is_named_with_the_symptom():
    message = feedback(holds=[0.42] * 18, statuses={200: 18, 500: 2}, saved=18)
    assert message.startswith("not yet") and "18 of 18 checkouts" in message
    assert "commit()" in message and "after the read" in message
    assert "2 of 20 requests failed" in message
    assert "scope" not in message


def test_function_scope_is_called_out_when_it_was_the_attempt():
    message = feedback(holds=[0.42] * 20, function_scope=True)
    assert 'scope="function"` does not help' in message


def test_a_leak_comes_first():
    message = feedback(left_checked_out=3, holds=[0.42] * 20)
    assert message.startswith("not yet: 3 connection(s)") and "left open" in message


def test_a_broken_endpoint_shows_what_the_server_logged():
    message = feedback(statuses={500: 20}, saved=0, holds=[], first_error="NameError: name 'x' is not defined")
    assert "20 of 20 requests failed" in message and "NameError" in message


def test_requests_without_an_answer_are_counted():
    message = feedback(statuses={200: 15}, saved=15, holds=[0.01] * 30)
    assert "5 of 20 requests failed" in message and "5 without an answer" in message


def test_a_missing_commit_of_the_write_is_named():
    message = feedback(saved=0)
    assert "only 0 quotes saved" in message and "committed" in message


def test_an_endpoint_that_skips_the_database():
    assert "never used the database" in feedback(holds=[], saved=0)


# --- the watch on a real pool ----------------------------------------------------------------


@pytest.mark.stack
def test_watch_times_checkouts_and_tells_returned_from_invalidated():
    stack = get_stack()

    async def scenario():
        engine = create_async_engine(stack.database_url, pool_size=2, max_overflow=0)
        with ConnectionWatch(engine) as watch:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                await asyncio.sleep(0.2)
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                await conn.invalidate()
            watch.note("done")
            open_before_stop = watch.checked_out
        await engine.dispose()
        return watch, open_before_stop

    watch, open_before_stop = asyncio.run(scenario())
    assert open_before_stop == 0 and not watch.watching
    assert watch.outcomes() == ["returned", "invalidated"]
    first, second = watch.hold_seconds()
    assert first >= 0.2 > second
    assert math.isclose(watch.seconds_per_request(2), (first + second) / 2)
    events = [what for _, what in watch.timeline]
    assert events[0] == "pool: checked out" and "pool: rolled back on return" in events
    assert "pool: invalidated (closed, not reused)" in events and events[-1] == "done"
    assert "checkouts=2" in repr(watch)
    with pytest.raises(ValueError):
        watch.seconds_per_request(0)
    watch.stop()  # a second stop does nothing
