"""What one learner costs a hub machine: the PSS of their server, kernel and private stack.

PSS (proportional set size) counts a page shared by n processes as 1/n in
each, so summing it over processes does not count the shared libraries of
PostgreSQL's backends or of the Python processes several times over, as RSS
would. Reading another process's PSS needs root (or the same user).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import psutil

MIB = 1024 * 1024
PARTS = ("server", "kernel", "keeper", "postgres", "pgbouncer", "other")


@dataclass(frozen=True)
class TreeProcess:
    """A process seen in a learner's tree; (pid, create_time) tells it apart from a later one with its pid."""

    pid: int
    create_time: float
    part: str
    user: str
    pss: int

    def alive(self) -> bool:
        try:
            return psutil.Process(self.pid).create_time() == self.create_time
        except psutil.NoSuchProcess:
            return False


def part_of(process: psutil.Process, server_pid: int) -> str:
    if process.pid == server_pid:
        return "server"
    name, cmdline = process.name(), " ".join(process.cmdline())
    if "ipykernel" in cmdline:
        return "kernel"
    if "support.stack.keeper" in cmdline:
        return "keeper"
    if name in ("postgres", "pgbouncer"):
        return name
    return "other"


def learner_tree(server: psutil.Process) -> list[TreeProcess]:
    """The server and everything it started (kernels, keepers, PostgreSQL, PgBouncer), with their PSS."""
    seen = []
    for process in [server, *server.children(recursive=True)]:
        try:
            with process.oneshot():
                seen.append(
                    TreeProcess(
                        process.pid,
                        process.create_time(),
                        part_of(process, server.pid),
                        process.username(),
                        process.memory_full_info().pss,
                    )
                )
        except psutil.NoSuchProcess:
            continue
    return seen


def by_part(tree: list[TreeProcess]) -> dict[str, float]:
    """MiB of PSS per part (server, kernel, ...), and 'total'."""
    sums: Counter[str] = Counter()
    for process in tree:
        sums[process.part] += process.pss
    mib = {part: sums[part] / MIB for part in PARTS}
    mib["total"] = sum(sums.values()) / MIB
    return mib


def pss_mib(process: psutil.Process) -> float:
    """One process and its children (the hub, the proxy)."""
    return sum(p.memory_full_info().pss for p in [process, *process.children(recursive=True)]) / MIB
