"""Notebook 11: the idle firewall, the ping counter, terminating our own connections, and the exercise's check."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from support.lessons import stale_connections_exercise
from support.lessons.stale_connections import IdleFirewall, QueryCounter, raised, terminate_backends
from support.lessons.stale_connections_exercise import check_firewall_options, options_problems
from tests.async_bodies import run

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A TCP echo server on 127.0.0.1; yields a URL for it and a list of what happened on its side."""
    events: list[str] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        events.append("closed by the other side")
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"postgresql+asyncpg://someone:secret@127.0.0.1:{port}/db", events
    finally:
        server.close()


async def talk(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, data: bytes) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.read(1024), 2)


def test_the_firewall_relays_while_there_is_traffic_and_its_url_keeps_credentials_and_path():
    async def body():
        async with echo_server() as (url, _events):
            firewall = await IdleFirewall.start(url, idle_limit=0.3, name="test-relay")
            try:
                assert firewall.url == f"postgresql+asyncpg://someone:secret@127.0.0.1:{firewall.port}/db"
                reader, writer = await asyncio.open_connection("127.0.0.1", firewall.port)
                answers = []
                for n in range(5):  # 0.5 s in all, but never 0.3 s of silence
                    answers.append(await talk(writer, reader, f"ping {n}".encode()))
                    await asyncio.sleep(0.1)
                writer.close()
                assert answers == [f"ping {n}".encode() for n in range(5)]
                assert (firewall.connections, firewall.forgotten, firewall.resets) == (1, 0, 0)
            finally:
                await firewall.stop()

    run(body())


def test_a_silent_connection_is_forgotten_the_server_side_closed_and_the_next_packet_reset():
    async def body():
        async with echo_server() as (url, events):
            firewall = await IdleFirewall.start(url, idle_limit=0.2, name="test-forget")
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", firewall.port)
                assert await talk(writer, reader, b"hello") == b"hello"
                await asyncio.sleep(0.5)
                assert firewall.forgotten == 1 and firewall.open_connections == 0
                assert events == ["closed by the other side"], "the server saw the connection go"
                assert not writer.is_closing(), "the client is not told"
                with pytest.raises(ConnectionResetError):
                    await talk(writer, reader, b"still there?")
                assert firewall.resets == 1
            finally:
                await firewall.stop()

    run(body())


def test_a_close_from_the_server_reaches_the_client():
    async def body():
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"bye")
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        firewall = await IdleFirewall.start(f"postgresql://127.0.0.1:{port}/db", idle_limit=5, name="test-hangup")
        try:
            reader, _writer = await asyncio.open_connection("127.0.0.1", firewall.port)
            assert await asyncio.wait_for(reader.read(), 2) == b"bye"  # read() to EOF: the close came through
            assert firewall.forgotten == 0
        finally:
            await firewall.stop()
            server.close()

    run(body())


def test_a_url_without_a_port_means_postgresql_s_default_port():
    firewall = IdleFirewall("postgresql://someone@db.example/app", 1, "test-port")
    assert firewall._target == ("db.example", 5432)


def test_starting_a_firewall_again_under_its_name_stops_the_old_one_and_stop_is_idempotent():
    async def body():
        async with echo_server() as (url, _events):
            first = await IdleFirewall.start(url, idle_limit=1, name="test-rerun")
            old_port = first.port
            second = await IdleFirewall.start(url, idle_limit=1, name="test-rerun")
            try:
                assert "stopped" in repr(first)
                with pytest.raises(OSError):
                    await asyncio.open_connection("127.0.0.1", old_port)
                await first.stop()
                reader, writer = await asyncio.open_connection("127.0.0.1", second.port)
                assert await talk(writer, reader, b"x") == b"x"
                writer.close()
            finally:
                await second.stop()
                await second.stop()

    run(body())


@pytest.mark.parametrize(
    ("url", "limit", "words"),
    [
        ("postgresql://h:5432/db", 0, "above 0"),
        ("postgresql://h:5432/db", True, "above 0"),
        ("postgresql:///db", 1, "needs a host"),
    ],
)
def test_the_firewall_refuses_a_wrong_limit_or_a_url_without_a_host(url, limit, words):
    with pytest.raises(ValueError, match=words):
        IdleFirewall(url, limit, "test-wrong")


@pytest.mark.parametrize("pattern", ["", "%", "%-plain", "_b11"])
def test_terminate_backends_refuses_a_pattern_that_could_match_other_peoples_connections(pattern):
    with pytest.raises(ValueError, match="tag"):
        terminate_backends(None, pattern)  # type: ignore[arg-type]  # refused before any connection


def test_raised_keeps_the_exception_lines_of_a_chained_traceback():
    report = """Traceback (most recent call last):
  File "x.py", line 1, in <module>
asyncpg.exceptions._base.InterfaceError: connection is closed

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "y.py", line 2, in f
sqlalchemy.exc.InterfaceError: (sqlalchemy.dialects.postgresql.asyncpg.InterfaceError) connection is closed
HINT: a hint of the driver's, not an exception
[SQL: SELECT 1]

During handling of the above exception, another exception occurred:

ConnectionResetError: [Errno 104] Connection reset by peer"""
    assert raised(report) == [
        "asyncpg.exceptions._base.InterfaceError: connection is closed",
        "sqlalchemy.exc.InterfaceError: (sqlalchemy.dialects.postgresql.asyncpg.InterfaceError) connection is closed",
        "ConnectionResetError: [Errno 104] Connection reset by peer",
    ]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"pool_pre_ping": "True"}, "pool_pre_ping is True or False, got 'True' (str)"),
        ({"pool_pre_ping": 1}, "pool_pre_ping is True or False"),
        ({"pool_recycle": "300"}, "pool_recycle is a number of seconds, got '300' (str)"),
        ({"pool_recycle": float("nan")}, "pool_recycle is a number of seconds"),
        ({"pool_recyle": 1}, "did you mean 'pool_recycle'?"),
        ({"pre_ping": True}, "did you mean 'pool_pre_ping'?"),
        ({"connect_args": {}}, "is not an option of this exercise"),
        ("pool_pre_ping=True", "must be a dict"),
    ],
)
def test_wrong_options_are_answered_in_words(options, words):
    found = options_problems(options)
    assert found and any(words in problem for problem in found), found


def test_right_options_have_no_problems():
    for options in ({}, {"pool_pre_ping": True}, {"pool_recycle": 1.0}, {"pool_recycle": 300, "pool_size": 5}):
        assert options_problems(options) == []


FAILED = "DBAPIError: (sqlalchemy.dialects.postgresql.asyncpg.Error) connection was closed in the middle of operation"
RECYCLED = "Connection <conn> exceeded timeout; recycling"
PING_FAILED = "Disconnection detected on checkout, invalidating all pooled connections prior to current timestamp"
BY_POOL = "Connection <conn> invalidated due to pool invalidation; recycling"


@pytest.mark.parametrize(
    ("options", "outcomes", "lines", "start", "words"),
    [
        ({}, [FAILED, "ok", "ok"], [], "not yet: 1 of 3", "pool_pre_ping is off and pool_recycle is not set"),
        ({"pool_recycle": -1}, [FAILED, "ok", "ok"], [], "not yet", "pool_recycle=-1 means never"),
        ({"pool_recycle": 5}, [FAILED, "ok", "ok"], [], "not yet", "older than 5 s, and the firewall forgets"),
        ({"pool_recycle": 1.8}, ["ok"] * 3, [RECYCLED], "not yet: it survived this trial only", "below 1.5"),
        ({"pool_recycle": 1}, ["ok"] * 3, [RECYCLED] * 2, "PASS", "pool_recycle=1 replaced 2 connection(s)"),
        ({"pool_pre_ping": True}, ["ok"] * 3, [PING_FAILED, BY_POOL], "PASS", "replaced it and 1 older one(s)"),
        ({"pool_pre_ping": True, "pool_recycle": 1}, ["ok"] * 3, [RECYCLED] * 2, "PASS", "recycling came first"),
        ({"pool_recycle": 0}, ["ok"] * 3, ["Created new connection <conn>"] * 5, "PASS", "at a price"),
    ],
)
def test_the_verdict_names_the_setting_that_saved_or_failed_the_trial(options, outcomes, lines, start, words):
    verdict = stale_connections_exercise._verdict(options, 1.5, outcomes, lines)
    assert verdict.startswith(start) and words in verdict, verdict


@pytest.mark.stack
def test_terminate_backends_ends_only_the_matching_connections_and_the_pre_ping_is_counted():
    from support.lab.naming import named, notebook_tag
    from support.lab.server_activity import backends
    from support.stack import get_stack

    stack = get_stack()
    tag = notebook_tag("test-stale")

    async def body():
        doomed = create_async_engine(stack.database_url, connect_args=named(f"{tag}-doomed"))
        spared = create_async_engine(stack.database_url, connect_args=named(f"{tag}-spared"))
        pinged = create_async_engine(stack.database_url, pool_pre_ping=True, connect_args=named(f"{tag}-pinged"))
        counter = QueryCounter(pinged)
        try:
            for engine in (doomed, spared, pinged):
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            spared_before = await backends(stack, f"{tag}-spared")
            ended = terminate_backends(stack, f"{tag}-doomed")
            assert len(ended) == 1 and await backends(stack, f"{tag}-doomed") == []
            assert await backends(stack, f"{tag}-spared") == spared_before
            for _ in range(3):
                async with pinged.connect():
                    pass
            assert (await counter.totals())[";"] == 3
            assert await counter.pings() == 3
        finally:
            for engine in (doomed, spared, pinged):
                await engine.dispose()
        assert await backends(stack, f"{tag}%", expect=0) == []

    run(body())


@pytest.mark.stack
def test_the_check_runs_live_names_the_mistake_and_leaves_nothing_open_however_often_it_runs():
    from support.lab.naming import notebook_tag
    from support.lab.server_activity import backends
    from support.stack import get_stack

    stack = get_stack()
    name = notebook_tag("test-firewall")

    async def body():
        answers = []
        for options in ({}, {"pool_pre_ping": "yes"}, {"pool_pre_ping": True}, {"pool_recycle": 0.5}):
            answers.append(
                await check_firewall_options(
                    options, target_url=stack.database_url, idle_limit=0.8, application_name=name
                )
            )
            assert await backends(stack, f"{name}%", expect=0) == [], "a run of the check left connections open"
        return answers

    answers = run(body())
    assert answers[0].startswith("not yet: 1 of 3 queries after the quiet spell failed"), answers[0]
    assert "closed in the middle of operation" in answers[0]
    assert answers[1] == "not yet: pool_pre_ping is True or False, got 'yes' (str)"
    assert answers[2].startswith("PASS") and "pool_pre_ping found a dead connection" in answers[2], answers[2]
    assert answers[3].startswith("PASS") and "pool_recycle=0.5 replaced" in answers[3], answers[3]
    assert not stale_connections_exercise._trial
