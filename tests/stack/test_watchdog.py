"""Servers go away with their keeper without Linux's parent-death signal (the macOS path), and `clean`.

COURSE_STACK_WITHOUT_PDEATHSIG=1 makes the keeper start its servers
without prctl(PR_SET_PDEATHSIG) and start the watchdog instead, exactly as
it does on macOS; these tests run that path here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from support.stack import start_private_stack
from support.stack.processes import alive, list_processes
from support.stack.server_process import ENV_WITHOUT_PDEATHSIG
from support.stack.work_dir import work_dir
from tests.course_cli import support_cli

pytestmark = pytest.mark.stack  # needs PostgreSQL and PgBouncer

ROOT = Path(__file__).resolve().parents[2]
GONE_DEADLINE = 5.0


def _wait_gone(pids, directory: str | None = None, deadline: float = GONE_DEADLINE) -> float:
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        if not any(alive(pid) for pid in pids) and not (directory and os.path.exists(directory)):
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"alive after {deadline} s: {[p for p in pids if alive(p)]}")


@pytest.fixture
def without_pdeathsig(monkeypatch, own_work_dir):
    monkeypatch.setenv(ENV_WITHOUT_PDEATHSIG, "1")


def _watchdog_pid(stack) -> int:
    found = [
        p.pid
        for p in list_processes()
        if "support.stack.watchdog" in p.argv and stack.directory in p.argv and p.ppid == stack.keeper_pid
    ]
    assert len(found) == 1, found
    return found[0]


def test_the_watchdog_stops_the_servers_when_the_keeper_is_killed(without_pdeathsig):
    stack = start_private_stack()
    watchdog = _watchdog_pid(stack)  # the macOS path really runs
    os.kill(stack.keeper_pid, signal.SIGKILL)
    took = _wait_gone([*stack.server_pids, watchdog], stack.directory)
    print(f"\nwatchdog: servers and folder gone {took:.2f} s after the keeper was killed")


def test_without_watchdog_and_keeper_the_servers_stay_until_clean(without_pdeathsig):
    """Proves the servers carry no parent-death signal here, and that `clean` removes the orphans."""
    bystander = start_private_stack()  # a live stack of the same user: clean must leave it alone
    stack = start_private_stack()
    try:
        os.kill(_watchdog_pid(stack), signal.SIGKILL)
        time.sleep(0.2)
        os.kill(stack.keeper_pid, signal.SIGKILL)
        time.sleep(1.0)
        assert all(alive(pid) for pid in stack.server_pids), "no parent-death signal: the servers outlive the keeper"
        clean = subprocess.run(["bash", "course", "clean"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert clean.returncode == 0, clean.stderr
        assert "orphaned server(s)" in clean.stdout and "Left alone: 1 stack" in clean.stdout, clean.stdout
        _wait_gone(stack.server_pids, stack.directory)
        with psycopg.connect(bystander.pgbouncer_dsn, connect_timeout=3) as conn:
            assert conn.execute("SELECT 1").fetchone()[0] == 1
    finally:
        bystander.stop()
        stack.stop()


def test_clean_touches_no_process_outside_its_own_work_dir(own_work_dir, tmp_path):
    """A process that names a path in another work directory (another user's, say) is left running."""
    base = work_dir()
    elsewhere = tmp_path / "five-tables-0" / "stack-abc" / "data"
    ours_dead = base / "stack-deadbeef"
    ours_dead.mkdir()
    (ours_dead / "keeper.json").write_text("{}")
    os.chmod(ours_dead / "keeper.json", 0o600)
    os.utime(ours_dead, (time.time() - 3600, time.time() - 3600))
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    stranger = subprocess.Popen([*sleeper, "-D", str(elsewhere)])
    try:
        cleaned = support_cli("clean")
        assert cleaned.returncode == 0, cleaned.stderr
        assert not ours_dead.exists() and "removed 1 folder" in cleaned.stdout, cleaned.stdout
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_keeper_whose_parent_dies_notices_without_end_of_file(own_work_dir):
    """The parent-pid check: here the kernel's pipe stays open elsewhere, so only the check can tell."""
    read_end, write_end = os.pipe()
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import json, subprocess, sys\n"
            "from support.stack.course_stack import read_keeper_reply, spawn_keeper\n"
            "from support.stack import defaults\n"
            f"k = spawn_keeper('parent-exits', defaults.POSTGRES_SETTINGS, defaults.PGBOUNCER_SETTINGS, None,"
            f" stdin={read_end})\n"
            "print(json.dumps(read_keeper_reply(k)), flush=True)\n"
            "import time; time.sleep(60)\n",
        ],
        cwd=ROOT,
        pass_fds=(read_end,),
        stdout=subprocess.PIPE,
        text=True,
    )
    os.close(read_end)
    try:
        assert launcher.stdout is not None
        reply = json.loads(launcher.stdout.readline())
        assert reply["ok"], reply
        pids = [reply["keeper_pid"], reply["postgres_pid"], reply["pgbouncer_pid"]]
        launcher.kill()
        launcher.wait()
        took = _wait_gone(pids, reply["directory"])  # (the keeper may stay a zombie if init does not reap)
        print(f"\nparent killed, pipe still open: everything gone after {took:.2f} s")
    finally:
        os.close(write_end)
        launcher.kill()


def test_ps_and_proc_list_the_same_processes():
    """The macOS branch (ps) against Linux's /proc, on this machine."""
    mine = os.getpid()
    from_proc = {p.pid: p for p in list_processes(use_proc=True)}
    from_ps = {p.pid: p for p in list_processes(use_proc=False)}
    assert from_ps[mine].uid == from_proc[mine].uid == os.geteuid()
    assert from_ps[mine].ppid == from_proc[mine].ppid
    assert from_ps[mine].argv[:2] == from_proc[mine].argv[:2]
    assert len(set(from_proc) & set(from_ps)) > 0.8 * len(from_proc)
