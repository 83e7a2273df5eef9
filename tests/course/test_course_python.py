"""`./course` chooses a Python that can install requirements.txt, or says how to get one.

Each test runs the real script with a PATH of stand-ins: fake interpreters
that report a version, and empty `apt-get` / `brew` files that tell the
script which system it is on (they are never run: the script stops before).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.course_cli import ROOT

COURSE = ROOT / "course"
# What the script needs from the system besides the stand-ins.
_TOOLS = ("bash", "dirname", "id", "uname", "awk", "cat", "cut", "sed", "env")


def _fake_python(path: Path, version: tuple[int, int, int]) -> None:
    """An interpreter that runs the script's own checks while claiming to be `version`."""
    path.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.version_info = {version!r}\n"
        "if sys.argv[1:2] == ['-c']:\n"
        "    exec(sys.argv[2])\n"
    )
    path.chmod(0o755)


def _broken_shim(path: Path) -> None:
    """Like a pyenv shim for a version that is not selected: on PATH, but fails."""
    path.write_text('#!/bin/sh\necho "pyenv: $(basename $0): command not found" >&2\nexit 127\n')
    path.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    for tool in _TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run ./course"
        (directory / tool).symlink_to(found)
    return directory


def _run_course(bin_dir: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    environment = {"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/"), **env}
    started = time.monotonic()
    # `down` needs only a Python: the shortest way to reach the choice.
    done = subprocess.run(
        ["bash", str(COURSE), *args], env=environment, capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    return done, time.monotonic() - started


def test_too_old_python_on_an_apt_system_stops_with_the_apt_command(bin_dir: Path):
    _fake_python(bin_dir / "python3", (3, 9, 6))
    (bin_dir / "apt-get").write_text("")
    (bin_dir / "apt-get").chmod(0o755)
    done, seconds = _run_course(bin_dir, "down")
    assert done.returncode != 0
    assert "found python3 3.9.6" in done.stderr, done.stderr
    assert "apt-get install -y python3 python3-venv" in done.stderr, done.stderr
    assert seconds < 5


def test_too_old_python_on_macos_stops_with_the_brew_command(bin_dir: Path):
    _fake_python(bin_dir / "python3", (3, 9, 6))
    (bin_dir / "brew").write_text("")
    (bin_dir / "brew").chmod(0o755)
    done, seconds = _run_course(bin_dir, "down")
    assert done.returncode != 0
    assert "brew install python@3.13" in done.stderr, done.stderr
    assert seconds < 5


def test_no_python_at_all_is_named(bin_dir: Path):
    done, _ = _run_course(bin_dir, "down")
    assert done.returncode != 0
    assert "found no python3 at all" in done.stderr, done.stderr


def test_an_explicit_python_that_is_too_old_is_refused(bin_dir: Path):
    _fake_python(bin_dir / "old", (3, 10, 12))
    done, _ = _run_course(bin_dir, "down", PYTHON=str(bin_dir / "old"))
    assert done.returncode != 0
    assert "is not a Python 3.11 or newer (it is 3.10.12)" in done.stderr, done.stderr


def test_a_newer_versioned_python_wins_over_an_old_python3_and_broken_shims(bin_dir: Path, tmp_path: Path):
    """python3 is Apple's 3.9; python3.13 is a stale shim; python3.12 is real: 3.12 is used."""
    _fake_python(bin_dir / "python3", (3, 9, 6))
    _broken_shim(bin_dir / "python3.13")
    chosen = bin_dir / "python3.12"
    # A stand-in that records being chosen: `down` runs "$PYTHON -m support down".
    marker = tmp_path / "chosen"
    chosen.write_text(f'#!/bin/sh\ncase "$1" in -c) exit 0 ;; -m) echo "$2 $3" > {marker} ;; esac\n')
    chosen.chmod(0o755)
    done, _ = _run_course(bin_dir, "down")
    assert done.returncode == 0, done.stderr
    assert marker.read_text().strip() == "support down"


def test_help_lists_every_command():
    """Every branch of the script's `case` is named in its help text."""
    text = COURSE.read_text()
    branches = set(re.findall(r"^  ([a-z]+)\)", text, flags=re.M))
    assert {"lab", "test", "status", "freeze"} <= branches
    shown = subprocess.run(["bash", str(COURSE), "help"], capture_output=True, text=True, timeout=30).stdout
    listed = set(re.findall(r"^  \./course ([a-z]+)", shown, flags=re.M))
    assert branches == listed, (
        f"in the case but not in the help: {branches - listed}; the other way: {listed - branches}"
    )
