"""Reading PgBouncer's admin console (SHOW POOLS, SHOW STATS, SHOW CONFIG ...).

The console accepts only PostgreSQL's simple query protocol. asyncpg uses
that protocol only for an argument-less ``execute()``, which returns a status
string and no rows; every row-returning call uses the extended protocol,
which the console refuses. psycopg in autocommit mode reads the rows.
"""

from __future__ import annotations

import psycopg

from ..stack import Stack
from .tables import Table

_CONNECT_TIMEOUT = 3


def show(stack: Stack, what: str, *, columns: list[str] | None = None) -> Table:
    """Run ``SHOW <what>`` on the admin console, e.g. show(stack, "POOLS")."""
    if not what.replace("_", "").isalpha():
        raise ValueError(f"expected a SHOW subject like POOLS or STATS, got {what!r}")
    with psycopg.connect(stack.admin_dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT) as conn:
        cursor = conn.execute(f"SHOW {what}")
        names = [c.name for c in cursor.description or []]
        rows = [dict(zip(names, values)) for values in cursor.fetchall()]
    return Table(rows, columns or names, title=f"SHOW {what.upper()}")


def version(stack: Stack) -> str:
    """PgBouncer's version string, e.g. "PgBouncer 1.18.0"."""
    return str(show(stack, "VERSION").rows[0]["version"])
