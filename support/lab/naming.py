"""Names that let a notebook find its own connections on a shared server.

Every engine a notebook creates sends an ``application_name`` that starts with
the notebook's tag (``nb03-<pid>``), so ``pg_stat_activity`` and the final
"nothing left on the server" check see this kernel's connections only, even
when several learners share one stack.
"""

from __future__ import annotations

import os
from typing import Any


def notebook_tag(notebook: str) -> str:
    """A tag unique to this kernel, e.g. ``notebook_tag("nb03")`` -> ``"nb03-41234"``."""
    if not notebook or not notebook.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"a notebook tag is letters, digits, '-' and '_', got {notebook!r}")
    return f"{notebook}-{os.getpid()}"


def named(application_name: str, **connect_args: Any) -> dict[str, Any]:
    """``connect_args`` for ``create_async_engine`` that name the connection on the server.

    asyncpg sends ``server_settings`` at connect time; PgBouncer passes
    ``application_name`` on. Extra keyword arguments are added as they are
    (``statement_cache_size=0``); extra ``server_settings`` are merged.
    """
    settings = {"application_name": application_name, **connect_args.pop("server_settings", {})}
    return {"server_settings": settings, **connect_args}
