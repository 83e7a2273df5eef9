"""Notebook 13's capstone against a real stack: the unfixed service leaves the evidence of each defect,
the worked solution fixes all of them, the fix check copes with a broken attempt, nothing is left behind."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from support.lab.naming import notebook_tag
from support.lab.server_activity import backends
from support.lessons.capstone import Capstone, try_fixes, verdicts
from support.lessons.capstone.solution import FIXES
from support.stack import get_stack
from tests.async_bodies import run

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def stack():
    return get_stack()


def _all_fixes() -> tuple[dict, dict]:
    settings: dict = {}
    replace: dict = {}
    for _, more_settings, more_endpoints in FIXES:
        settings |= more_settings
        replace |= more_endpoints
    return settings, replace


def _schema_exists(stack, schema: str) -> bool:
    with psycopg.connect(stack.database_dsn, autocommit=True, connect_timeout=5) as conn:
        return bool(conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()[0])


def test_the_unfixed_service_shows_each_defect_and_the_solution_fixes_them(stack):
    tag = notebook_tag("nb13-test")

    async def body():
        capstone = await Capstone.open(stack, tag)
        try:
            before = await capstone.run(label="before")
            settings, replace = _all_fixes()
            after = await capstone.run(settings=settings, replace=replace, label="fixed")
            left = await backends(stack, capstone.service_name)
        finally:
            await capstone.close()
        return before, after, left, capstone.schema

    before, after, left_between_runs, schema = run(body(), timeout=90)

    assert before.timeouts > 0 and before.checked_out_after == 1
    assert [held.function for held in before.leaks] == ["get_order"]
    assert any(sample.function == "legacy_tax_cents" for sample in before.loop.stalls)
    assert before.longest_statement("pg_sleep") >= 0.4, "the 30-day report ran on the server"
    assert before.idle_in_transaction("FROM orders WHERE id", after_load=True) == 1

    assert after.timeouts == 0 and after.checked_out_after == 0 and after.leaks == []
    assert not any(sample.function == "legacy_tax_cents" for sample in after.loop.stalls)
    calls, holding = after.calls_holding("/orders/{order_id}/eta")
    assert calls > 0 and holding == 0
    assert [r.status for r in after.results["/reports/sales?days=30"].records] == [503]
    lines = verdicts(before, after)
    assert [line.split(":")[0] for line in lines] == [
        "leak",
        "blocking call",
        "pool too small",
        "I/O in a transaction",
        "missing timeout",
    ]
    assert all(": FIXED" in line for line in lines if line.startswith(("leak", "I/O", "pool"))), lines

    assert left_between_runs == [], "each run ends its service's connections"
    assert asyncio.run(backends(stack, f"{tag}%", expect=0)) == []
    assert not _schema_exists(stack, schema)


def test_the_fix_check_answers_bad_input_without_a_run_and_survives_a_broken_endpoint(stack):
    tag = notebook_tag("nb13-fixcheck")

    async def broken_health() -> dict:
        return {"status": 1 / 0}

    async def unservable(lock: asyncio.Lock) -> dict:  # FastAPI cannot take a Lock from a request
        return {}

    async def body():
        capstone = await Capstone.open(stack, tag)
        try:
            before = await capstone.run(label="before")
            typo = await try_fixes(capstone, before, {"pool_sise": 8}, {})
            nothing = await try_fixes(capstone, before, {}, {})
            broken = await try_fixes(capstone, before, {}, {"/health": broken_health})
            refused = await try_fixes(capstone, before, {}, {"/health": unservable})
        finally:
            await capstone.close()
        return typo, nothing, broken, refused

    typo, nothing, broken, refused = run(body(), timeout=90)
    assert typo.after is None and "did you mean 'pool_size'?" in str(typo)
    assert nothing.after is None and str(nothing).startswith("nothing to try yet")
    assert broken.after is not None and "ZeroDivisionError" in str(broken)
    assert broken.after.statuses("/health")["500"] == len(broken.after.records("/health"))
    assert refused.after is None and "could not run with your fixes: FastAPIError" in str(refused)
    assert asyncio.run(backends(stack, f"{tag}%", expect=0)) == []
