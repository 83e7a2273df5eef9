"""Two local users on one machine: neither can make the other's stack use a directory they prepared.

Run as root: the tests create an ordinary account (``useradd``) and run
the stack code as that account with the system Python (the stack code is
standard library only), the way a learner on a shared machine would.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from support.stack import StackError, start_private_stack

pytestmark = [
    pytest.mark.stack,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create and become a second user"),
    pytest.mark.skipif(shutil.which("runuser") is None, reason="needs runuser"),
]

ROOT = Path(__file__).resolve().parents[2]
LEARNER = "ftlearner"
SYSTEM_PYTHON = "/usr/bin/python3"

START = """
import json, sys
from support.stack import StackError, start_private_stack
try:
    stack = start_private_stack()
except StackError as exc:
    print(json.dumps({"error": str(exc)}), flush=True)
    sys.exit(0)
print(json.dumps({"url": stack.pgbouncer_dsn, "dir": stack.directory, "pids": [stack.keeper_pid, *stack.server_pids]}),
      flush=True)
sys.stdin.readline()
stack.stop()
"""


@pytest.fixture(scope="module")
def learner() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(LEARNER)
    except KeyError:
        subprocess.run(["useradd", "-m", LEARNER], check=True)
        return pwd.getpwnam(LEARNER)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temp folder like /tmp: everyone may write, the sticky bit protects each one's entries."""
    folder = Path(tempfile.mkdtemp(prefix="five-tables-shared-"))
    os.chmod(folder, 0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _as_learner(code: str, tmpdir: Path, *, stdin=subprocess.DEVNULL) -> subprocess.Popen:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} is missing")
    return subprocess.Popen(
        ["runuser", "-u", LEARNER, "--", "env", f"TMPDIR={tmpdir}", f"PYTHONPATH={ROOT}", SYSTEM_PYTHON, "-c", code],
        cwd=ROOT,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _learner_start(tmpdir: Path) -> dict:
    process = _as_learner(START, tmpdir)
    out, err = process.communicate(timeout=60)
    assert out.strip(), err
    return json.loads(out)


def test_a_learner_refuses_a_work_dir_another_user_made_first(learner, shared_tmp):
    planted = shared_tmp / f"five-tables-{learner.pw_uid}"
    planted.mkdir()
    os.chmod(planted, 0o777)
    template = planted / "template-pg15-r2"
    template.mkdir()
    (template / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
    reply = _learner_start(shared_tmp)
    assert "error" in reply, reply
    assert str(planted) in reply["error"] and "belongs to root (uid 0)" in reply["error"]
    assert "\n" not in reply["error"], "one readable line"
    assert sorted(p.name for p in planted.iterdir()) == ["template-pg15-r2"]  # nothing added or used
    assert [p.name for p in template.iterdir()] == ["pg_hba.conf"]


def test_a_learner_refuses_a_symlinked_work_dir_and_leaves_its_target_alone(learner, shared_tmp):
    target = shared_tmp / "attacker-target"
    target.mkdir()
    os.chmod(target, 0o777)
    (shared_tmp / f"five-tables-{learner.pw_uid}").symlink_to(target)
    reply = _learner_start(shared_tmp)
    assert "symbolic link" in reply.get("error", ""), reply
    assert list(target.iterdir()) == []


def test_a_learner_that_cannot_write_the_temp_folder_is_told_why(learner):
    folder = Path(tempfile.mkdtemp(prefix="five-tables-readonly-"))
    os.chmod(folder, 0o755)  # root's: the learner may enter but not write
    try:
        reply = _learner_start(folder)
    finally:
        shutil.rmtree(folder)
    assert "Cannot create the course's work directory" in reply.get("error", ""), reply
    assert "Permission denied" in reply["error"] and "TMPDIR" in reply["error"]


def test_root_refuses_a_work_dir_a_learner_made_first(learner, shared_tmp, monkeypatch):
    planted = shared_tmp / "five-tables-0"
    planted.mkdir(mode=0o755)
    os.chown(planted, learner.pw_uid, learner.pw_gid)
    monkeypatch.setenv("TMPDIR", str(shared_tmp))
    with pytest.raises(StackError) as caught:
        start_private_stack()
    assert f"belongs to {LEARNER}" in str(caught.value) and str(planted) in str(caught.value)
    assert list(planted.iterdir()) == []


def test_a_learner_gets_a_private_working_stack(learner, shared_tmp):
    """The non-root path end to end: a 0700 work directory, servers as the learner, gone after stop."""
    process = _as_learner(START, shared_tmp, stdin=subprocess.PIPE)
    try:
        assert process.stdout is not None and process.stdin is not None
        reply = json.loads(process.stdout.readline() or "{}")
        assert "url" in reply, (reply, process.stderr.read() if process.stderr else "")
        work = shared_tmp / f"five-tables-{learner.pw_uid}"
        info = work.lstat()
        assert (info.st_uid, oct(info.st_mode & 0o777)) == (learner.pw_uid, "0o700")
        with psycopg.connect(reply["url"], connect_timeout=3) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == "course"
        owners = {Path(f"/proc/{pid}").stat().st_uid for pid in reply["pids"]}
        assert owners == {learner.pw_uid}
        process.stdin.write("\n")
        process.stdin.flush()
        process.wait(timeout=30)
    finally:
        process.kill()
    deadline = time.monotonic() + 5
    while Path(reply["dir"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(reply["dir"]).exists()
