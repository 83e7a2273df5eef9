"""The sizing calculator: its arithmetic, and clear errors for bad input."""

from __future__ import annotations

import math

import pytest

from support.lessons.scaling_sizing import PoolPlan, size_pools


def plan(**overrides) -> PoolPlan:
    inputs = dict(request_rate=40, db_time_p95=0.1, workers=2, max_connections=100, reserved=10)
    return size_pools(**{**inputs, **overrides})


def test_littles_law_headroom_and_split():
    p = plan()
    assert math.isclose(p.busy, 4.0)  # 40/s x 0.1 s
    assert p.wanted == 6  # x 1.5
    assert p.available == 100 - 3 - 10
    assert (p.pool_size, p.max_overflow) == (2, 1)  # 2 busy per worker, 3 in bursts
    assert p.per_worker_limit == 3 and p.total_connections == 6
    assert p.pgbouncer_pool_size == 6
    assert math.isclose(p.saturation_rate, 60.0)


def test_single_worker_gets_everything():
    p = plan(request_rate=30, workers=1)
    assert (p.pool_size, p.max_overflow) == (3, 2)
    assert math.isclose(p.saturation_rate, 50.0)


def test_light_load_still_gets_one_connection_per_worker():
    p = plan(request_rate=1, db_time_p95=0.01, workers=4)
    assert p.pool_size == 1 and p.max_overflow == 0 and p.total_connections == 4


def test_reasoning_names_every_step():
    text = plan().explain()
    for words in (
        "Little's law",
        "Headroom",
        "max_connections 100",
        "Per worker",
        "pool_size=2",
        "max_overflow=1",
        "default_pool_size=6",
        "requests/s",
    ):
        assert words in text
    assert str(plan()) == text


def test_tight_server_cuts_headroom_and_says_so():
    # 9 busy, 14 wanted, but only 10 available: 2 workers x 5.
    p = size_pools(request_rate=90, db_time_p95=0.1, workers=2, max_connections=13)
    assert p.available == 10 and p.total_connections == 10
    assert p.pgbouncer_pool_size == 10
    assert "cut the headroom" in p.explain()


def test_headroom_one_plans_for_the_average():
    p = plan(headroom=1)
    assert p.wanted == 4 and p.total_connections == 4


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"request_rate": 0}, "request_rate must be a number greater than 0"),
        ({"request_rate": -5}, "request_rate must be a number greater than 0"),
        ({"request_rate": math.inf}, "request_rate"),
        ({"request_rate": "40"}, "request_rate"),
        ({"db_time_p95": 0}, "db_time_p95 must be a number greater than 0"),
        ({"db_time_p95": -0.1}, "50 ms"),
        ({"workers": 0}, "workers must be a whole number of at least 1"),
        ({"workers": 2.5}, "workers must be a whole number"),
        ({"workers": True}, "workers must be a whole number"),
        ({"max_connections": 0}, "SHOW max_connections"),
        ({"reserved": -1}, "reserved must be a whole number of at least 0"),
        ({"headroom": 0.8}, "less than the average"),
    ],
)
def test_bad_input_says_what_to_do(overrides, words):
    with pytest.raises(ValueError, match=words):
        plan(**overrides)


def test_more_workers_than_connections():
    with pytest.raises(ValueError, match="Run fewer workers"):
        plan(workers=90)  # 87 available


def test_nothing_left_for_the_application():
    with pytest.raises(ValueError, match="Raise max_connections"):
        plan(max_connections=10, reserved=7)


def test_load_the_server_cannot_carry():
    with pytest.raises(ValueError, match="make the queries shorter"):
        plan(request_rate=1000, db_time_p95=0.5)  # 500 busy, 87 available


def test_split_that_cannot_carry_each_share():
    # 9.5 busy fits in 10 available, but 3 workers get 3 each: 9 < 9.5.
    with pytest.raises(ValueError, match="cannot split"):
        size_pools(request_rate=95, db_time_p95=0.1, workers=3, max_connections=13)
