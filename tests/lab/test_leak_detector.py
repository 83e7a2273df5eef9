"""LeakDetector against a real engine, a real FastAPI app and real HTTP."""

from __future__ import annotations

import asyncio
import inspect

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from support.lab.app_server import serve
from support.lab.leak_detector import LeakDetector, describe_place
from support.stack import get_stack

pytestmark = pytest.mark.stack  # needs PostgreSQL and PgBouncer


@pytest.fixture(scope="module")
def stack():
    return get_stack()


def line_of(function, needle: str) -> int:
    lines, first = inspect.getsourcelines(function)
    return first + next(i for i, line in enumerate(lines) if needle in line)


def test_names_the_line_of_a_leaking_endpoint(stack):
    engine = create_async_engine(stack.database_url, pool_size=2, max_overflow=0, pool_timeout=1)
    Session = async_sessionmaker(engine)
    kept = []
    app = FastAPI(title="leak-detector-test")

    @app.get("/leak")
    async def leak():
        session = Session()
        kept.append(session)
        return {"one": await session.scalar(text("SELECT 1"))}  # leaks

    @app.get("/clean")
    async def clean():
        async with Session() as session:
            return {"one": await session.scalar(text("SELECT 1"))}

    async def scenario():
        detector = LeakDetector(engine, threshold=0.2)
        served = await serve(app)
        try:
            async with httpx.AsyncClient(base_url=served.url, trust_env=False, timeout=5) as client:
                assert (await client.get("/clean")).status_code == 200
                assert (await client.get("/leak")).status_code == 200
            young = detector.report()
            await asyncio.sleep(0.3)
            old = detector.report()
            everything = detector.report(threshold=0)
            pid = await kept[0].scalar(text("SELECT pg_backend_pid()"))
        finally:
            for session in kept:
                await session.close()
            after_close = detector.report(threshold=0)
            detector.stop()
            await served.stop()
            await engine.dispose()
        return young, old, everything, pid, after_close

    young, old, everything, pid, after_close = asyncio.run(scenario())
    assert young == []
    assert len(old) == 1 and len(everything) == 1
    held = old[0]
    assert held.filename == __file__ and held.function == "leak"
    assert held.lineno == line_of(test_names_the_line_of_a_leaking_endpoint, "# leaks")
    assert "session.scalar" in held.code
    assert held.pid == pid
    assert held.age >= 0.3
    assert held.where == describe_place(__file__, held.lineno, "leak")
    assert held.as_row()["pid"] == pid
    assert after_close == []


def test_start_stop_and_context_manager(stack):
    async def scenario():
        engine = create_async_engine(stack.database_url)
        with LeakDetector(engine, threshold=0) as detector:
            conn = await engine.connect()
            await conn.execute(text("SELECT 1"))
            during = detector.checked_out
            detector.stop()
            stopped = detector.report()
            detector.start()
            conn2 = await engine.connect()
            restarted = detector.report()
            await conn.close()
            await conn2.close()
            back = detector.checked_out
        await engine.dispose()
        return during, stopped, restarted, back, detector.listening

    during, stopped, restarted, back, listening = asyncio.run(scenario())
    assert during == 1 and stopped == []
    assert len(restarted) == 1 and restarted[0].function == "scenario"
    assert back == 0 and listening is False
    with pytest.raises(ValueError):
        LeakDetector(create_async_engine(stack.database_url), threshold=-1)
