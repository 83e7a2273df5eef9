"""The preflight: is this machine ready for the course? One PASS or FIX line per check.

An instructor runs ``./course doctor`` on every machine the day before a
workshop; notebook 00 runs the same checks in the kernel. Each check answers
in a line that either says what was found (PASS) or says what to do (FIX),
so a room of learners can repair their machines without a traceback in
sight. Standard library only: it must diagnose a machine whose packages are
missing or wrong. The whole run takes a few seconds; starting and stopping a
private stack is the longest step.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .binaries import MissingBinariesError, find_binaries

ROOT = Path(__file__).resolve().parents[2]
PYTHON_FLOOR = (3, 11)
#: Memory and disk a learner's kernel and private stack need, with room to spare.
MIN_FREE_MEMORY = 1 << 30
MIN_FREE_DISK = 1 << 30
#: The packages whose versions change what the course shows (the rest follow them).
KEY_PACKAGES = (
    "sqlalchemy",
    "asyncpg",
    "fastapi",
    "starlette",
    "httpx",
    "uvicorn",
    "ipykernel",
    "nest-asyncio",
    "matplotlib",
    "psycopg",
    "tqdm",
    "nbval",
    "jupyterlab",
)
ALTERNATIVES = (
    "No PostgreSQL here? Attach to a stack started elsewhere: 'docker compose up -d --wait' and the COURSE_* "
    "lines in README.md, or launch the course on Binder (README, 'Binder')."
)


@dataclass(frozen=True)
class Check:
    """One line of the preflight: what was checked, whether it passed, and the finding or the fix."""

    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'PASS' if self.ok else 'FIX '}  {self.name}: {self.detail}"


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> Check:
    """The interpreter is new enough for the pinned packages."""
    shown = ".".join(map(str, version))
    if tuple(version[:2]) >= PYTHON_FLOOR:
        return Check("Python", True, f"{shown} at {sys.executable}")
    floor = ".".join(map(str, PYTHON_FLOOR))
    return Check(
        "Python",
        False,
        f"{shown} is older than {floor}: install a newer one (Debian/Ubuntu: sudo apt-get install -y python3 "
        "python3-venv; macOS: brew install python@3.13) and run ./course lab again",
    )


def read_pins(requirements: Path) -> dict[str, str]:
    """``name -> version`` from a requirements file of exact pins (names normalised as pip does)."""
    pins = {}
    for raw in requirements.read_text().splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()  # no comments, no environment markers
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_normalise(name.split("[")[0].strip())] = version.strip()
    return pins


def package_checks(
    requirements: Path = ROOT / "requirements.txt",
    installed: Callable[[str], str] = importlib.metadata.version,
    names: Iterable[str] = KEY_PACKAGES,
) -> list[Check]:
    """Each package that shapes what the course shows, against its pin: one line each."""
    pins = read_pins(requirements)
    fix = f"run ./course lab (it installs {requirements.name} into .venv), or: pip install -r {requirements}"
    checks = []
    for name in names:
        want = pins.get(_normalise(name))
        try:
            have: str | None = installed(name)
        except importlib.metadata.PackageNotFoundError:
            have = None
        if want is None:
            checks.append(Check(name, False, f"{requirements.name} does not pin it: restore {requirements.name}"))
        elif have == want:
            checks.append(Check(name, True, have))
        else:
            checks.append(Check(name, False, f"{have or 'not installed'}, the course is tested with {want}: {fix}"))
    return checks


def install_checks(requirements: Path = ROOT / "requirements.txt", names: Iterable[str] = KEY_PACKAGES) -> list[Check]:
    """Python first, then the packages: what notebook 00 prints before anything else runs."""
    return [check_python(), *package_checks(requirements, names=names)]


def check_servers() -> list[Check]:
    """Attached: the three COURSE_* addresses answer. Private: the programs exist and a stack starts and stops."""
    from .attach import attached_stack_from_env, check_reachable
    from .course_stack import StackError, start_private_stack

    try:
        attached = attached_stack_from_env()
    except StackError as exc:
        return [Check("attached stack", False, str(exc).splitlines()[0])]
    if attached is not None:
        try:
            check_reachable(attached)
        except ImportError:
            return [Check("attached stack", False, "psycopg is missing: run ./course lab (it installs the packages)")]
        except StackError as exc:
            return [Check("attached stack", False, str(exc).replace("\n", " "))]
        return [Check("attached stack", True, f"COURSE_* set; all three answer ({attached.database_name})")]
    try:
        binaries = find_binaries()
    except MissingBinariesError as exc:
        first = str(exc).splitlines()[0]
        return [
            Check(
                "PostgreSQL and PgBouncer",
                False,
                f"{first} Debian/Ubuntu: sudo apt-get install -y postgresql pgbouncer; "
                f"macOS: brew install postgresql@15 pgbouncer. {ALTERNATIVES}",
            )
        ]
    versions = f"{_version_of(binaries.postgres)}, {_version_of(binaries.pgbouncer)}"
    checks = [Check("PostgreSQL and PgBouncer", True, versions)]
    started = time.perf_counter()
    try:
        stack = start_private_stack()
    except (StackError, OSError) as exc:
        checks.append(Check("private stack", False, f"{str(exc).splitlines()[0]} {ALTERNATIVES}"))
        return checks
    try:
        up = time.perf_counter() - started
        stack.stop()
        if stack.directory and Path(stack.directory).exists():
            checks.append(
                Check("private stack", False, f"stopped, but {stack.directory} is still there: ./course clean")
            )
        else:
            checks.append(Check("private stack", True, f"started in {up:.2f} s and stopped, directory removed"))
    finally:
        stack.stop()
    return checks


def check_ports() -> Check:
    """Free ports on 127.0.0.1 can be taken (servers and apps bind there)."""
    try:
        with socket.socket() as one, socket.socket() as two:
            one.bind(("127.0.0.1", 0))
            two.bind(("127.0.0.1", 0))
            ports = (one.getsockname()[1], two.getsockname()[1])
    except OSError as exc:
        return Check("ports", False, f"cannot bind to 127.0.0.1 ({exc}): is the loopback interface up?")
    return Check("ports", True, f"127.0.0.1 hands out free ports (e.g. {ports[0]}, {ports[1]})")


def check_memory(meminfo: Path = Path("/proc/meminfo")) -> Check:
    """Enough memory for a kernel and its private stack (Linux reads /proc/meminfo; elsewhere it is not checked)."""
    if not meminfo.exists():
        return Check("memory", True, f"not measured on {platform.system()}; the course needs about 1 GiB free")
    fields = dict(re.findall(r"^(\w+):\s+(\d+) kB", meminfo.read_text(), re.M))
    available = int(fields.get("MemAvailable") or fields.get("MemFree") or 0) * 1024
    if available >= MIN_FREE_MEMORY:
        return Check("memory", True, f"{available / (1 << 30):.1f} GiB available")
    return Check("memory", False, f"only {available / (1 << 20):.0f} MiB available: close other programs")


def check_disk(places: Iterable[Path] = (ROOT, Path(os.environ.get("TMPDIR", "/tmp")))) -> Check:
    """Enough free disk for the virtualenv and the stacks' data directories."""
    lows = []
    for place in places:
        free = shutil.disk_usage(place).free
        if free < MIN_FREE_DISK:
            lows.append(f"{place} has {free / (1 << 20):.0f} MiB free")
    if lows:
        return Check("disk", False, "; ".join(lows) + ": free at least 1 GiB")
    return Check("disk", True, "at least 1 GiB free for .venv and the temp folder")


def run_all(requirements: Path = ROOT / "requirements.txt") -> list[Check]:
    """Every check, in the order a learner would fix them."""
    checks = install_checks(requirements)
    checks += check_servers()
    checks += [check_ports(), check_memory(), check_disk()]
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./course doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", type=Path, default=ROOT / "requirements.txt", help="the pins to compare with")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    checks = run_all(args.requirements)
    for check in checks:
        print(check)
    failed = sum(not c.ok for c in checks)
    print(f"{len(checks) - failed} passed, {failed} to fix, in {time.perf_counter() - started:.1f} s")
    return 1 if failed else 0


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _version_of(program: Path) -> str:
    try:
        out = subprocess.run([str(program), "--version"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return f"{program.name} (version unknown)"
    return out.strip().splitlines()[0] if out.strip() else program.name


if __name__ == "__main__":
    sys.exit(main())
