"""`python -m support up/status/down`: a stack that outlives the command."""

from __future__ import annotations

import os
import re
import time

import psycopg
import pytest

from support.stack import defaults
from tests.course_cli import parse_exports, support_cli

pytestmark = pytest.mark.stack  # needs PostgreSQL and PgBouncer


def test_up_status_down(own_work_dir):
    up = support_cli("up")
    assert up.returncode == 0, up.stdout + up.stderr
    exports = parse_exports(up.stdout)
    assert sorted(exports) == sorted(defaults.ATTACH_VARIABLES)
    try:
        # the stack outlives the command that started it
        with psycopg.connect(exports[defaults.ENV_PGBOUNCER_URL], connect_timeout=3) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == defaults.DATABASE
        again = support_cli("up")
        assert parse_exports(again.stdout) == exports  # a second `up` reuses it
        status = support_cli("status")
        assert status.returncode == 0 and "all three answer" in status.stdout
        assert "Stack: shared, started by './course up'" in status.stdout and "private" not in status.stdout
        assert exports[defaults.ENV_DATABASE_URL].split(":")[2].split("@")[0] not in status.stdout
    finally:
        down = support_cli("down")
    assert down.returncode == 0 and "Stopped" in down.stdout
    directory = re.search(r"removed (\S+)\.", down.stdout).group(1)
    deadline = time.monotonic() + 5
    while os.path.exists(directory) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(directory)
    assert support_cli("status").returncode == 1
    assert directory.startswith(own_work_dir)
