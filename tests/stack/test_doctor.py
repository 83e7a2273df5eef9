"""./course doctor: one PASS or FIX line per check, a FIX that names the command, done in seconds."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.stack.doctor import Check, check_memory, check_packages, check_python, read_pins
from tests.course_cli import ROOT


def test_an_old_python_is_a_fix_with_the_install_commands() -> None:
    check = check_python((3, 9, 18))
    assert not check.ok and str(check).startswith("FIX ")
    assert "apt-get install -y python3 python3-venv" in check.detail and "brew install python@3.13" in check.detail
    assert check_python((3, 11, 2)).ok


def test_wrong_pins_name_the_package_and_the_command(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    real = importlib.metadata.version("httpx")
    requirements.write_text(f"# pins\nhttpx==0.0.1\nSQLAlchemy[asyncio]=={importlib.metadata.version('sqlalchemy')}\n")
    assert read_pins(requirements) == {"httpx": "0.0.1", "sqlalchemy": importlib.metadata.version("sqlalchemy")}
    check = check_packages(requirements, names=["httpx", "sqlalchemy"])
    assert not check.ok
    assert f"httpx {real} (pinned 0.0.1)" in check.detail and "sqlalchemy" not in check.detail
    assert "pip install -r" in check.detail and "./course lab" in check.detail


def test_a_missing_package_is_named(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("not-installed-anywhere==1.0\n")
    check = check_packages(requirements, names=["not-installed-anywhere"])
    assert not check.ok and "not-installed-anywhere missing (pinned 1.0)" in check.detail


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
    assert "FIX" not in out and out.count("PASS") >= 7
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
