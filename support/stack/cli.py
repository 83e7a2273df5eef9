"""Command line: a course stack that outlives the command.

    eval "$(python -m support up)"    start one, export COURSE_* for this shell
    python -m support status          is it there, does it answer
    python -m support down            stop it and remove its directory
    python -m support clean           remove your own stacks left behind by a crash

Binder and workshop machines use this to start one stack before JupyterLab;
the notebooks then attach to it. Standard library only (status uses psycopg
when it is installed), so a system Python can run it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import defaults
from .attach import check_reachable
from .cleanup import remove_abandoned_stacks
from .course_stack import Stack, StackError, read_keeper_reply, spawn_keeper
from .processes import is_keeper, process_info
from .server_process import server_account
from .work_dir import UnsafeWorkDirError, read_private_file, work_dir, write_private_file

_STOP_TIMEOUT = 10.0


def _state_path() -> Path:
    return work_dir() / "cli-stack.json"


def _load_state() -> dict | None:
    """The shared stack's state, if its file is a private file of ours and its keeper still runs.

    The pid in it is used only if that process is a keeper of this user with
    the token the file records, so a stale or forged file cannot make
    `down` signal some other process.
    """
    path = _state_path()
    try:
        state = json.loads(read_private_file(path))
    except (FileNotFoundError, ValueError):
        return None
    except OSError as exc:  # ELOOP: a symbolic link where our state file should be
        raise UnsafeWorkDirError(
            f"{path} cannot be read safely ({exc.strerror}); refusing it. Fix: remove it."
        ) from None
    if not is_keeper(process_info(int(state.get("keeper_pid", -1))), state.get("keeper_token") or None):
        return None
    return state


def _exports(state: dict) -> str:
    values = {
        defaults.ENV_DATABASE_URL: state["database_url"],
        defaults.ENV_PGBOUNCER_URL: state["pgbouncer_url"],
        defaults.ENV_PGBOUNCER_ADMIN_URL: state["admin_url"],
    }
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in values.items())


def up() -> int:
    state = _load_state()
    if state is None:
        keeper = spawn_keeper(
            "stopped", defaults.POSTGRES_SETTINGS, defaults.PGBOUNCER_SETTINGS, None, stdin=subprocess.DEVNULL
        )
        try:
            state = read_keeper_reply(keeper)
        except StackError as exc:
            keeper.terminate()
            print(f"echo {shlex.quote(f'course stack: {exc}')} >&2; false")
            return 1
        if not state["ok"]:
            print(f"echo {shlex.quote('course stack did not start: ' + state['error'])} >&2; false")
            return 1
        write_private_file(_state_path(), json.dumps(state))
    print(_exports(state))
    return 0


def down() -> int:
    state = _load_state()
    if state is None:
        print("No course stack started by 'python -m support up' is running.")
        return 0
    os.kill(state["keeper_pid"], signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT
    while _keeper_runs(state) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _keeper_runs(state):
        print(f"The stack keeper (pid {state['keeper_pid']}) did not stop within {_STOP_TIMEOUT:.0f} s.")
        return 1
    _state_path().unlink(missing_ok=True)
    print(f"Stopped the course stack and removed {state['directory']}.")
    return 0


def _keeper_runs(state: dict) -> bool:
    return is_keeper(process_info(state["keeper_pid"]), state.get("keeper_token") or None)


def status() -> int:
    state = _load_state()
    if state is None:
        print("No course stack started by 'python -m support up' is running.")
        return 1
    stack = Stack.from_keeper_reply(state, mode="shared")
    print(f"{stack.describe()}\n  keeper pid {stack.keeper_pid}")
    try:
        check_reachable(stack)
    except ImportError:
        print("  (install psycopg to check that it answers)")
    except StackError as exc:
        print(f"  not answering: {exc}")
        return 1
    else:
        print("  all three answer.")
    return 0


def clean() -> int:
    """Remove this user's stacks whose keeper is gone or orphaned; touch nobody else's.

    Safe to run as root on a shared machine: it looks only in root's own
    work directory, and stops only processes that name a stack folder there
    (see cleanup.py). The shared stack of `up` is left running.
    """
    base = work_dir(create=False)
    if not base.exists():
        print(f"Nothing to clean: {base} does not exist.")
        return 0
    account = server_account()
    uids = {os.geteuid()} | ({account.uid} if account.uid is not None else set())
    cleaned = remove_abandoned_stacks(base, uids, orphaned_keepers=True)
    print(cleaned.describe(base))
    if _load_state() is not None:
        print("The shared stack of './course up' is running; './course down' stops it.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m support", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status", "clean"))
    args = parser.parse_args(argv)
    try:
        return {"up": up, "down": down, "status": status, "clean": clean}[args.command]()
    except UnsafeWorkDirError as exc:
        if args.command == "up":
            print(f"echo {shlex.quote(f'course stack: {exc}')} >&2; false")
        else:
            print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
