"""The per-user work directory, and reading and writing files in it safely.

Stacks, the data-directory cache and the shared stack's state file live in
``$TMPDIR/five-tables-<uid>``. The temp folder is shared by every user of the
machine, so another user could make that directory first, or put a symbolic
link there, and wait for our keeper to use it: to run our server on a data
directory they prepared, to make us overwrite a file they point at, or to
feed `./course down` a pid to kill. So the directory is used only when it
is ours alone:

* a real directory (not a symbolic link), owned by the current user;
* not writable by group or others;
* in a folder where others cannot rename it away (not writable by others,
  or sticky like /tmp).

Otherwise the learner gets one line that names the path and the fix. Inside
it, files are opened with O_NOFOLLOW and secrets are created with mode 0600
in the same step, never chmod-ed afterwards.

Standard library only (the keeper and ./course use it).
"""

from __future__ import annotations

import os
import pwd
import secrets
import stat
import tempfile
from pathlib import Path

_PRIVATE = 0o700
#: Run as root, the servers run as another account, which must be able to
#: pass through (not list) the work directory to reach its stack's folder.
_PASSABLE = 0o711


class UnsafeWorkDirError(RuntimeError):
    """The work directory (or a file in it) is not safely ours; the text says what to do."""


def work_dir(*, create: bool = True) -> Path:
    """Where stacks and the data-directory cache live: per user, in the temp folder.

    Run as root, the servers run as another account, which must be able to
    enter every folder above the work directory; a private TMPDIR (mode
    0700, as pytest and some desktops make them) would stop initdb with
    "Permission denied", so then /tmp is used instead.

    TMPDIR is read on every call (tempfile.gettempdir() remembers its first
    answer, and would silently skip a TMPDIR it cannot write to).
    """
    base = Path(os.environ.get("TMPDIR") or tempfile.gettempdir())
    if os.geteuid() == 0 and not _everyone_can_enter(base):
        base = Path("/tmp")
    path = base / f"five-tables-{os.geteuid()}"
    _check_parent(base, path)
    if create:
        try:
            os.mkdir(path, _PASSABLE if os.geteuid() == 0 else _PRIVATE)
        except FileExistsError:
            pass
        except OSError as exc:
            raise UnsafeWorkDirError(
                f"Cannot create the course's work directory {path}: {exc.strerror}. "
                "Fix: set TMPDIR to a folder you can write to, then restart the kernel."
            ) from None
    elif not os.path.lexists(path):
        return path
    check_work_dir(path)
    return path


def check_work_dir(path: Path) -> None:
    """Raise UnsafeWorkDirError unless `path` is a directory only we control."""
    fix = f"Fix: remove it (rm -rf {path}, as its owner or root) or set TMPDIR to a private folder of yours."
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeWorkDirError(
            f"The course's work directory {path} is a symbolic link (to {os.readlink(path)}), "
            f"which someone else may control; refusing to use it. {fix}"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeWorkDirError(f"The course's work directory {path} is not a directory. {fix}")
    if info.st_uid != os.geteuid():
        raise UnsafeWorkDirError(
            f"The course's work directory {path} belongs to {_user(info.st_uid)}, not to you "
            f"({_user(os.geteuid())}); refusing to use it. {fix}"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeWorkDirError(
            f"The course's work directory {path} can be written by other users "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); refusing to use it. "
            f"Fix: chmod 700 {path} (or remove it), then restart the kernel."
        )
    if os.geteuid() == 0 and not info.st_mode & stat.S_IXOTH:
        os.chmod(path, stat.S_IMODE(info.st_mode) | 0o011, follow_symlinks=False)


def _check_parent(base: Path, path: Path) -> None:
    """A folder others may write to must be sticky, or they could swap our directory."""
    try:
        info = os.stat(base)
    except OSError as exc:
        raise UnsafeWorkDirError(
            f"The temp folder {base} cannot be used: {exc.strerror}. "
            "Fix: set TMPDIR to a folder you can write to, then restart the kernel."
        ) from None
    if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
        raise UnsafeWorkDirError(
            f"The temp folder {base} is writable by everyone but not sticky, so another user could "
            f"replace {path.name} in it. Fix: chmod +t {base}, or set TMPDIR to a private folder of yours."
        )


def _everyone_can_enter(directory: Path) -> bool:
    try:
        return all(
            os.stat(folder).st_mode & stat.S_IXOTH for folder in (directory.resolve(), *directory.resolve().parents)
        )
    except OSError:
        return False


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def write_private_file(path: Path, text: str, *, mode: int = 0o600, owner: tuple[int, int] | None = None) -> None:
    """Replace `path` with `text` in one step: a new file, never followed through a link.

    The content goes to a fresh file (O_EXCL | O_NOFOLLOW, created with
    `mode`, handed to `owner` while still open) that is then renamed over
    `path`. A rename replaces a symbolic link at `path` rather than writing
    where it points.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)  # the umask may have taken bits away
        os.write(fd, text.encode())
    except BaseException:
        os.close(fd)
        os.unlink(temporary)
        raise
    os.close(fd)
    os.replace(temporary, path)


def read_private_file(path: Path) -> str:
    """The text of a file we wrote: refused if it is a link, someone else's, or readable by others."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise UnsafeWorkDirError(
                f"{path} is not a private file of yours (owner {_user(info.st_uid)}, "
                f"mode {stat.S_IMODE(info.st_mode):04o}); refusing to read it. Fix: remove it."
            )
        return handle.read().decode()


def open_for_append(path: Path, mode: int = 0o600) -> int:
    """A descriptor appending to `path` (a log), never through a symbolic link."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


def open_lock(path: Path) -> int:
    """A descriptor of a lock file, opened without truncating or following a link."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
