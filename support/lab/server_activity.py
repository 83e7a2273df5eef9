"""What PostgreSQL itself sees: this notebook's connections in pg_stat_activity.

Give each engine an application_name (``connect_args={"server_settings":
{"application_name": ...}}``) and the server's view of its connections can
be listed by that name. A connection the client has just closed leaves
pg_stat_activity a moment later, so a caller that expects a count can ask
to wait for it, briefly. ``activity()`` adds how long each connection has
been in its state: the age that tells a leak from a busy moment.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import psycopg

from ..stack import Stack

_CONNECT_TIMEOUT = 5


async def backends(
    stack: Stack, application_name: str, *, expect: int | None = None, timeout: float = 3.0
) -> list[tuple[int, str]]:
    """(pid, state) of the server connections whose application_name matches.

    ``application_name`` is a LIKE pattern ("nb03-%" for all of a notebook's
    engines). With ``expect=N`` this polls for at most ``timeout`` seconds
    until N are left, and returns what it last saw either way.
    """
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(stack.database_dsn, connect_timeout=_CONNECT_TIMEOUT, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid, state FROM pg_stat_activity WHERE application_name LIKE %s ORDER BY pid",
                [application_name],
            ).fetchall()
        if expect is None or len(rows) == expect or time.monotonic() > deadline:
            return [(pid, state) for pid, state in rows]
        await asyncio.sleep(0.05)


@dataclass(frozen=True)
class Backend:
    """One server connection as pg_stat_activity shows it, with how long it has been in its state.

    ``in_state`` is ``now() - state_change`` in seconds. For a leaked
    session's connection ("idle in transaction") it grows without end, which
    tells a leak from a busy moment: a healthy transaction leaves that state
    within milliseconds.
    """

    pid: int
    application_name: str
    state: str
    in_state: float
    transaction_age: float | None  # now() - xact_start; None outside a transaction


async def activity(stack: Stack, application_name: str) -> list[Backend]:
    """The server connections whose application_name matches (a LIKE pattern), with their ages."""
    with psycopg.connect(stack.database_dsn, connect_timeout=_CONNECT_TIMEOUT, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, application_name, state,"
            " extract(epoch FROM now() - state_change)::float8,"
            " extract(epoch FROM now() - xact_start)::float8"
            " FROM pg_stat_activity WHERE application_name LIKE %s ORDER BY pid",
            [application_name],
        ).fetchall()
    return [Backend(*row) for row in rows]
