"""Every notebook in attach mode: against a stack started by `python -m support up`.

`python -m support up` starts the stack (as Binder and workshop machines
do); each notebook then runs under nbval with the COURSE_* variables set
and must start no server of its own (see tests/attached_notebooks.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.attached_notebooks import NOTEBOOK_IDS, NOTEBOOK_TIMEOUT, NOTEBOOKS, run_attached
from tests.course_cli import parse_exports, support_cli

pytestmark = pytest.mark.stack  # needs PostgreSQL and PgBouncer


@pytest.fixture(scope="module")
def attached_env():
    work = tempfile.mkdtemp(prefix="five-tables-attach-")
    os.chmod(work, 0o755)
    env = {**os.environ, "TMPDIR": work}
    up = support_cli("up", env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield parse_exports(up.stdout)
    finally:
        support_cli("down", env=env)
        left = list(Path(work).glob("five-tables-*/stack-*"))
        shutil.rmtree(work)
        assert not left, f"'support down' left {left}"


@pytest.mark.timeout(NOTEBOOK_TIMEOUT + 30)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_notebook_passes_attached_and_starts_no_server(notebook: Path, attached_env, own_work_dir):
    run_attached(notebook, attached_env, own_work_dir)
