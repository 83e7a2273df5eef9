"""Notebook 00's install check: is each package the version the course is tested with?

The check must work in the environment it is checking, so it uses the standard
library only: a missing or broken package is reported as a FIX line, never as
an ImportError before the first line is printed.
"""

from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import dataclass
from pathlib import Path

#: The packages whose behaviour the notebooks teach or rely on, checked in this order.
CHECKED = (
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
)
MIN_PYTHON = (3, 11)
REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"
_FIX_PACKAGES = "pip install -r requirements.txt (or run ./course lab)"


@dataclass(frozen=True)
class Check:
    """One line of the install check: what was checked, whether it passed, and the line to print."""

    name: str
    ok: bool
    line: str


def pinned_versions(requirements: Path = REQUIREMENTS) -> dict[str, str]:
    """``name==version`` pins of a requirements file, names lower-cased."""
    pins = {}
    for raw in requirements.read_text().splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()  # no comments, no environment markers
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def python_check(version: tuple[int, int, int] | None = None) -> Check:
    """The interpreter: 3.11 or newer."""
    version = version or (sys.version_info.major, sys.version_info.minor, sys.version_info.micro)
    shown = ".".join(map(str, version))
    if version[:2] >= MIN_PYTHON:
        return Check("python", True, f"PASS  Python {shown}")
    return Check("python", False, f"FIX   Python {shown}  -> the course needs Python 3.11 or newer")


def package_check(name: str, pinned: str | None, installed: str | None) -> Check:
    """One package against its pin."""
    if pinned is None:
        return Check(name, False, f"FIX   {name}: requirements.txt does not pin it  -> restore requirements.txt")
    if installed == pinned:
        return Check(name, True, f"PASS  {name} {installed}")
    found = installed or "not installed"
    return Check(name, False, f"FIX   {name}: {found}, the course is tested with {pinned}  -> {_FIX_PACKAGES}")


def install_checks(requirements: Path = REQUIREMENTS, names: tuple[str, ...] = CHECKED) -> list[Check]:
    """Python first, then each package in ``names`` against ``requirements``."""
    pins = pinned_versions(requirements)
    return [python_check()] + [package_check(name, pins.get(name), _installed(name)) for name in names]
