"""Attach mode through `python -m support up`, the way Binder and workshop machines start a stack.

`python -m support up` starts the stack; the setup check and the heaviest
classic notebook then run under nbval with the COURSE_* variables set and
must start no server of their own (see tests/attached_notebooks.py). Every
notebook runs attached in test_notebooks_attached_other_names.py, against a
stack with other names; this file proves the shared-stack route itself
without a third full pass over the course.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.attached_notebooks import NOTEBOOK_TIMEOUT, NOTEBOOKS, run_attached
from tests.course_cli import parse_exports, support_cli

THROUGH_THE_CLI = [n for n in NOTEBOOKS if n.name.startswith(("00_", "03_"))]

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
@pytest.mark.parametrize("notebook", THROUGH_THE_CLI, ids=[n.stem for n in THROUGH_THE_CLI])
def test_notebook_passes_attached_and_starts_no_server(notebook: Path, attached_env, own_work_dir):
    run_attached(notebook, attached_env, own_work_dir)
