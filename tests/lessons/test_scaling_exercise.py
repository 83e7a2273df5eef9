"""Notebook 07's exercise: feedback names the mistake, validates input, accepts the calculator's answer."""

from __future__ import annotations

import pytest

from support.lessons.scaling_exercise import exercise_feedback, payment_plan

SERVER = {"max_connections": 100, "superuser_reserved": 3}


def feedback(pool_size, max_overflow, **server) -> str:
    return exercise_feedback(pool_size, max_overflow, **{**SERVER, **server})


def test_the_calculators_answer_passes():
    plan = payment_plan(**SERVER)
    text = feedback(plan.pool_size, plan.max_overflow)
    assert text.startswith("well done") and "48 of 77" in text


@pytest.mark.parametrize("pool_size, max_overflow", [(None, None), (5, None), (None, 3)])
def test_untouched_exercise_asks_for_numbers(pool_size, max_overflow):
    assert feedback(pool_size, max_overflow).startswith("not yet: set EXERCISE_POOL_SIZE")


@pytest.mark.parametrize("pool_size, max_overflow, name", [
    ("5", 3, "EXERCISE_POOL_SIZE"), (0, 3, "EXERCISE_POOL_SIZE"), (True, 3, "EXERCISE_POOL_SIZE"),
    (5.0, 3, "EXERCISE_POOL_SIZE"), (5, -1, "EXERCISE_MAX_OVERFLOW"), (5, 2.5, "EXERCISE_MAX_OVERFLOW"),
])  # fmt: skip
def test_bad_input_is_named(pool_size, max_overflow, name):
    text = feedback(pool_size, max_overflow)
    assert text.startswith("not yet") and name in text and "whole number" in text


def test_defaults_do_not_fit():
    text = feedback(5, 10)
    assert text.startswith("not yet") and "90 connections (the defaults)" in text and "77" in text


def test_even_split_is_named():
    text = feedback(4, 0)
    assert text.startswith("not yet") and "even split" in text


def test_average_only_is_named():
    text = feedback(2, 0)  # what 'Little's law plus 50 %' gives: 120 x 0.09 x 1.5 / 6
    assert text.startswith("not yet") and "Little's law gives the average" in text


def test_overflow_at_the_normal_peak():
    assert feedback(4, 4).startswith("almost: the target holds at the peak only with overflow")


def test_no_headroom_for_a_slow_spell():
    assert feedback(5, 0).startswith("almost: fine at the mean hold time, but in a slow spell")


def test_far_more_than_needed():
    assert feedback(10, 0).startswith("almost: it fits and meets the target, but each worker keeps 10")


def test_a_smaller_server_changes_the_verdict():
    text = feedback(5, 3, max_connections=60)  # 60 - 3 - 20 = 37 < 48
    assert text.startswith("not yet") and "37 for this service" in text
