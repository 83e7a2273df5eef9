"""Starting, keeping and stopping the course's PostgreSQL and PgBouncer.

Standard library only: the keeper process runs these modules outside the
kernel's environment, and ``./course`` imports them before any package is
installed. ``tests/stack/test_standard_library_only.py`` keeps it so.
"""

from .attach import attached_stack_from_env, check_reachable, get_stack
from .course_stack import (
    PrivateStack,
    Stack,
    StackError,
    as_libpq_url,
    as_sqlalchemy_url,
    hide_password,
    start_private_stack,
)

__all__ = [
    "PrivateStack",
    "Stack",
    "StackError",
    "as_libpq_url",
    "as_sqlalchemy_url",
    "attached_stack_from_env",
    "check_reachable",
    "get_stack",
    "hide_password",
    "start_private_stack",
]
