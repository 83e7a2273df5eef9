"""Integration tests of the private stack against real PostgreSQL and PgBouncer."""

from __future__ import annotations

import json
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from support.stack import PrivateStack, start_private_stack
from tests.kernels import kernel

pytestmark = pytest.mark.stack  # needs PostgreSQL and PgBouncer

CLEANUP_DEADLINE = 5.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is gone for every practical purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait_until_gone(pids, directory: str, deadline: float = CLEANUP_DEADLINE) -> float:
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        if not any(_pid_alive(pid) for pid in pids) and not os.path.exists(directory):
            return time.monotonic() - started
        time.sleep(0.05)
    alive = [pid for pid in pids if _pid_alive(pid)]
    raise AssertionError(f"after {deadline} s: alive {alive}, directory exists: {os.path.exists(directory)}")


def _answers(stack) -> tuple[str, str, list[str]]:
    with psycopg.connect(stack.database_dsn, connect_timeout=3) as conn:
        user = conn.execute("SELECT current_user").fetchone()[0]
        superuser = conn.execute("SHOW is_superuser").fetchone()[0]
    with psycopg.connect(stack.pgbouncer_dsn, connect_timeout=3) as conn:
        assert conn.execute("SELECT 41 + 1").fetchone()[0] == 42
    with psycopg.connect(stack.admin_dsn, connect_timeout=3, autocommit=True) as conn:
        databases = [row[0] for row in conn.execute("SHOW POOLS").fetchall()]
    return user, superuser, databases


def test_private_stack_answers_and_stop_removes_everything():
    stack = start_private_stack()
    try:
        user, superuser, pools = _answers(stack)
        assert (user, superuser) == ("course", "on")
        assert "course" in pools
        assert Path(stack.directory).is_dir()
    finally:
        stack.stop()
    _wait_until_gone([stack.keeper_pid, *stack.server_pids], stack.directory, deadline=1.0)


def test_settings_reach_the_servers():
    stack = start_private_stack(
        postgres={"max_connections": 17}, pgbouncer={"default_pool_size": 3, "query_wait_timeout": 7}
    )
    try:
        with psycopg.connect(stack.database_dsn, connect_timeout=3) as conn:
            assert conn.execute("SHOW max_connections").fetchone()[0] == "17"
        with psycopg.connect(stack.admin_dsn, connect_timeout=3, autocommit=True) as conn:
            config = {row[0]: row[1] for row in conn.execute("SHOW CONFIG").fetchall()}
        assert config["default_pool_size"] == "3"
        assert config["query_wait_timeout"] == "7"
        assert config["pool_mode"] == "transaction"
        assert config["auth_type"] == "scram-sha-256"
    finally:
        stack.stop()


def test_password_is_random_and_required():
    first, second = start_private_stack(), start_private_stack()
    try:
        assert first.database_url != second.database_url
        wrong = first.database_dsn.replace(first.database_dsn.split(":")[2].split("@")[0], "wrong")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(wrong, connect_timeout=3)
    finally:
        first.stop()
        second.stop()


def test_taken_pgbouncer_port_is_retried_on_another():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        stack = start_private_stack(pgbouncer_port=taken)
        try:
            assert f":{taken}/" not in stack.pgbouncer_url
            assert _answers(stack)[0] == "course"
            logs = sorted(p.name for p in Path(stack.directory).glob("pgbouncer-*.log"))
            assert f"pgbouncer-{taken}.log" in logs  # the first try really met the taken port
            assert "cannot listen" in (Path(stack.directory) / f"pgbouncer-{taken}.log").read_text()
        finally:
            stack.stop()


def test_kernel_killed_with_its_process_group_leaves_nothing():
    with kernel() as k:
        info = json.loads(
            k.run(
                "import json\nfrom support.stack import get_stack\ns = get_stack()\n"
                "print(json.dumps({'dir': s.directory, 'pids': [s.keeper_pid, *s.server_pids]}))"
            )
        )
        assert Path(info["dir"]).is_dir()
        k.kill_process_group()
        took = _wait_until_gone(info["pids"], info["dir"])
    assert took < CLEANUP_DEADLINE


def test_kernel_shutdown_leaves_nothing():
    with kernel() as k:
        info = json.loads(
            k.run(
                "import json\nfrom support.stack import get_stack\ns = get_stack()\n"
                "print(json.dumps({'dir': s.directory, 'pids': [s.keeper_pid, *s.server_pids]}))"
            )
        )
        k.manager.shutdown_kernel(now=False)
        _wait_until_gone(info["pids"], info["dir"])


def test_interrupting_the_kernel_keeps_the_stack():
    with kernel() as k:
        k.run("from support.stack import get_stack\nimport psycopg\ns = get_stack()")
        msg_id = k.start_cell("import time\ntime.sleep(30)")
        time.sleep(1.0)
        k.manager.interrupt_kernel()
        reply = k.reply_to(msg_id, timeout=10)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        printed = k.run(
            "with psycopg.connect(s.pgbouncer_dsn, connect_timeout=3) as c:\n"
            "    print(c.execute('SELECT 7 * 6').fetchone()[0])\n"
            "print(get_stack() is s)"
        )
        assert printed.split() == ["42", "True"]


def test_four_kernels_at_once_get_their_own_working_stacks():
    def one_kernel(_):
        with kernel() as k:
            return json.loads(
                k.run(
                    "import json, psycopg\nfrom support.stack import get_stack\ns = get_stack()\n"
                    "with psycopg.connect(s.pgbouncer_dsn, connect_timeout=3) as c:\n"
                    "    answer = c.execute('SELECT 1').fetchone()[0]\n"
                    "print(json.dumps({'dir': s.directory, 'url': s.pgbouncer_url, 'answer': answer}))",
                    timeout=90,
                )
            )

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one_kernel, range(4)))
    assert [r["answer"] for r in results] == [1, 1, 1, 1]
    assert len({r["dir"] for r in results}) == 4
    assert len({r["url"] for r in results}) == 4


def test_stop_is_idempotent_and_reports_not_running():
    stack = start_private_stack()
    assert isinstance(stack, PrivateStack) and stack.running
    stack.stop()
    stack.stop()
    assert not stack.running


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the servers to another account")
def test_a_private_tmpdir_does_not_lock_the_servers_out(monkeypatch, tmp_path):
    private = tmp_path / "private-tmp"
    private.mkdir(mode=0o700)
    monkeypatch.setenv("TMPDIR", str(private))
    stack = start_private_stack()
    try:
        assert _answers(stack)[0] == "course"
        assert not stack.directory.startswith(str(private))
    finally:
        stack.stop()


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP listener on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
def test_servers_listen_on_loopback_only():
    stack = start_private_stack()
    try:
        for url in (stack.database_url, stack.pgbouncer_url):
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            assert _listening_addresses(port) == {"0100007F"}, f"port {port} listens beyond 127.0.0.1"
    finally:
        stack.stop()
