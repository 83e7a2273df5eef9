"""The sizing calculator: Erlang C, the per-worker plan, and clear errors for bad input."""

from __future__ import annotations

import math

import pytest

from support.lessons.scaling_sizing import (
    PoolPlan,
    connections_for_target,
    erlang_c,
    highest_rate_for_target,
    size_pools,
    wait_probability,
)


def plan(**overrides) -> PoolPlan:
    inputs = dict(request_rate=30, hold_mean=0.1, hold_p95=0.12, workers=1, max_connections=100)
    return size_pools(**{**inputs, **overrides})


# Erlang C against values worked out by hand and from tables


def test_erlang_c_single_server_is_the_utilisation():
    assert math.isclose(erlang_c(1, 0.5), 0.5)
    assert math.isclose(erlang_c(1, 0.9), 0.9)


def test_erlang_c_known_values():
    assert math.isclose(erlang_c(2, 1.0), 1 / 3)
    assert math.isclose(erlang_c(5, 3.0), 0.2362, abs_tol=5e-4)
    assert math.isclose(erlang_c(10, 8.0), 0.4092, abs_tol=5e-4)


def test_erlang_c_saturated_and_large():
    assert erlang_c(3, 3.0) == 1.0 and erlang_c(3, 7.5) == 1.0
    assert erlang_c(4, 0.0) == 0.0
    big = erlang_c(500, 480.0)  # the recursion stays finite where factorials would overflow
    assert 0 < big < 1


def test_erlang_c_rejects_nonsense():
    with pytest.raises(ValueError, match="servers"):
        erlang_c(0, 0.5)
    with pytest.raises(ValueError, match="offered"):
        erlang_c(2, -1.0)


def test_wait_probability_matches_the_single_server_formula():
    # M/M/1: P(W > t) = rho * exp(-(mu - lambda) t); mu = 10/s, lambda = 5/s, t = 0.1 s
    assert math.isclose(wait_probability(1, 5.0, 0.1, 0.1), 0.5 * math.exp(-0.5))
    assert math.isclose(wait_probability(3, 12.0, 0.1, 0.0), erlang_c(3, 1.2))
    assert wait_probability(2, 30.0, 0.1, 0.05) == 1.0  # 3 erlangs on 2 connections


def test_connections_for_target_is_the_smallest_that_meets_it():
    c = connections_for_target(30.0, 0.1, 0.05, 0.99)
    assert c == 7
    assert wait_probability(c, 30.0, 0.1, 0.05) <= 0.01 < wait_probability(c - 1, 30.0, 0.1, 0.05)
    assert connections_for_target(30.0, 0.1, 0.05, 0.999) > c


def test_highest_rate_for_target_inverts_the_target():
    rate = highest_rate_for_target(7, 0.1, 0.05, 0.99)
    assert 30 < rate < 70
    assert wait_probability(7, rate, 0.1, 0.05) == pytest.approx(0.01, abs=1e-6)


# The plan


def test_single_worker_plan():
    p = plan()
    assert math.isclose(p.busy, 3.0) and p.busiest_rate == 30
    assert (p.pool_size, p.max_overflow) == (7, 1)  # Erlang C: 7; at the p95 0.12 s: 8
    assert p.per_worker_limit == 8 and p.total_connections == 8
    assert math.isclose(p.saturation_rate, 80.0)
    assert 30 < p.target_rate < p.saturation_rate
    assert p.available == 97 and p.pgbouncer_pool_size == 7


def test_uneven_workers_need_bigger_pools():
    even = size_pools(request_rate=120, hold_mean=0.04, workers=6, imbalance=1.0, max_connections=100)
    uneven = size_pools(request_rate=120, hold_mean=0.04, workers=6, imbalance=2.0, max_connections=100)
    assert uneven.busiest_rate == 2 * even.busiest_rate == 40
    assert uneven.pool_size > even.pool_size
    assert uneven.pgbouncer_pool_size == even.pgbouncer_pool_size  # PgBouncer pools across workers
    assert uneven.saturation_rate == pytest.approx(6 * uneven.per_worker_limit / (0.04 * 2.0))


