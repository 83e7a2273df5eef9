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

A cached directory becomes the data directory of a server that the learner
logs in to, so one planted by somebody else (with ``trust`` authentication,
say) would hand them the learner's account. The work directory is already
ours alone (work_dir.py); on top of that a template or spare is used only if
it carries our mark: a file beside it, written by us, holding an HMAC of its
name and inode under a key only we can read (``trust.key``, mode 0600). A
directory without a valid mark is ignored, and rebuilt when it is in the way.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

from .binaries import Binaries
from .defaults import ROLE
from .server_process import ServerAccount, run_as
from .work_dir import open_lock, read_private_file, write_private_file

_COPY_TIMEOUT = 120
#: Part of the cache's names; change it when initdb's arguments change, so
#: that directories made the old way are not used. (r2: directories carry a mark.)
_RECIPE = "r2"
_MARK_SUFFIX = ".trust"
_KEY_FILE = "trust.key"


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
        self._key = _trust_key(work_dir)

    def provide(self, data: Path) -> str:
        """Put an initialised data directory at `data`; say where it came from."""
        for spare in self._spares():
            if not self.trusted(spare):
                continue
            inode = os.lstat(spare).st_ino
            try:
                spare.rename(data)
            except FileNotFoundError:
                continue  # another kernel claimed it first
            self._mark_path(spare).unlink(missing_ok=True)
            if os.lstat(data).st_ino == inode:
                return "spare"
            shutil.rmtree(data)  # swapped between the check and the rename: not ours
        if self.trusted(self.template):
            self._copy(self.template, data)
            return "template copy"
        data.mkdir(mode=0o700)  # the stack's folder is ours; initdb may fill an empty directory
        self.account.chown(data)
        initdb(data, self.binaries, self.account)
        return "initdb"

    def replenish(self) -> None:
        """Make the template and a spare if they are missing (one keeper at a time)."""
        with self._locked() as acquired:
            if not acquired:
                return
            if not self.trusted(self.template):
                _remove(self.template)
                building = self._building_dir(self.template)
                initdb(building, self.binaries, self.account)
                building.rename(self.template)
                self._mark(self.template)
            if not any(self.trusted(spare) for spare in self._spares()):
                spare = self.work_dir / f"{self._spare_prefix}{os.getpid()}"
                building = self._building_dir(spare)
                building.rmdir()
                self._copy(self.template, building)
                building.rename(spare)
                self._mark(spare)

    def trusted(self, directory: Path) -> bool:
        """Whether `directory` is a real directory that carries our valid mark."""
        try:
            info = os.lstat(directory)
            mark = read_private_file(self._mark_path(directory))
        except (OSError, RuntimeError):
            return False
        if not stat.S_ISDIR(info.st_mode) or info.st_uid not in (os.geteuid(), self.account.uid):
            return False
        return hmac.compare_digest(mark, self._digest(directory, info))

    def _spares(self) -> list[Path]:
        return sorted(
            spare
            for spare in self.work_dir.glob(self._spare_prefix + "*")
            if not spare.name.endswith((".building", _MARK_SUFFIX))
        )

    def _mark(self, directory: Path) -> None:
        write_private_file(self._mark_path(directory), self._digest(directory, os.lstat(directory)))

    def _mark_path(self, directory: Path) -> Path:
        return directory.with_name(directory.name + _MARK_SUFFIX)

    def _digest(self, directory: Path, info: os.stat_result) -> str:
        message = f"{directory.name}:{info.st_dev}:{info.st_ino}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def _building_dir(self, final: Path) -> Path:
        building = final.with_name(final.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(mode=0o700)
        self.account.chown(building)
        return building

    @contextlib.contextmanager
    def _locked(self) -> Iterator[bool]:
        with os.fdopen(open_lock(self.work_dir / "data-dirs.lock"), "r+b") as lock:
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
        done = subprocess.run(
            ["cp", "-a", str(source), str(target)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=_COPY_TIMEOUT,
        )
        if done.returncode != 0:
            raise RuntimeError(f"Copying the data directory {source} failed: {done.stderr.strip()}")


def _trust_key(work_dir: Path) -> bytes:
    """The key that marks our cached directories, made once per work directory.

    Written complete under a temporary name, then linked into place: link()
    fails if the key exists, so two keepers starting at once agree on one key.
    """
    path = work_dir / _KEY_FILE
    if not os.path.lexists(path):
        candidate = work_dir / f".{_KEY_FILE}.{secrets.token_hex(6)}"
        write_private_file(candidate, secrets.token_hex(32))
        with contextlib.suppress(FileExistsError):
            os.link(candidate, path, follow_symlinks=False)
        candidate.unlink()
    return read_private_file(path).encode()


def _remove(path: Path) -> None:
    """Take an untrusted directory (or a link, or a file) out of the way."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
