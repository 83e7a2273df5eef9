"""Notebook 03's helpers: the Poisson model, the sweep's sentences, the exercise's input checks."""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace
from unittest import mock

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import QueuePool

from support.lab.pool_recorder import PoolRecorder
from support.lessons.triggering_the_timeout import (
    QueueWatch,
    check_report_pool,
    connections_for,
    describe_sweep,
    pool_choice_problem,
    query_time_when_full,
    share_of_time_full,
    sweep_findings,
)


def poisson_tail(mean: float, limit: int) -> float:
    return 1 - sum(math.exp(-mean) * mean**n / math.factorial(n) for n in range(limit))


@pytest.mark.parametrize(("mean", "limit"), [(5, 15), (10, 15), (12.5, 15), (20, 30), (0.5, 1)])
def test_share_of_time_full_is_the_poisson_tail(mean, limit):
    assert math.isclose(share_of_time_full(mean, limit), poisson_tail(mean, limit), abs_tol=1e-12)


def test_share_of_time_full_edges():
    assert share_of_time_full(3.0, 0) == 1.0
    assert share_of_time_full(0.0, 1) == 0.0
    with pytest.raises(ValueError, match="busy_on_average"):
        share_of_time_full(-1, 3)


def test_connections_for_leaves_headroom_over_the_mean():
    assert connections_for(20, 0.01) == 32  # P(N >= 31) = 1.35 %, P(N >= 32) = 0.81 %
    assert connections_for(20, 0.05) == 29
    assert share_of_time_full(20, connections_for(20, 0.05) - 1) > 0.05
    with pytest.raises(ValueError, match="share of time"):
        connections_for(20, 1.5)


def test_query_time_when_full_inverts_the_model():
    seconds = query_time_when_full(50, 15, 0.01)
    assert 0.14 < seconds < 0.16
    assert math.isclose(share_of_time_full(50 * seconds, 15), 0.01, rel_tol=1e-6)


@pytest.mark.parametrize(
    ("pool_size", "max_overflow", "words"),
    [
        ("5", 10, "without quotes"),
        (5, None, "EXERCISE_MAX_OVERFLOW must be a whole number"),
        (True, 10, "EXERCISE_POOL_SIZE must be a whole number"),
        (20.0, 10, "got 20.0"),
        (-5, 10, "at least 1"),
        (0, 10, "no limit"),
        (5, -1, "at least 0"),
        (30, 20, "more than the 40 allowed"),
    ],
)
def test_pool_choice_problem_explains_nonsense(pool_size, max_overflow, words):
    problem = pool_choice_problem(pool_size, max_overflow, most=40)
    assert problem is not None and problem.startswith("not yet") and words in problem


def test_pool_choice_problem_accepts_a_sensible_pool():
    assert pool_choice_problem(20, 10, most=40) is None


def test_check_report_pool_answers_bad_input_without_building_anything():
    build = mock.Mock(side_effect=AssertionError("nothing must be built for bad input"))
    feedback = asyncio.run(
        check_report_pool("5", 10, make_engine=build, make_app=build, rate=50, duration=1, query=0.4, seed=1)
    )
    assert feedback.startswith("not yet") and "'5'" in feedback
    build.assert_not_called()


def row(query, *, failed=0, found=0.0, on_time=True, busy=None):
    return {
        "query (s)": query,
        "busy, predicted": busy if busy is not None else 50 * query,
        "mean checked out": 50 * query,
        "full, predicted": 0.0,
        "found it full": found,
        "p95 wait (ms)": 12,
        "requests": 76,
        "failed": failed,
        "load on time": on_time,
    }


def test_describe_sweep_says_what_a_clean_run_measured():
    rows = [row(0.1), row(0.2, found=0.05), row(0.4, failed=9, found=0.6), row(0.5, failed=20, found=0.7)]
    facts = sweep_findings(rows, saturation=0.3, lower_bound=0.15)
    text = describe_sweep(facts)
    assert facts["first_failure"] == 0.4 and facts["queued_without_failing"] == [0.2]
    assert "first failures came at 0.4 s" in text
    assert "Queueing came before any 500" in text and "0.2 s (5% found it full" in text
    assert "kept to its timetable in every row" in text


def test_describe_sweep_owns_up_to_a_busy_machine():
    rows = [row(0.1, failed=3, found=0.2, on_time=False), row(0.5, failed=20, found=0.7)]
    facts = sweep_findings(rows, saturation=0.3, lower_bound=0.15)
    text = describe_sweep(facts)
    assert facts["failed_below_lower_bound"] == [0.1] and facts["late_rows"] == [0.1]
    assert "Rows below 0.15 s failed too" in text and "fell behind its timetable in rows [0.1]" in text


def test_describe_sweep_without_failures():
    facts = sweep_findings([row(0.1), row(0.2)], saturation=0.3, lower_bound=0.15)
    assert "No request failed" in describe_sweep(facts)


def test_queue_watch_sees_a_full_pool_and_restores_connect_inside_a_recorder():
    pool = QueuePool(mock.MagicMock, pool_size=1, max_overflow=0, timeout=0.05)
    engine = SimpleNamespace(pool=pool)
    held = pool.connect()
    with PoolRecorder(engine), QueueWatch(engine, limit=1) as watch:
        with pytest.raises(PoolTimeoutError):
            pool.connect()
        held.close()
        pool.connect().close()
    assert watch.found_full == [True, False] and watch.share_found_full == 0.5
    assert "connect" not in vars(pool), "the pool's own connect() shows through again"