def test_mean_not_p95_drives_pool_size_and_p95_only_the_overflow():
    without_tail = plan(hold_p95=None)
    assert without_tail.max_overflow == 0 and without_tail.pool_size == plan().pool_size
    slow_tail = plan(hold_p95=0.3)
    assert slow_tail.pool_size == plan().pool_size and slow_tail.max_overflow > plan().max_overflow


def test_payment_service():
    p = size_pools(
        request_rate=120, hold_mean=0.04, hold_p95=0.09, workers=6, imbalance=1.5, reserved=20,
        wait_quantile=0.999, max_connections=100,
    )  # fmt: skip
    assert (p.pool_size, p.max_overflow, p.total_connections, p.available) == (5, 3, 48, 77)
    assert p.pgbouncer_pool_size == 9


def test_reasoning_names_every_step():
    text = plan().explain()
    for words in ("Little's law", "Uneven workers", "Erlang C", "Tail headroom", "max_connections 100",
                  "pool_size=7", "max_overflow=1", "default_pool_size=7", "saturation"):  # fmt: skip
        assert words in text
    assert str(plan()) == text


def test_tight_server_cuts_the_overflow_and_says_so():
    p = size_pools(request_rate=30, hold_mean=0.1, hold_p95=0.3, workers=2, imbalance=1.0, max_connections=19)
    assert p.available == 16 and p.total_connections <= 16
    assert "cuts the overflow" in p.explain()


def test_pools_the_budget_cannot_hold():
    with pytest.raises(ValueError, match="PgBouncer"):
        size_pools(request_rate=300, hold_mean=0.05, workers=8, imbalance=1.5, max_connections=40)


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"request_rate": 0}, "request_rate must be a number greater than 0"),
        ({"request_rate": -5}, "request_rate must be a number greater than 0"),
        ({"request_rate": math.inf}, "request_rate"),
        ({"request_rate": "40"}, "request_rate"),
        ({"hold_mean": 0}, "hold_mean must be a number greater than 0"),
        ({"hold_mean": -0.1}, "40 ms"),
        ({"hold_p95": 0.05}, "swapped"),
        ({"hold_p95": "0.2"}, "hold_p95"),
        ({"workers": 0}, "workers must be a whole number of at least 1"),
        ({"workers": 2.5}, "workers must be a whole number"),
        ({"workers": True}, "workers must be a whole number"),
        ({"workers": 3}, "give imbalance"),
        ({"workers": 3, "imbalance": 0.5}, "imbalance must be between 1"),
        ({"workers": 3, "imbalance": 4}, "imbalance must be between 1"),
        ({"workers": 3, "imbalance": True}, "imbalance"),
        ({"max_connections": 0}, "SHOW max_connections"),
        ({"reserved": -1}, "reserved must be a whole number of at least 0"),
        ({"superuser_reserved": 1.5}, "superuser_reserved"),
        ({"wait_target": 0}, "wait_target must be a number greater than 0"),
        ({"wait_quantile": 1}, "wait_quantile must be a fraction"),
        ({"wait_quantile": 99}, "wait_quantile must be a fraction"),
        ({"wait_quantile": 0}, "wait_quantile"),
    ],
)
def test_bad_input_says_what_to_do(overrides, words):
    with pytest.raises(ValueError, match=words):
        plan(**overrides)


def test_more_workers_than_connections():
    with pytest.raises(ValueError, match="Run fewer workers"):
        plan(workers=98, imbalance=1.0)  # 97 available


def test_nothing_left_for_the_application():
    with pytest.raises(ValueError, match="raise max_connections"):
        plan(max_connections=10, reserved=7)


def test_load_the_server_cannot_carry():
    with pytest.raises(ValueError, match="make the queries shorter"):
        plan(request_rate=1000, hold_mean=0.5, hold_p95=None)  # 500 busy, 97 available
