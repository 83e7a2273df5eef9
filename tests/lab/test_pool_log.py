"""pool_log() against a real engine on the course stack."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from support.lab.pool_log import POOL_LOGGER, echo_handlers, pool_log, remove_echo_handlers, shorten
from support.stack import get_stack

pytestmark = pytest.mark.stack  # needs PostgreSQL and PgBouncer


@pytest.fixture(scope="module")
def stack():
    return get_stack()


async def one_round(engine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def test_collects_checkout_and_return_and_restores_the_logger(stack, capsys):
    logger = logging.getLogger(POOL_LOGGER)
    before = (logger.level, logger.propagate, list(logger.handlers))

    async def scenario():
        engine = create_async_engine(stack.database_url)
        try:
            with pool_log(shorten_addresses=True) as lines:
                await one_round(engine)
            await one_round(engine)  # after the block: not collected
        finally:
            await engine.dispose()
        return lines

    lines = asyncio.run(scenario())
    assert "Connection <conn> checked out from pool" in lines
    assert "Connection <conn> being returned to pool" in lines
    assert lines.count("Connection <conn> checked out from pool") == 1
    assert not any("0x" in line for line in lines)
    assert (logger.level, logger.propagate, list(logger.handlers)) == before
    captured = capsys.readouterr()
    assert "checked out" not in captured.out + captured.err


def test_level_and_format(stack):
    async def scenario():
        engine = create_async_engine(stack.database_url)
        with pool_log("INFO", fmt="%(levelname)s %(message)s") as lines:
            await one_round(engine)
            await engine.dispose()
        return lines

    lines = asyncio.run(scenario())
    assert lines and all(line.startswith("INFO ") for line in lines)
    assert any("Pool disposed" in line for line in lines)
    with pytest.raises(ValueError, match="logging level"):
        with pool_log("LOUD"):
            pass


def test_mutes_echo_handlers_and_unmutes_them(stack, capsys):
    async def scenario():
        engine = create_async_engine(stack.database_url, echo_pool="debug")
        try:
            await one_round(engine)  # echo prints to stdout
            printed = capsys.readouterr().out
            with pool_log(shorten_addresses=True) as lines:
                await one_round(engine)
                await engine.dispose()  # a new pool: must not add a second stdout handler
                await one_round(engine)
            inside = capsys.readouterr().out
            await one_round(engine)
            printed_again = capsys.readouterr().out
        finally:
            await engine.dispose()
        return printed, inside, printed_again, lines

    try:
        printed, inside, printed_again, lines = asyncio.run(scenario())
        assert "checked out from pool" in printed
        assert inside == ""
        assert lines.count("Connection <conn> checked out from pool") == 2
        assert [len(handlers) for handlers in echo_handlers().values()] == [1]
        assert printed_again.count("checked out from pool") == 1, "unmuted after the block"
    finally:
        assert remove_echo_handlers() >= 1
    assert echo_handlers() == {}


def test_shorten():
    line = "Connection <AdaptedConnection <asyncpg.connection.Connection object at 0x7f00ab>> checked out"
    assert shorten(line) == "Connection <conn> checked out"
    assert shorten("at 0xDEAD") == "at 0x…"
