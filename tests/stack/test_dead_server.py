"""A server that dies under a notebook is reported within seconds, and get_stack() replaces the stack."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import asyncpg
import psycopg
import pytest

import support.stack.attach as stack_module
from support.stack import defaults, get_stack, start_private_stack
from support.stack.processes import alive

pytestmark = pytest.mark.stack  # needs PostgreSQL and PgBouncer

REPORT_DEADLINE = 10.0
#: No cell may wait longer than this on a dead server (issue: 30 s; we aim well below).
WAIT_LIMIT = 12.0


def _wait_for_problem(stack, deadline: float = REPORT_DEADLINE) -> tuple[str, float]:
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        problem = stack.problem()
        if problem is not None:
            return problem, time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"no problem reported within {deadline} s")


def _wait_for_spare(stack, deadline: float = 30.0) -> None:
    """Let the keeper prepare the next data directory, as it does in a kernel that has run a while."""
    base = Path(stack.directory).parent
    started = time.monotonic()
    while not list(base.glob("spare-*.trust")) and time.monotonic() - started < deadline:
        time.sleep(0.1)


@pytest.fixture
def fresh_shared_stack(monkeypatch, own_work_dir):
    """get_stack() as in a fresh kernel: no COURSE_* variables, no stack yet."""
    for name in defaults.ATTACH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(stack_module, "_shared", None)
    yield
    if stack_module._shared is not None:
        stack_module._shared.stop()


@pytest.mark.parametrize("victim, name", [(0, "PostgreSQL"), (1, "PgBouncer")])
def test_a_killed_server_is_reported_and_get_stack_starts_a_working_one(fresh_shared_stack, capsys, victim, name):
    first = get_stack()
    _wait_for_spare(first)
    os.kill(first.server_pids[victim], signal.SIGKILL)
    problem, took = _wait_for_problem(first)
    assert problem.startswith(f"{name} of this stack exited (killed by SIGKILL)"), problem
    assert took < REPORT_DEADLINE
    # the keeper ended the whole stack: no half-stack lingers with a port open
    assert not any(alive(pid) for pid in (first.keeper_pid, *first.server_pids))
    assert not os.path.exists(first.directory)

    started = time.monotonic()
    second = get_stack()
    replaced_in = time.monotonic() - started
    printed = capsys.readouterr().out
    assert f"{name} of this stack exited" in printed and "a new stack was started" in printed, printed
    assert second is not first and second.database_url != first.database_url
    with psycopg.connect(second.pgbouncer_dsn, connect_timeout=3) as conn:
        assert conn.execute("SELECT 1").fetchone()[0] == 1
    assert get_stack() is second  # a healthy stack is kept
    print(f"\n{name} killed: reported after {took:.2f} s, new stack in {replaced_in:.2f} s ({second.data_dir_from})")


def test_a_killed_keeper_takes_its_servers_and_is_replaced(fresh_shared_stack, capsys):
    first = get_stack()
    os.kill(first.keeper_pid, signal.SIGKILL)
    problem, _ = _wait_for_problem(first)
    assert "keeper of this stack was killed (SIGKILL)" in problem
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in first.server_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in first.server_pids)
    second = get_stack()
    assert "a new stack was started" in capsys.readouterr().out
    with psycopg.connect(second.database_dsn, connect_timeout=3) as conn:
        assert conn.execute("SELECT 1").fetchone()[0] == 1


def test_an_explicitly_stopped_stack_is_replaced_without_alarm(fresh_shared_stack, capsys):
    first = get_stack()
    first.stop()
    assert first.problem() is None
    second = get_stack()
    assert second is not first and "exited" not in capsys.readouterr().out


def test_clients_of_a_dead_server_get_an_error_within_seconds():
    """Through PgBouncer and directly, with asyncpg as the notebooks use it: an error, never a long wait."""
    stack = start_private_stack()
    try:
        os.kill(stack.server_pids[0], signal.SIGKILL)

        async def attempt(url: str) -> tuple[float, str]:
            started = time.monotonic()
            try:
                connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"), timeout=30)
                await connection.fetchval("SELECT 1")
                await connection.close()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                return time.monotonic() - started, type(exc).__name__
            return time.monotonic() - started, "answered"

        for url in (stack.pgbouncer_url, stack.database_url):
            took, outcome = asyncio.run(attempt(url))
            assert outcome != "answered" and took < WAIT_LIMIT, (url, took, outcome)
    finally:
        stack.stop()


def test_the_private_pgbouncer_gives_up_waiting_after_ten_seconds():
    stack = start_private_stack()
    try:
        with psycopg.connect(stack.admin_dsn, connect_timeout=3, autocommit=True) as conn:
            config = {row[0]: row[1] for row in conn.execute("SHOW CONFIG").fetchall()}
        assert config["query_wait_timeout"] == "10"
    finally:
        stack.stop()
