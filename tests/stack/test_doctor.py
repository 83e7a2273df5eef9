"""./course doctor: one PASS or FIX line per check, a FIX that names the command, done in seconds."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.stack.doctor import (
    KEY_PACKAGES,
    Check,
    check_memory,
    check_python,
    install_checks,
    package_checks,
    read_pins,
)
from tests.course_cli import ROOT


def test_an_old_python_is_a_fix_with_the_install_commands() -> None:
    check = check_python((3, 9, 18))
    assert not check.ok and str(check).startswith("FIX ")
    assert "apt-get install -y python3 python3-venv" in check.detail and "brew install python@3.13" in check.detail
    assert check_python((3, 11, 2)).ok


def test_pins_are_read_without_comments_or_markers(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "# a comment\nSQLAlchemy[asyncio]==2.1.9\nsoupsieve==2.5 ; python_version < '3.12'  # marker\n"
        "httpx>=0.28\nasyncpg == 0.32.0\nnest_asyncio==1.6.0\n"
    )
    assert read_pins(requirements) == {
        "sqlalchemy": "2.1.9",
        "soupsieve": "2.5",
        "asyncpg": "0.32.0",
        "nest-asyncio": "1.6.0",
    }


def test_a_package_passes_only_at_its_pinned_version(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    real = importlib.metadata.version("httpx")
    requirements.write_text(f"httpx==0.0.1\npytest=={importlib.metadata.version('pytest')}\nnot-here==1.0\n")
    wrong, right, missing, unpinned = package_checks(requirements, names=["httpx", "pytest", "not-here", "tqdm"])
    assert not wrong.ok and str(wrong).startswith(f"FIX   httpx: {real}, the course is tested with 0.0.1")
    assert "pip install -r" in wrong.detail and "./course lab" in wrong.detail
    assert right.ok and str(right) == f"PASS  pytest: {importlib.metadata.version('pytest')}"
    assert not missing.ok and "not installed" in missing.detail
    assert not unpinned.ok and "does not pin" in unpinned.detail


def test_install_checks_put_python_first() -> None:
    checks = install_checks()
    assert checks[0].name == "Python" and [c.name for c in checks[1:]] == list(KEY_PACKAGES)


def test_every_checked_package_is_pinned_in_the_course_requirements() -> None:
    pins = read_pins(ROOT / "requirements.txt")
    assert all(name in pins for name in KEY_PACKAGES)


def test_low_memory_is_a_fix(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  2000000 kB\nMemFree:  100000 kB\nMemAvailable:  200000 kB\n")
    check = check_memory(meminfo)
    assert not check.ok and "195 MiB available" in check.detail
    assert Check("x", True, "y").__str__() == "PASS  x: y"


def doctor(*args: str, **env: str) -> tuple[int, str, float]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COURSE_")} | env
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "support.stack.doctor", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - started


@pytest.mark.stack
def test_doctor_passes_here_within_ten_seconds() -> None:
    code, out, seconds = doctor()
    assert code == 0, out
    assert "FIX" not in out and out.count("PASS") >= 7 + len(KEY_PACKAGES) - 1
    assert "private stack: started in" in out
    assert seconds <= 10


@pytest.mark.stack
@pytest.mark.parametrize(
    ("env", "args", "fix"),
    [
        ({"COURSE_PGBOUNCER": "/nonexistent/pgbouncer"}, [], "sudo apt-get install -y postgresql pgbouncer"),
        (
            {
                "COURSE_DATABASE_URL": "postgresql://course:x@127.0.0.1:1/course",
                "COURSE_PGBOUNCER_URL": "postgresql://course:x@127.0.0.1:1/course",
                "COURSE_PGBOUNCER_ADMIN_URL": "postgresql://course:x@127.0.0.1:1/pgbouncer",
            },
            [],
            "COURSE_DATABASE_URL",
        ),
        ({}, ["--requirements", "WRONG"], "pip install -r"),
    ],
    ids=["pgbouncer-missing", "course-unreachable", "wrong-pins"],
)
def test_each_broken_case_gets_a_fix_line_and_a_failing_exit(
    env: dict[str, str], args: list[str], fix: str, tmp_path: Path
) -> None:
    if args and args[-1] == "WRONG":
        wrong = tmp_path / "requirements.txt"
        wrong.write_text("fastapi==0.1.0\n")
        args = ["--requirements", str(wrong)]
    code, out, seconds = doctor(*args, **env)
    assert code == 1
    fixes = [line for line in out.splitlines() if line.startswith("FIX ")]
    assert fixes and any(fix in line for line in fixes), out
    assert "Traceback" not in out
    assert seconds <= 10
