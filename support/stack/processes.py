"""Which processes are running, and whose: the facts needed before signalling one.

A pid read from a file can belong to anyone by the time it is used: the
process may have exited and its number been given to another. So nothing
here signals a pid on trust; callers first look the process up and check
that its owner and its command line are what they expect.

Linux answers from /proc. Elsewhere (macOS) ``ps`` answers; the tests run
that branch on Linux too, so both stay honest. Standard library only.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessInfo:
    """One running process: its pid, parent, owner and command line."""

    pid: int
    ppid: int
    uid: int
    argv: tuple[str, ...]
    zombie: bool = False

    def mentions(self, folder: str) -> bool:
        """Whether an argument is a path inside `folder` (whole arguments, not substrings)."""
        return any(arg.startswith(folder.rstrip("/") + "/") for arg in self.argv)


def list_processes(*, use_proc: bool | None = None) -> list[ProcessInfo]:
    """Every process this user may see (all of them, on Linux and macOS)."""
    if use_proc is None:
        use_proc = (_PROC / "self" / "stat").exists()
    return _from_proc() if use_proc else _from_ps()


def process_info(pid: int, *, use_proc: bool | None = None) -> ProcessInfo | None:
    """The process with this pid, or None when there is none."""
    if use_proc is None:
        use_proc = (_PROC / "self" / "stat").exists()
    if use_proc:
        return _one_from_proc(pid)
    return next((p for p in _from_ps() if p.pid == pid), None)


def alive(pid: int) -> bool:
    """Whether the pid runs (a zombie, exited but not yet reaped, does not count)."""
    info = process_info(pid)
    return info is not None and not info.zombie


def _one_from_proc(pid: int) -> ProcessInfo | None:
    folder = _PROC / str(pid)
    try:
        uid = folder.stat().st_uid
        stat = (folder / "stat").read_text()
        raw = (folder / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name in parentheses may itself hold spaces or ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    argv = tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return ProcessInfo(pid, int(fields[1]), uid, argv, zombie=fields[0] == "Z")


def _from_proc() -> list[ProcessInfo]:
    found = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            info = _one_from_proc(int(entry.name))
            if info is not None:
                found.append(info)
    return found


def _from_ps() -> list[ProcessInfo]:
    # -A: every process; -ww: never cut the command line (Linux and macOS alike).
    out = subprocess.run(
        ["ps", "-A", "-ww", "-o", "pid=,ppid=,uid=,stat=,args="],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    found = []
    for line in out.splitlines():
        parts = line.split(None, 4)
        if len(parts) < 4 or not parts[0].isdigit():
            continue
        pid, ppid, uid, state = int(parts[0]), int(parts[1]), int(parts[2]), parts[3]
        argv = tuple(parts[4].split()) if len(parts) == 5 else ()
        found.append(ProcessInfo(pid, ppid, uid, argv, zombie=state.startswith("Z")))
    return found


def is_keeper(info: ProcessInfo | None, token: str | None = None) -> bool:
    """Whether `info` is a stack keeper of this user (with this token, when given)."""
    if info is None or info.zombie or info.uid != os.geteuid():
        return False
    if "support.stack.keeper" not in info.argv:
        return False
    return token is None or token in info.argv
