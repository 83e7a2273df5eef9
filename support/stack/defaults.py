"""The settings every course stack shares, wherever it runs.

The private stack a kernel starts, docker-compose.yml and the Binder image all
describe the same database: one superuser role, one database, PgBouncer in
transaction mode in front of it. Keeping the numbers in one place lets a test
check that docker-compose.yml agrees with them.
"""

from __future__ import annotations

ROLE = "course"
DATABASE = "course"

#: PostgreSQL settings of an ordinary small server. A notebook that needs a
#: tighter limit asks for its own private server or sets a role limit.
POSTGRES_SETTINGS: dict[str, str] = {
    "max_connections": "100",
}

#: PgBouncer settings: transaction pooling with a server pool of 20.
#: query_wait_timeout is 10 s, not PgBouncer's 120 s: a client that waits
#: for a server connection (all busy, or the server is down) gets an error
#: within a classroom's patience instead of a cell that hangs for two minutes.
PGBOUNCER_SETTINGS: dict[str, str] = {
    "pool_mode": "transaction",
    "default_pool_size": "20",
    "max_client_conn": "2000",
    "query_wait_timeout": "10",
}

#: The names of the environment variables that attach notebooks to a stack
#: started by other means (docker compose, Binder, a workshop machine).
ENV_DATABASE_URL = "COURSE_DATABASE_URL"
ENV_PGBOUNCER_URL = "COURSE_PGBOUNCER_URL"
ENV_PGBOUNCER_ADMIN_URL = "COURSE_PGBOUNCER_ADMIN_URL"
ATTACH_VARIABLES = (ENV_DATABASE_URL, ENV_PGBOUNCER_URL, ENV_PGBOUNCER_ADMIN_URL)
