"""Starting a database server process the way the private stack needs it.

PostgreSQL and PgBouncer refuse to run as root, so when the course runs as
root (a container, a workshop machine) the servers run as an unprivileged
account while the Python code around them stays root. On Linux each server
also gets a parent-death signal, so that if the process that started it (the
keeper) is killed the server goes too instead of lingering with a port open.
macOS has no such signal; there the keeper starts a watchdog instead
(watchdog.py), and ``COURSE_STACK_WITHOUT_PDEATHSIG=1`` makes Linux behave
the same way so the tests can exercise that path.

This module uses only the standard library: the stack keeper imports it, and
the keeper must start fast and run under any Python 3 (Binder, a system
Python).
"""

from __future__ import annotations

import ctypes
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .work_dir import open_for_append

# Accounts tried, in order, when we are root. Debian's postgresql and
# pgbouncer packages create "postgres"; "nobody" exists everywhere.
_UNPRIVILEGED_ACCOUNTS = ("postgres", "nobody")
_PR_SET_PDEATHSIG = 1
#: "2025-01-31 12:00:00.123 UTC [4242] " before a server's log line.
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[\d+\] ")
#: Set to 1 to do without the parent-death signal, as on macOS (for tests).
ENV_WITHOUT_PDEATHSIG = "COURSE_STACK_WITHOUT_PDEATHSIG"


@dataclass(frozen=True)
class ServerAccount:
    """Who the servers run as; None ids mean "as the current user"."""

    uid: int | None
    gid: int | None
    name: str

    def chown(self, path: Path) -> None:
        """Give `path` to the server account (no-op when we are not root)."""
        if self.uid is not None:
            os.chown(path, self.uid, self.gid if self.gid is not None else -1, follow_symlinks=False)

    @property
    def ids(self) -> tuple[int, int] | None:
        """(uid, gid) to hand a file to, or None when the servers run as us."""
        return None if self.uid is None else (self.uid, self.gid if self.gid is not None else -1)


def server_account() -> ServerAccount:
    """The account the servers should run as on this machine."""
    if os.geteuid() != 0:
        return ServerAccount(None, None, pwd.getpwuid(os.geteuid()).pw_name)
    for name in _UNPRIVILEGED_ACCOUNTS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return ServerAccount(entry.pw_uid, entry.pw_gid, name)
    raise RuntimeError(
        "Running as root, but neither a 'postgres' nor a 'nobody' account exists "
        "to run PostgreSQL and PgBouncer (they refuse to run as root). Create one "
        "with: useradd --system postgres"
    )


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()


def parent_death_signal_available() -> bool:
    """Whether servers die with their keeper by themselves (Linux's prctl).

    Where they do not (macOS, or Linux with COURSE_STACK_WITHOUT_PDEATHSIG
    set), the keeper starts a watchdog process that stops them when the
    keeper dies.
    """
    return _LIBC is not None and os.environ.get(ENV_WITHOUT_PDEATHSIG, "") in ("", "0")


def _die_with_parent_hook(sig: int):
    """A preexec_fn that makes the child receive `sig` when its parent dies.

    It runs after the child has switched user (which would clear the
    setting), and exits at once if the parent is already gone.
    """
    parent = os.getpid()
    use_prctl = parent_death_signal_available()

    def hook() -> None:
        if use_prctl and _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return hook


def spawn_server(
    argv: list[str],
    account: ServerAccount,
    *,
    log_path: Path,
    death_signal: signal.Signals,
) -> subprocess.Popen:
    """Start a server binary as `account`, its output appended to `log_path`."""
    log = open_for_append(log_path)
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=account.uid,
            group=account.gid,
            extra_groups=[] if account.uid is not None else None,
            preexec_fn=_die_with_parent_hook(death_signal),
            cwd="/",
        )
    finally:
        os.close(log)


def run_as(argv: list[str], account: ServerAccount, *, timeout: float, input: str | None = None) -> str:
    """Run a short command (initdb, psql) as `account`; return its output.

    Raises RuntimeError with the command's output when it fails, so the reason
    reaches the learner instead of a bare exit code.
    """
    try:
        done = subprocess.run(
            argv,
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            user=account.uid,
            group=account.gid,
            extra_groups=[] if account.uid is not None else None,
            timeout=timeout,
            cwd="/",
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{Path(argv[0]).name} did not finish within {timeout} s") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise RuntimeError(f"{Path(argv[0]).name} failed (exit {done.returncode}): {telling_line(output)}\n{output}")
    return done.stdout


def telling_line(output: str, *, fallback: bool = True) -> str:
    """The line of a server's or tool's output that says what went wrong.

    The first line of an exception is what the learner reads, so it should
    carry the cause ("FATAL: ... is outside the valid range ..."), not
    "see the log".
    """
    lines = [_LOG_PREFIX.sub("", line.strip()) for line in output.splitlines() if line.strip()]
    for marker in ("FATAL", "PANIC", "ERROR", "error:", "could not", "cannot", "denied", "invalid"):
        found = [index for index, line in enumerate(lines) if marker in line]
        if found:
            last = found[-1]
            # PgBouncer says why on the line before its FATAL ("invalid value ... for parameter ...").
            if (
                last > 0
                and marker in ("FATAL", "PANIC")
                and ("ERROR" in lines[last - 1] or "WARNING" in lines[last - 1])
            ):
                return f"{lines[last - 1]}; {lines[last]}"
            return lines[last]
    if not fallback:
        return ""
    return lines[-1] if lines else "(no output)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now.

    Another process may still take it before our server binds it; callers
    retry with a new port when that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, sig: signal.Signals, timeout: float) -> None:
    """Send `sig`, wait up to `timeout` seconds, then SIGKILL."""
    if process.poll() is not None:
        return
    try:
        process.send_signal(sig)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass
