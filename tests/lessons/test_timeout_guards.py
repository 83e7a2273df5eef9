"""Notebook 10's plumbing: the silent port, reading a private stack's logs, latency per status."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import asyncpg
import pytest

from support.lab.load import LoadResult, RequestRecord
from support.lessons.timeout_guards import latency_by_status, server_log, unresponsive_port
from support.stack import Stack


def test_unresponsive_port_accepts_and_stays_silent_until_a_connect_timeout():
    async def body() -> float:
        with unresponsive_port() as port:
            started = time.perf_counter()
            with pytest.raises(TimeoutError):
                await asyncpg.connect(host="127.0.0.1", port=port, user="x", database="x", password="x", timeout=0.3)
            return time.perf_counter() - started

    waited = asyncio.run(body())
    assert 0.25 <= waited < 3


def test_unresponsive_port_is_closed_afterwards():
    with unresponsive_port() as port:
        pass
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def private_stack_in(directory) -> Stack:
    url = "postgresql+asyncpg://course:pw@127.0.0.1:1/course"
    return Stack("private", url, url, "postgresql://course:pw@127.0.0.1:1/pgbouncer", directory=str(directory))


def test_server_log_finds_lines_and_drops_time_stamps(tmp_path):
    (tmp_path / "postgres.log").write_text(
        "2026-11-27 11:11:24.011 UTC [20281] LOG:  database system is ready to accept connections\n"
        "2026-11-27 11:11:24.702 UTC [20306] FATAL:  terminating connection due to idle-in-transaction timeout\n"
    )
    (tmp_path / "pgbouncer-6432.log").write_text(
        "2026-11-27 11:12:04.777 UTC [21588] LOG C-0x55: course/course@127.0.0.1:38160 closing because: "
        "idle transaction timeout (age=1s)\n"
    )
    stack = private_stack_in(tmp_path)
    assert server_log(stack, "postgres", "idle-in-transaction") == [
        "FATAL:  terminating connection due to idle-in-transaction timeout"
    ]
    assert server_log(stack, "pgbouncer", "closing because") == [
        "LOG C-0x55: course/course@127.0.0.1:38160 closing because: idle transaction timeout (age=1s)"
    ]
    assert server_log(stack, "postgres", "nothing like this") == []


def test_server_log_refuses_attached_stacks_and_unknown_servers(tmp_path):
    stack = private_stack_in(tmp_path)
    with pytest.raises(ValueError, match="'postgres' or 'pgbouncer'"):
        server_log(stack, "mysql", "x")
    stack.mode = "attached"
    with pytest.raises(ValueError, match="started elsewhere"):
        server_log(stack, "postgres", "x")


def test_latency_by_status_groups_each_run():
    records = [
        RequestRecord(0.0, 0.010, 503, None),
        RequestRecord(0.1, 0.002, 503, None),
        RequestRecord(0.2, 0.250, 200, None),
        RequestRecord(0.3, 30.0, None, "ReadTimeout"),
    ]
    table = latency_by_status({"capped": LoadResult("open loop", "http://x", records, 1.0)})
    assert table.column("status") == ["200", "503", "ReadTimeout"]
    assert table.column("requests") == [1, 2, 1]
    row_503 = table.rows[1]
    assert (row_503["min (ms)"], row_503["p50 (ms)"], row_503["max (ms)"]) == (2, 2, 10)
    assert set(table.column("run")) == {"capped"}


@pytest.mark.stack
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (dict(request=2.5, statement_timeout=1.0, pool_timeout=0.5), []),
        (dict(request=2.5, statement_timeout=0.3, pool_timeout=0.5), ["legitimate 0.5 s query failed"]),
        (dict(request=1.0, statement_timeout=1.5, pool_timeout=1.2), ["not cancelled by the server", "TimeoutError"]),
    ],
    ids=["fits", "statement-too-short", "request-fires-first"],
)
def test_probe_budget_on_a_real_server(budget, expected):
    from support.lessons.timeout_guards import probe_budget
    from support.stack import get_stack

    stack = get_stack()
    problems = asyncio.run(
        probe_budget(stack.database_url, slowest_query=0.5, application_name=f"test-probe-{os.getpid()}", **budget)
    )
    assert len(problems) == len(expected), problems
    for problem, words in zip(problems, expected):
        assert words in problem
