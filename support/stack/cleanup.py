"""Finding and removing what a dead keeper left behind, and nothing else.

A keeper normally stops its servers and deletes its stack's folder. If it
is killed outright, on Linux its servers still die at once (parent-death
signal), but the folder stays; on macOS, where there is no such signal, the
watchdog (watchdog.py) stops them, and if that was killed too they keep
running. Three callers clean up:

* every new keeper, before it starts its own stack: folders and servers of
  stacks whose keeper is gone;
* the watchdog, for its one stack, when its keeper is gone;
* ``./course clean``: the same, plus keepers whose kernel has gone without
  them noticing.

What counts as ours: only processes of this user (or, as root, of the
servers' account) whose command line names a stack folder inside this
user's work directory, and keepers of this user whose pid, token and
command line match their stack's keeper.json. Other users' stacks, and a
PostgreSQL the machine runs for itself, never match. Standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from .processes import ProcessInfo, alive, is_keeper, list_processes, process_info
from .work_dir import read_private_file

KEEPER_FILE = "keeper.json"
LEGACY_PID_FILE = "keeper.pid"
_YOUNG_DIRECTORY = 60.0  # seconds: a stack folder may still be getting its keeper.json
_STOP_WAIT = 3.0


@dataclass
class Cleaned:
    """What one clean-up did, for the learner to read."""

    keepers: list[int] = field(default_factory=list)
    servers: list[int] = field(default_factory=list)
    directories: list[str] = field(default_factory=list)
    running_stacks: int = 0

    def describe(self, base: Path) -> str:
        done = (
            f"Stopped {len(self.keepers)} orphaned keeper(s) and {len(self.servers)} orphaned server(s); "
            f"removed {len(self.directories)} folder(s) in {base}."
        )
        if self.running_stacks:
            done += f" Left alone: {self.running_stacks} stack(s) whose keeper is alive and wanted."
        return done


def keeper_record(stack_dir: Path) -> dict | None:
    """The stack's keeper.json (pid, token, parent pid, mode), if it is a private file of ours."""
    try:
        return json.loads(read_private_file(stack_dir / KEEPER_FILE))
    except (OSError, RuntimeError, ValueError):
        return None


def keeper_alive(stack_dir: Path) -> bool:
    """Whether the keeper that made `stack_dir` still runs (its pid, token and command line match)."""
    record = keeper_record(stack_dir)
    if record is not None:
        pid = record.get("pid")
        return isinstance(pid, int) and is_keeper(process_info(pid), record.get("token"))
    try:  # a stack made by an older keeper, which wrote only its pid
        pid = int((stack_dir / LEGACY_PID_FILE).read_text())
    except (OSError, ValueError):
        return _young(stack_dir)
    return is_keeper(process_info(pid))


def _young(stack_dir: Path) -> bool:
    try:
        return time.time() - os.lstat(stack_dir).st_mtime < _YOUNG_DIRECTORY
    except FileNotFoundError:
        return False


def servers_of(stack_dir: Path, processes: dict[int, ProcessInfo], server_uids: set[int]) -> list[ProcessInfo]:
    """Running processes of ours whose command line names a path inside `stack_dir`."""
    return [
        info
        for info in processes.values()
        if info.uid in server_uids and not info.zombie and info.mentions(str(stack_dir)) and info.pid != os.getpid()
    ]


def stop_servers(servers: list[ProcessInfo]) -> list[int]:
    """Stop them as the keeper would (PgBouncer SIGTERM, PostgreSQL SIGQUIT), then SIGKILL."""
    stopped = []
    for info in servers:
        sig = signal.SIGTERM if "pgbouncer" in os.path.basename(info.argv[0]) else signal.SIGQUIT
        try:
            os.kill(info.pid, sig)
            stopped.append(info.pid)
        except ProcessLookupError:
            pass
    _wait_gone(stopped)
    return stopped


def _wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + _STOP_WAIT
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def clean_stack(stack_dir: Path, server_uids: set[int]) -> list[int]:
    """Stop the servers of one stack whose keeper is gone, and delete its folder."""
    processes = {info.pid: info for info in list_processes()}
    stopped = stop_servers(servers_of(stack_dir, processes, server_uids))
    shutil.rmtree(stack_dir, ignore_errors=True)
    return stopped


def remove_abandoned_stacks(base: Path, server_uids: set[int], *, orphaned_keepers: bool = False) -> Cleaned:
    """Clean every stack in `base` whose keeper is gone (or, if asked, orphaned)."""
    cleaned = Cleaned()
    processes: dict[int, ProcessInfo] | None = None  # listed only if a stack needs cleaning
    for stack_dir in sorted(base.glob("stack-*")):
        if not stack_dir.is_dir() or stack_dir.is_symlink():
            continue
        if keeper_alive(stack_dir):
            if not (orphaned_keepers and _stop_if_orphaned(stack_dir, cleaned)):
                cleaned.running_stacks += 1
                continue
        if processes is None:
            processes = {info.pid: info for info in list_processes()}
        cleaned.servers += stop_servers(servers_of(stack_dir, processes, server_uids))
        shutil.rmtree(stack_dir, ignore_errors=True)
        cleaned.directories.append(str(stack_dir))
    return cleaned


def _stop_if_orphaned(stack_dir: Path, cleaned: Cleaned) -> bool:
    """Stop a keeper whose kernel is gone (it should have noticed by itself); True if it was one."""
    record = keeper_record(stack_dir)
    if record is None or record.get("until") != "parent-exits" or not isinstance(record.get("pid"), int):
        return False
    info = process_info(record["pid"])
    if info is None or info.ppid == record.get("parent_pid"):
        return False
    os.kill(info.pid, signal.SIGTERM)
    cleaned.keepers.append(info.pid)
    deadline = time.monotonic() + _STOP_WAIT * 2
    while stack_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return True
