"""Every notebook in attach mode: against a stack started by other means.

`python -m support up` starts the stack (as Binder and workshop machines
do); each notebook then runs under nbval with the COURSE_* variables set,
in a kernel whose TMPDIR is empty. A private stack would create its work
directory there, so an empty TMPDIR afterwards shows that the notebook
started no server of its own. Notebooks whose demos need server settings of
their own (start_private_stack) are allowed that one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.course_cli import ROOT, parse_exports, support_cli

pytestmark = pytest.mark.stack  # needs PostgreSQL and PgBouncer

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


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


@pytest.mark.timeout(600)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_passes_attached_and_starts_no_server(notebook: Path, attached_env, own_work_dir):
    env = {**os.environ, **attached_env, "TMPDIR": own_work_dir}
    # -x: nbval stops at the first failing cell, so the message below shows the cause
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", str(notebook.relative_to(ROOT))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=570,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
    if "start_private_stack(" not in notebook.read_text():
        assert not (Path(own_work_dir) / f"five-tables-{os.geteuid()}").exists(), "the notebook started a private stack"
