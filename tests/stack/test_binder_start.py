"""binder/start as a non-root user with the system Python, then attaching to it.

Binder runs binder/start as the notebook user before JupyterLab. Here it
runs as `nobody` from a world-readable copy of the repository, with the
machine's own /usr/bin/python3 (standard library only), and this test, as
another user, attaches to the stack it started.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from support.stack import defaults
from tests.course_cli import ROOT

SYSTEM_PYTHON = Path("/usr/bin/python3")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not SYSTEM_PYTHON.exists(),
    reason="needs root to switch to the 'nobody' account, and /usr/bin/python3",
)

pytestmark = pytest.mark.stack  # needs PostgreSQL and PgBouncer


def _as_nobody(argv: list[str], home: Path, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home)}
    nogroup = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
    return subprocess.run(
        ["setpriv", "--reuid=nobody", f"--regid={nogroup}", "--clear-groups", "--", *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_binder_start_as_nobody_exports_a_working_stack():
    nobody = pwd.getpwnam("nobody")
    home = Path(tempfile.mkdtemp(prefix="five-tables-binder-"))
    try:
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        os.chmod(home, 0o755)
        repo = home / "repo"
        shutil.copytree(ROOT / "support", repo / "support", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "binder", repo / "binder")
        subprocess.run(["chmod", "-R", "a+rX", str(repo)], check=True)

        started = _as_nobody([str(repo / "binder" / "start"), "/usr/bin/env"], home, cwd=home)
        assert started.returncode == 0, started.stderr
        exported = dict(re.findall(r"^(COURSE_\w+)=(.*)$", started.stdout, flags=re.M))
        assert sorted(exported) == sorted(defaults.ATTACH_VARIABLES), started.stderr
        try:
            with psycopg.connect(exported[defaults.ENV_PGBOUNCER_URL], connect_timeout=3) as conn:
                assert conn.execute("SELECT current_user").fetchone()[0] == defaults.ROLE
            with psycopg.connect(
                exported[defaults.ENV_PGBOUNCER_ADMIN_URL], connect_timeout=3, autocommit=True
            ) as conn:
                config = {row[0]: row[1] for row in conn.execute("SHOW CONFIG").fetchall()}
            assert config["pool_mode"] == "transaction"
            state = json.loads((home / f"five-tables-{nobody.pw_uid}" / "cli-stack.json").read_text())
            for pid in (state["keeper_pid"], state["postgres_pid"], state["pgbouncer_pid"]):
                uid = int(re.search(r"^Uid:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))
                assert uid == nobody.pw_uid
        finally:
            down = _as_nobody([str(SYSTEM_PYTHON), "-m", "support", "down"], home, cwd=repo)
            if "Stopped" not in down.stdout:  # never leave nobody's servers running
                subprocess.run(["pkill", "-TERM", "-u", "nobody", "-f", "support.stack.keeper"])
        assert "Stopped" in down.stdout, down.stdout + down.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)
