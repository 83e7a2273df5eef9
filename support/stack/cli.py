"""Command line: a course stack that outlives the command.

    eval "$(python -m support up)"    start one, export COURSE_* for this shell
    python -m support status          is it there, does it answer
    python -m support down            stop it and remove its directory

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

from . import defaults
from .course_stack import Stack, StackError, check_reachable, read_keeper_reply, spawn_keeper
from .keeper import pid_alive, work_dir

_STOP_TIMEOUT = 10.0


def _state_path():
    return work_dir() / "cli-stack.json"


def _load_state() -> dict | None:
    try:
        state = json.loads(_state_path().read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state if pid_alive(state["keeper_pid"]) else None


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
        _state_path().write_text(json.dumps(state))
        _state_path().chmod(0o600)
    print(_exports(state))
    return 0


def down() -> int:
    state = _load_state()
    if state is None:
        print("No course stack started by 'python -m support up' is running.")
        return 0
    os.kill(state["keeper_pid"], signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT
    while pid_alive(state["keeper_pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(state["keeper_pid"]):
        print(f"The stack keeper (pid {state['keeper_pid']}) did not stop within {_STOP_TIMEOUT:.0f} s.")
        return 1
    _state_path().unlink(missing_ok=True)
    print(f"Stopped the course stack and removed {state['directory']}.")
    return 0


def status() -> int:
    state = _load_state()
    if state is None:
        print("No course stack started by 'python -m support up' is running.")
        return 1
    stack = Stack.from_keeper_reply(state)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m support", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    args = parser.parse_args(argv)
    return {"up": up, "down": down, "status": status}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
