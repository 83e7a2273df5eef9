"""`./course` chooses a Python that can install requirements.txt, or says how to get one.

Each test runs a copy of the real script (in a folder of its own, so that
no step can touch the course's .venv) with a PATH of stand-ins: interpreters
that claim a version, and `apt-get` / `brew` files that tell the script
which system it is on.
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
#: What the script reads besides itself.
_COPIED = ("course", "requirements.txt", "pyproject.toml", "jupyter", "support")
# What the script needs from the system besides the stand-ins.
_TOOLS = ("bash", "dirname", "id", "uname", "awk", "cat", "cut", "sed", "env")


def _fake_python(path: Path, version: tuple[int, int, int], *, ensurepip_once: Path | None = None) -> None:
    """An interpreter that runs the script's own checks while claiming to be `version`.

    With `ensurepip_once`, `import ensurepip` fails until that file exists
    (as on Debian before python3-venv is installed), and `-m venv` fails.
    """
    lines = [f"#!{sys.executable}", "import os, sys", f"sys.version_info = {version!r}"]
    if ensurepip_once is not None:
        lines.append(f"if not os.path.exists({str(ensurepip_once)!r}): sys.modules['ensurepip'] = None")
    lines += [
        "if sys.argv[1:2] == ['-c']:",
        "    exec(sys.argv[2])",
        "elif sys.argv[1:3] == ['-m', 'venv']:",
        "    sys.exit('stand-in: no venv here')",
    ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)


def _broken_shim(path: Path) -> None:
    """Like a pyenv shim for a version that is not selected: on PATH, but fails."""
    path.write_text('#!/bin/sh\necho "pyenv: $(basename $0): command not found" >&2\nexit 127\n')
    path.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path, course_copy: Path) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    for tool in _TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run ./course"
        (directory / tool).symlink_to(found)
    return directory


@pytest.fixture
def course_copy(tmp_path: Path) -> Path:
    root = tmp_path / "course-copy"
    root.mkdir()
    for name in _COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    return root


def _run_course(bin_dir: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    environment = {"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/"), **env}
    course = bin_dir.parent / "course-copy" / "course"
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(course), *args], env=environment, capture_output=True, text=True, timeout=30, cwd=course.parent
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


@pytest.mark.parametrize("attached", [True, False], ids=["docker-route", "private-route"])
def test_python3_venv_is_installed_on_every_route(bin_dir: Path, tmp_path: Path, monkeypatch, attached: bool):
    """Without ensurepip, apt-get installs python3-venv, attached or not; servers only when not attached."""
    installed = tmp_path / "venv-installed"
    calls = tmp_path / "apt-calls"
    _fake_python(bin_dir / "python3", (3, 11, 2), ensurepip_once=installed)
    apt = bin_dir / "apt-get"
    apt.write_text(f'#!/bin/sh\necho "$*" >> {calls}\ncase "$*" in *install*) : > {installed} ;; esac\n')
    apt.chmod(0o755)
    sudo = bin_dir / "sudo"  # used when not root
    sudo.write_text('#!/bin/sh\nexec "$@"\n')
    sudo.chmod(0o755)
    extra = {"COURSE_DATABASE_URL": "postgresql://app:x@127.0.0.1:1/app"} if attached else {}
    # Stop right after the OS step: the stand-in python refuses to make the venv.
    done, _ = _run_course(bin_dir, "check", VIRTUAL_ENV="", **extra)
    assert "stand-in: no venv here" in done.stderr, done.stderr
    install = [line for line in calls.read_text().splitlines() if line.startswith("install")]
    assert len(install) == 1 and "python3-venv" in install[0].split(), install
    assert "python3.11-venv" in install[0].split(), install
    assert "postgresql" not in install[0].split(), "the servers are found here, or not needed when attached"
