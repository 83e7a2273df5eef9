"""Notebook 02: reading a pool's settings, and the exercise's check against wrong input and re-runs."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from support.lessons import default_limits
from support.lessons.default_limits import check_pool_plan, plan_problems, server_pids

BRIEF = {"workers": 8, "peak_per_worker": 8, "max_wait": 3.0, "available": 80}


def problems(plan, **brief):
    return plan_problems(plan, **{**BRIEF, **brief})


def test_pool_settings_reads_the_defaults_without_connecting():
    engine = create_async_engine("postgresql+asyncpg://nobody:x@127.0.0.1:1/none")
    assert default_limits.pool_settings(engine.pool) == {
        "poolclass": "AsyncAdaptedQueuePool",
        "pool_size": 5,
        "max_overflow": 10,
        "pool_timeout": 30.0,
        "pool_recycle": -1,
        "pool_pre_ping": False,
        "pool_use_lifo": False,
        "pool_reset_on_return": "rollback",
    }


def test_a_plan_that_meets_the_brief_has_no_problems():
    assert problems({"pool_size": 5, "max_overflow": 3, "pool_timeout": 2}) == []
    assert problems({"pool_size": 10, "max_overflow": 0, "pool_timeout": 3}) == []


def test_the_default_pool_is_too_big_and_waits_too_long():
    found = problems({"pool_size": 5, "max_overflow": 10, "pool_timeout": 30})
    assert found == [
        "8 workers x (5 + 10) = 120 connections, "
        "but only 80 are available next to what is already open and the headroom",
        "pool_timeout is 30 s; a request may wait at most 3 s",
    ]


@pytest.mark.parametrize(
    ("plan", "words"),
    [
        ({"pool_size": "5", "max_overflow": 3, "pool_timeout": 2}, "pool_size is the text '5'"),
        ({"pool_size": -5, "max_overflow": 3, "pool_timeout": 2}, "pool_size=-5"),
        ({"pool_size": 0, "max_overflow": 3, "pool_timeout": 2}, "pool_size=0 means 'no limit'"),
        ({"pool_size": 5.5, "max_overflow": 3, "pool_timeout": 2}, "whole number"),
        ({"pool_size": True, "max_overflow": 3, "pool_timeout": 2}, "must be a number"),
        ({"pool_size": None, "max_overflow": 3, "pool_timeout": 2}, "must be a number"),
        ({"pool_size": 5, "max_overflow": -1, "pool_timeout": 2}, "max_overflow=-1 means 'no limit"),
        ({"pool_size": 5, "max_overflow": -3, "pool_timeout": 2}, "max_overflow=-3"),
        ({"pool_size": 5, "max_overflow": 3, "pool_timeout": 0}, "pool_timeout=0 does not wait at all"),
        ({"pool_size": 5, "max_overflow": 3, "pool_timeout": -1}, "raises ValueError the first time"),
        ({"pool_size": 5, "max_overflow": 3, "pool_timeout": float("inf")}, "must be a number"),
        ({"pool_size": 5, "max_overflow": 3, "pool_timeout": "2"}, "pool_timeout is the text '2'"),
        ({"pool_sise": 5, "max_overflow": 3, "pool_timeout": 2}, "did you mean 'pool_size'?"),
        ({"max_overflow": 3, "pool_timeout": 2}, "the plan has no pool_size"),
        ("pool_size=5", "must be a dict"),
        (None, "must be a dict"),
    ],
)
def test_wrong_input_is_answered_in_words(plan, words):
    found = problems(plan)
    assert found and any(words in problem for problem in found), found


def test_a_server_too_busy_for_any_plan_says_so():
    found = problems({"pool_size": 5, "max_overflow": 3, "pool_timeout": 2}, available=40)
    assert any(problem.startswith("no plan can pass on this server right now") for problem in found)


@pytest.mark.stack
def test_the_check_tries_the_plan_on_a_real_pool_and_leaves_nothing_open_however_often_it_runs():
    from support.lab.naming import notebook_tag
    from support.stack import get_stack

    stack = get_stack()
    name = notebook_tag("test-plan")
    brief = dict(BRIEF, max_wait=1.0)

    async def scenario():
        answers = []
        for plan in (
            {"pool_size": 5, "max_overflow": 3, "pool_timeout": 0.5},
            {"pool_size": "5", "max_overflow": 3, "pool_timeout": 0.5},
            {"pool_size": 5, "max_overflow": 3, "pool_timeout": 0.5},
            {"pool_size": 8, "max_overflow": 0, "pool_timeout": 0.3},
        ):
            answers.append(await check_pool_plan(stack, plan, application_name=name, **brief))
            assert await server_pids(stack, f"{name}%", expect=0) == [], "a run of the check left connections open"
        return answers

    answers = asyncio.run(scenario())
    assert answers[0].startswith("PASS  8 connections per worker, 8 x 8 = 64 of 80 available")
    assert answers[1] == "not yet: pool_size is the text '5'; write the number without quotes"
    assert answers[2].startswith("PASS") and answers[3].startswith("PASS")
    assert not default_limits._trial_engines
