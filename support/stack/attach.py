"""Which stack a notebook uses: the one named by COURSE_*, or a private one; and is it reachable.

``get_stack()`` is every notebook's first line. Attach mode needs only the
three URLs (any role, database and ports); a private stack comes from
``course_stack.start_private_stack()``. A private stack that died is
replaced, with the reason printed, so a learner never keeps talking to a
dead server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from . import defaults
from .course_stack import (
    PrivateStack,
    Stack,
    StackError,
    as_libpq_url,
    as_sqlalchemy_url,
    hide_password,
    start_private_stack,
)

_CONNECT_TIMEOUT = 3
_URL_SHAPE = "postgresql://user:password@host:port/database"


def attached_stack_from_env(environ: dict[str, str] | None = None) -> Stack | None:
    """The stack named by the COURSE_* variables, or None when none is set."""
    source: Mapping[str, str] = os.environ if environ is None else environ
    values = {name: source.get(name, "").strip() for name in defaults.ATTACH_VARIABLES}
    if not any(values.values()):
        return None
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise StackError(
            "Attach mode needs all three COURSE_* variables; missing: "
            + ", ".join(missing)
            + ". Set them (README.md, 'Where the database comes from', Attached), or unset all three "
            "to let the notebook start a private stack."
        )
    for name, value in values.items():
        _check_url(name, value)
    return Stack(
        mode="attached",
        database_url=as_sqlalchemy_url(values[defaults.ENV_DATABASE_URL]),
        pgbouncer_url=as_sqlalchemy_url(values[defaults.ENV_PGBOUNCER_URL]),
        admin_dsn=as_libpq_url(values[defaults.ENV_PGBOUNCER_ADMIN_URL]),
    )


def _check_url(name: str, value: str) -> None:
    """Raise a StackError naming the variable unless `value` is a usable PostgreSQL URL."""
    shown = hide_password(value)
    problem = None
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError as exc:
        problem = str(exc)
    else:
        if parts.scheme.split("+")[0] not in ("postgresql", "postgres"):
            problem = "it does not start with postgresql://"
        elif not parts.hostname:
            problem = "it names no host"
        elif not parts.path.strip("/"):
            problem = "it names no database"
    if problem is not None:
        raise StackError(f"{name} is not a usable URL ({problem}): {shown!r}. Expected {_URL_SHAPE}.")


def check_reachable(stack: Stack, timeout: int = _CONNECT_TIMEOUT) -> None:
    """Connect once to each address; the error names the variable that failed, and why."""
    import psycopg  # imported here so the keeper and CLI need only the standard library

    checks = [
        (defaults.ENV_DATABASE_URL, stack.database_dsn, "SELECT 1"),
        (defaults.ENV_PGBOUNCER_URL, stack.pgbouncer_dsn, "SELECT 1"),
        (defaults.ENV_PGBOUNCER_ADMIN_URL, stack.admin_dsn, "SHOW VERSION"),
    ]
    for variable, dsn, query in checks:
        try:
            with psycopg.connect(dsn, connect_timeout=timeout, autocommit=True) as conn:
                conn.execute(query)
        except psycopg.Error as exc:
            text = str(exc).strip()
            reason = _telling(text) if text else type(exc).__name__
            raise StackError(f"{variable} ({hide_password(dsn)}) cannot be used: {reason}. {_advice(text)}") from None


def _telling(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "FATAL" in line or "failed" in line or "refused" in line:
            return line
    return lines[0]


def _advice(text: str) -> str:
    """What to do about a failed connection, from what the server or the network said."""
    if "password authentication failed" in text or "SASL authentication failed" in text:
        return "The password was rejected: check the password (and role) in that URL."
    if "does not exist" in text:
        return "Check the database and role names in that URL."
    if "not allowed" in text or "no such user" in text or "not in admin_users" in text.lower():
        return "That role may not use this database; see README.md for what an attached stack must provide."
    return (
        "Is the stack running? (docker compose ps / ./course status). "
        "Unset the COURSE_* variables to let the notebook start a private stack."
    )


_shared: Stack | None = None


def get_stack() -> Stack:
    """The stack this kernel uses: attached if COURSE_* is set, else private.

    Calling it again (re-running the cell) returns the same stack while it
    works. If this kernel's private stack has died, it prints why and
    starts a new one (whose addresses are new).
    """
    global _shared
    replaced_because = None
    if _shared is not None:
        if not isinstance(_shared, PrivateStack):
            return _shared
        replaced_because = _shared.problem()
        if replaced_because is None and not _shared._stop_requested:
            return _shared
        _shared.stop()
    stack = attached_stack_from_env()
    if stack is None:
        stack = start_private_stack()
    check_reachable(stack)
    _shared = stack
    if replaced_because is not None:
        print(
            f"{replaced_because}; a new stack was started. Its addresses are new: "
            "re-run the cells that create engines or apps."
        )
    return stack
