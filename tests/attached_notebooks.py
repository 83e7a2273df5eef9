"""Running one notebook under nbval, attached to a stack through the COURSE_* variables.

Shared by the attach-mode tests: the notebook runs in a subprocess (its own
pytest, its own kernel) whose TMPDIR is a fresh directory. A private stack
would create its work directory there, so an empty TMPDIR afterwards shows
that the notebook started no server of its own. Notebooks whose demos need
server settings of their own (start_private_stack) are allowed that one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.course_cli import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NOTEBOOK_IDS = [n.stem for n in NOTEBOOKS]
#: Seconds one notebook may take; callers give their test a little more.
NOTEBOOK_TIMEOUT = 570


def run_attached(notebook: Path, exports: dict[str, str], work_dir: str) -> None:
    """Run `notebook` under nbval attached to `exports`; fail with the cause, or if it started a stack."""
    env = {**os.environ, **exports, "TMPDIR": work_dir}
    # -x: nbval stops at the first failing cell, so the message below shows the cause
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", str(notebook.relative_to(ROOT))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=NOTEBOOK_TIMEOUT,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
    if "start_private_stack(" not in notebook.read_text():
        assert not (Path(work_dir) / f"five-tables-{os.geteuid()}").exists(), "the notebook started a private stack"
