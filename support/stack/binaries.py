"""Finding the PostgreSQL and PgBouncer programs a private stack needs.

Debian and Ubuntu keep the PostgreSQL server outside PATH
(/usr/lib/postgresql/N/bin) and PgBouncer in /usr/sbin, which a normal
user's PATH often lacks; Homebrew uses its own prefixes. When something is
missing the learner gets one message that names the package, the install
command and the docker compose route, instead of a FileNotFoundError.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

#: Set this to a directory holding initdb and postgres to pick a version.
ENV_POSTGRES_BINDIR = "COURSE_POSTGRES_BINDIR"
#: Set this to the pgbouncer program to use.
ENV_PGBOUNCER = "COURSE_PGBOUNCER"

_POSTGRES_BINDIR_PATTERNS = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # RHEL, Fedora (PGDG)
    "/opt/homebrew/opt/postgresql@*/bin",  # macOS, Apple silicon
    "/usr/local/opt/postgresql@*/bin",  # macOS, Intel
)
_PGBOUNCER_PLACES = (
    "/usr/sbin/pgbouncer",
    "/usr/local/sbin/pgbouncer",
    "/opt/homebrew/bin/pgbouncer",
    "/usr/local/bin/pgbouncer",
)

INSTALL_HINT = """\
Install them with your package manager, then restart the kernel:
  Debian/Ubuntu:  sudo apt-get install -y postgresql pgbouncer
  macOS:          brew install postgresql@15 pgbouncer
Or run the stack in Docker and attach the notebooks to it:
  docker compose up -d      (then export the COURSE_* lines printed in README.md)
The README's commands ('./course lab', './course test') install them for you on Debian/Ubuntu."""


class MissingBinariesError(RuntimeError):
    """PostgreSQL or PgBouncer is not installed where we can find it."""


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the programs the private stack runs."""

    initdb: Path
    postgres: Path
    psql: Path
    pgbouncer: Path


def _version_key(directory: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", directory)) or (0,)


def _postgres_bindir_candidates() -> list[Path]:
    chosen = os.environ.get(ENV_POSTGRES_BINDIR)
    if chosen:
        return [Path(chosen)]
    candidates: list[Path] = []
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for pattern in _POSTGRES_BINDIR_PATTERNS:
        candidates.extend(Path(d) for d in sorted(glob.glob(pattern), key=_version_key, reverse=True))
    return candidates


def _find_postgres_bindir() -> Path | None:
    for directory in _postgres_bindir_candidates():
        if all(os.access(directory / name, os.X_OK) for name in ("initdb", "postgres")):
            return directory
    return None


def _find_psql(bindir: Path) -> Path | None:
    if os.access(bindir / "psql", os.X_OK):
        return bindir / "psql"
    found = shutil.which("psql")
    return Path(found) if found else None


def _find_pgbouncer() -> Path | None:
    chosen = os.environ.get(ENV_PGBOUNCER)
    if chosen:
        return Path(chosen) if os.access(chosen, os.X_OK) else None
    found = shutil.which("pgbouncer")
    if found:
        return Path(found)
    for place in _PGBOUNCER_PLACES:
        if os.access(place, os.X_OK):
            return Path(place)
    return None


def find_binaries() -> Binaries:
    """Locate initdb, postgres, psql and pgbouncer, or explain how to get them."""
    bindir = _find_postgres_bindir()
    psql = _find_psql(bindir) if bindir else None
    pgbouncer = _find_pgbouncer()
    missing = []
    if bindir is None:
        where = os.environ.get(ENV_POSTGRES_BINDIR) or "PATH and " + ", ".join(_POSTGRES_BINDIR_PATTERNS)
        missing.append(f"the PostgreSQL server (initdb, postgres), looked in {where}")
    elif psql is None:
        missing.append("psql, the PostgreSQL client")
    if pgbouncer is None:
        where = os.environ.get(ENV_PGBOUNCER) or "PATH and " + ", ".join(_PGBOUNCER_PLACES)
        missing.append(f"PgBouncer (pgbouncer), looked in {where}")
    if missing:
        raise MissingBinariesError(
            "The private course stack cannot start: missing " + "; and ".join(missing) + ".\n" + INSTALL_HINT
        )
    assert bindir is not None and psql is not None and pgbouncer is not None  # each None was reported above
    return Binaries(bindir / "initdb", bindir / "postgres", psql, pgbouncer)
