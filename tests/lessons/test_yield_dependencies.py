"""Notebook 04's helpers, and the exercise check's diagnosis of each mistake.

No ``from __future__ import annotations`` here: FastAPI must resolve the annotations of the
local dependencies below at runtime, as it does in a notebook.
"""

import asyncio
import os
import warnings
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy import text
from sqlalchemy.exc import SAWarning
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from support.lab.naming import named
from support.lessons.yield_dependencies import (
    GC_MESSAGE,
    LookupRun,
    check_order_lookup,
    collect_quietly,
    diagnose,
    eventually,
    hold_times,
    session_dependencies,
)
from tests.async_bodies import run


def lookup_run(**changes) -> LookupRun:
    fields = dict(
        known_status=200,
        known_left=0,
        statuses={404: 40},
        left=0,
        checkouts=41,
        pool_timeouts=0,
        errors=[],
        terminated=0,
        dependencies=[],
    )
    return LookupRun(**{**fields, **changes})


async def yielding():
    yield "session"


async def returning():
    return "session"


def test_diagnose_names_each_mistake():
    by_hand = diagnose(lookup_run(statuses={404: 15, 500: 25}, left=15, pool_timeouts=25))
    assert by_hand.startswith("not yet") and "still opens its session itself" in by_hand and "25 request(s)" in by_hand
    returned = diagnose(lookup_run(known_left=1, left=15, terminated=16, dependencies=[returning]))
    assert "returning() returns the session instead of yielding it" in returned and "the 200 one too" in returned
    unclosed = diagnose(lookup_run(left=15, dependencies=[yielding]))
    assert "yielding() yields the session but does not close it" in unclosed
    elsewhere = diagnose(lookup_run(checkouts=0, dependencies=[yielding]))
    assert "another engine" in elsewhere
    errors = diagnose(lookup_run(statuses={500: 40}, errors=["...\nRuntimeError: boom"], dependencies=[yielding]))
    assert errors.startswith("not yet") and "RuntimeError: boom" in errors
    wrong_status = diagnose(lookup_run(statuses={200: 40}, dependencies=[yielding]))
    assert wrong_status.startswith("almost") and "404 every time" in wrong_status
    no_dependency = diagnose(lookup_run())
    assert no_dependency.startswith("almost") and "dependency with yield" in no_dependency
    assert diagnose(lookup_run(dependencies=[yielding])).startswith("well done")


def test_session_dependencies_finds_nested_dependencies():
    async def inner():
        yield 1

    async def outer(value: Annotated[int, Depends(inner)]):
        return value

    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def read(order_id: int, value: Annotated[int, Depends(outer)]):
        return {}

    assert session_dependencies(app, "/orders/{order_id}") == [outer, inner]
    assert session_dependencies(app, "/elsewhere") == []


class FakeRecorder:
    samples = [(0.0, 0), (1.0, 1), (1.5, 0), (2.0, 1), (2.25, 1), (2.5, 0)]


def test_hold_times_pairs_each_checkout_with_its_return():
    assert hold_times(FakeRecorder()) == [0.5, 0.5]  # type: ignore[arg-type]


def test_eventually_takes_sync_and_async_checks_and_gives_up():
    calls = []

    def count():
        calls.append(1)
        return len(calls) >= 3

    async def never():
        return None

    assert asyncio.run(eventually(count, timeout=2, interval=0.01)) is True and len(calls) == 3
    assert asyncio.run(eventually(never, timeout=0.05, interval=0.01)) is None


def test_collect_quietly_keeps_the_collectors_warnings_out_of_sight(capsys):
    with collect_quietly() as collected:
        warnings.warn(SAWarning(f"{GC_MESSAGE} <conn>, which will be terminated."), stacklevel=1)
    assert collected.terminated == 1
    assert capsys.readouterr().err == ""


@pytest.mark.stack
def test_check_finds_a_session_returned_from_async_with_and_cleans_up(capsys):
    from support.stack import get_stack

    stack = get_stack()
    name = f"test-yield-{os.getpid()}"

    async def scenario():
        engine = create_async_engine(
            stack.database_url, pool_size=2, max_overflow=1, pool_timeout=0.3, connect_args=named(name)
        )
        Session = async_sessionmaker(engine, expire_on_commit=False)

        async def get_session():
            async with Session() as session:
                return session  # the mistake: closed before the endpoint runs

        app = FastAPI(title="lookup")

        @app.get("/orders/{order_id}")
        async def read_order(order_id: int, session: Annotated[AsyncSession, Depends(get_session)]):
            found = await session.scalar(text("SELECT 1 WHERE :id = 1"), {"id": order_id})
            if found is None:
                raise HTTPException(status_code=404)
            return {"id": order_id}

        feedback = await check_order_lookup(app, engine, known_id=1, opened_by_hand=[])
        return feedback, engine.pool.checkedout()

    feedback, left = run(scenario(), timeout=60)
    assert "get_session() returns the session instead of yielding it" in feedback
    assert left == 0
    assert "SAWarning" not in capsys.readouterr().err
