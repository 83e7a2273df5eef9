"""Initialised PostgreSQL data directories, ready before anyone asks.

initdb takes about a second, and so does copying its result (about a
thousand files, on a disk that is slow at creating files). Neither should
stand between a learner and a running notebook, so the work directory keeps:

* a template: initdb's output, made once per PostgreSQL version;
* one spare: a copy of the template waiting to be claimed.

A new stack claims the spare with a single rename (instant, and atomic when
several kernels start at once). The first stack on a machine runs initdb
straight into its own directory instead. Either way, once its servers are up
the stack's keeper makes the missing template or spare while it is idle,
ready for the next kernel. Both are caches: deleting them only makes the
next start slower.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from .binaries import Binaries
from .defaults import ROLE
from .server_process import ServerAccount, run_as

_COPY_TIMEOUT = 120
#: Part of the cache's names; change it when initdb's arguments change, so
#: that directories made the old way are not used.
_RECIPE = "r1"


def server_version(binaries: Binaries) -> str:
    """The major version of the installed server, e.g. "15"."""
    out = subprocess.run(
        [str(binaries.postgres), "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    found = re.search(r"(\d+)(?:\.\d+)?", out)
    if found is None:
        raise RuntimeError(f"cannot read a version from {binaries.postgres} --version: {out!r}")
    return found.group(1)


def initdb(data: Path, binaries: Binaries, account: ServerAccount) -> None:
    """A fresh cluster: superuser ROLE, trust on the private socket, SCRAM over TCP."""
    run_as(
        [
            str(binaries.initdb),
            "-D",
            str(data),
            "-U",
            ROLE,
            "--encoding=UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
        ],
        account,
        timeout=60,
    )


class DataDirCache:
    """The template and the spare of one PostgreSQL version in a work directory."""

    def __init__(self, work_dir: Path, binaries: Binaries, account: ServerAccount) -> None:
        self.work_dir = work_dir
        self.binaries = binaries
        self.account = account
        version = server_version(binaries)
        self.template = work_dir / f"template-pg{version}-{_RECIPE}"
        self._spare_prefix = f"spare-pg{version}-{_RECIPE}-"

    def provide(self, data: Path) -> str:
        """Put an initialised data directory at `data`; say where it came from."""
        for spare in sorted(self.work_dir.glob(self._spare_prefix + "*")):
            if spare.name.endswith(".building"):
                continue
            with contextlib.suppress(FileNotFoundError):
                spare.rename(data)  # another kernel may have claimed it first
                return "spare"
        if self.template.is_dir():
            self._copy(self.template, data)
            return "template copy"
        initdb(data, self.binaries, self.account)
        return "initdb"

    def replenish(self) -> None:
        """Make the template and a spare if they are missing (one keeper at a time)."""
        with self._locked() as acquired:
            if not acquired:
                return
            if not self.template.is_dir():
                building = self._building_dir(self.template)
                initdb(building, self.binaries, self.account)
                building.rename(self.template)
            if not any(not s.name.endswith(".building") for s in self.work_dir.glob(self._spare_prefix + "*")):
                spare = self.work_dir / f"{self._spare_prefix}{os.getpid()}"
                building = self._building_dir(spare)
                building.rmdir()
                self._copy(self.template, building)
                building.rename(spare)

    def _building_dir(self, final: Path) -> Path:
        building = final.with_name(final.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(mode=0o700)
        self.account.chown(building)
        return building

    @contextlib.contextmanager
    def _locked(self) -> Iterator[bool]:
        with open(self.work_dir / "data-dirs.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                for unfinished in self.work_dir.glob("*.building"):
                    shutil.rmtree(unfinished, ignore_errors=True)

    @staticmethod
    def _copy(source: Path, target: Path) -> None:
        # cp -a keeps the files' owner, which matters when root copies
        # directories that belong to the server account.
        subprocess.run(["cp", "-a", str(source), str(target)], check=True, timeout=_COPY_TIMEOUT)
