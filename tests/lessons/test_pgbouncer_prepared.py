"""Prepared statements through PgBouncer: the branch per version, the exercise feedback, and the real measurements."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from support.lessons import pgbouncer_exercise
from support.lessons import pgbouncer_prepared as prepared
from support.stack import get_stack

TAG = "nb06-test"
NAME = {"server_settings": {"application_name": f"{TAG}-exercise"}}
INSTALLED = prepared.which_branch("0.32.0", "PgBouncer 1.18.0", 0)


@pytest.mark.parametrize("text, expected", [
    ("0.32.0", (0, 32)), ("PgBouncer 1.18.0", (1, 18)), ("1.22.1-1", (1, 22)), ("0.30", (0, 30)), ("2", (2, 0)),
])  # fmt: skip
def test_version_tuple(text, expected):
    assert prepared.version_tuple(text) == expected


def test_branches():
    assert INSTALLED.asyncpg_unnamed_prepare and not INSTALLED.pgbouncer_tracks_prepared
    assert "statement_cache_size=0 is the setting that matters" in INSTALLED.explain()
    old = prepared.which_branch("0.30.0", "PgBouncer 1.18.0", 0)
    assert not old.asyncpg_unnamed_prepare and "prepared_statement_name_func" in old.explain()
    assert not prepared.which_branch("0.32.0", "PgBouncer 1.22.0", 0).pgbouncer_tracks_prepared  # setting off
    tracking = prepared.which_branch("0.29.0", "PgBouncer 1.24.1", 200)
    assert tracking.pgbouncer_tracks_prepared and "default driver settings" in tracking.explain()


def run(transactions=160, **errors) -> prepared.LoadErrors:
    return prepared.LoadErrors(transactions, Counter(errors), {k: RuntimeError(k) for k in errors})


def feedback(connect_args, load, left=0, branch=INSTALLED, problem="") -> str:
    return pgbouncer_exercise.exercise_feedback(connect_args, load, left, TAG, branch, problem)


def test_feedback_names_each_mistake():
    assert "set statement_cache_size=0" in feedback(NAME, run(InvalidSQLStatementNameError=120))
    named = {**NAME, "statement_cache_size": 0, "prepared_statement_name_func": str}
    assert "set prepared_statement_cache_size=0 too" in feedback(named, run(InvalidSQLStatementNameError=90))
    assert "'already exists'" in feedback(NAME, run(DuplicatePreparedStatementError=3))
    left = feedback({**NAME, "prepared_statement_cache_size": 0}, run(), left=80)
    assert left.startswith("not yet: no errors in this one process") and "left 80 named" in left
    assert feedback({"statement_cache_size": 0}, run()).startswith("almost: no errors, but the engines no longer")


def test_feedback_validates_input():
    assert "must be a dict" in feedback(None, None) and "must be a dict" in feedback("x", None)
    assert "whole number" in feedback({**NAME, "statement_cache_size": "0"}, None)
    assert "whole number" in feedback({**NAME, "prepared_statement_cache_size": -1}, None)
    typo = feedback({**NAME, "statment_cache_size": 0}, None, problem="TypeError: unexpected keyword")
    assert typo.startswith("not yet: the engines did not run (TypeError: unexpected keyword")


def test_feedback_accepts_what_works_on_each_branch():
    both = {**NAME, "statement_cache_size": 0, "prepared_statement_cache_size": 0}
    assert feedback(both, run()).startswith("well done: 0 of 160 failed")
    only_asyncpg = feedback({**NAME, "statement_cache_size": 0}, run())
    assert only_asyncpg.startswith("well done on the installed asyncpg") and "older than 0.31" in only_asyncpg
    tracking = prepared.which_branch("0.32.0", "PgBouncer 1.24.0", 200)
    assert feedback(NAME, run(), left=40, branch=tracking).startswith("well done for this PgBouncer")


# Against the real stack


def engines(stack, **connect_args):
    return [
        create_async_engine(stack.pgbouncer_url, pool_size=4, pool_timeout=10, connect_args=connect_args)
        for _ in range(2)
    ]


async def measure(stack, census, **connect_args):
    before = sum((await census.count()).values())
    made = engines(stack, **connect_args)
    try:
        load = await prepared.transactions_through(made, tasks=8, each=8)
    finally:
        for engine in made:
            await engine.dispose()
    return load, sum((await census.count()).values()) - before


@pytest.mark.stack
def test_settings_measured_on_the_installed_versions():
    stack = get_stack()
    branch = prepared.branch_of(stack)
    if branch.pgbouncer_tracks_prepared or not branch.asyncpg_unnamed_prepare:
        pytest.skip(f"this test expects asyncpg >= 0.31 behind a PgBouncer without tracking: {branch}")

    async def scenario():
        async with prepared.StatementCensus(stack) as census:
            await census.count(clear=True)
            defaults = await measure(stack, census)
            asyncpg_off = await measure(stack, census, statement_cache_size=0)
            sqlalchemy_off = await measure(stack, census, prepared_statement_cache_size=0)
            both = await measure(stack, census, statement_cache_size=0, prepared_statement_cache_size=0)
            await census.count(clear=True)
            return defaults, asyncpg_off, sqlalchemy_off, both

    (defaults, _), asyncpg_off, (sqlalchemy_off, left), both = asyncio.run(scenario())
    assert defaults.errors["InvalidSQLStatementNameError"] > 0
    assert asyncpg_off[0].failed == 0 and asyncpg_off[1] == 0
    assert sqlalchemy_off.failed == 0 and left > 0
    assert both[0].failed == 0 and both[1] == 0


@pytest.mark.stack
def test_a_second_process_and_the_exercise_check():
    stack = get_stack()
    branch = prepared.branch_of(stack)
    settings = {"both": {"statement_cache_size": 0, "prepared_statement_cache_size": 0}}
    second = prepared.in_second_process(stack.pgbouncer_url, settings)
    assert second["both"].failed == 0 and second["both"].transactions == 64
    good = {**NAME, **settings["both"]}
    assert asyncio.run(pgbouncer_exercise.check_exercise(stack, good, TAG, branch)).startswith("well done")
    bad = asyncio.run(pgbouncer_exercise.check_exercise(stack, {**NAME, "statment_cache_size": 0}, TAG, branch))
    assert "unexpected keyword argument 'statment_cache_size'" in bad
    nowhere = prepared.in_second_process("postgresql+asyncpg://nobody@127.0.0.1:1/none", {"x": {}})
    assert nowhere["x"].failed == 64 and "Error" in next(iter(nowhere["x"].errors)), "counted, not raised"
