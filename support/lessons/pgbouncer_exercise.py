"""Notebook 06's exercise: connect_args that survive PgBouncer's transaction pooling.

The check runs the section's load with the learner's connect_args, counts the
errors and the statements left on the server connections, and answers from
what it measured on the installed versions (the branch in ``Branch``).
"""

from __future__ import annotations

from typing import Any

from ..stack import Stack
from .pgbouncer_prepared import Branch, LoadErrors, StatementCensus, transactions_through


def exercise_feedback(
    connect_args: object, run: LoadErrors | None, statements_left: int, tag: str, branch: Branch, problem: str = ""
) -> str:
    """Feedback on the exercise, from what the check measured with the learner's connect_args.

    ``run`` is None when the engines could not run (``problem`` says why);
    ``statements_left`` is how many prepared statements the run added on
    PgBouncer's server connections.
    """
    if not isinstance(connect_args, dict):
        kind = type(connect_args).__name__
        return f"not yet: EXERCISE_CONNECT_ARGS must be a dict (connect_args for create_async_engine), got a {kind}"
    bad = _bad_cache_size(connect_args)
    if bad:
        return bad
    if run is None:
        return f"not yet: the engines did not run ({problem}). Check the names and values in EXERCISE_CONNECT_ARGS."
    name = str((connect_args.get("server_settings") or {}).get("application_name", ""))
    asyncpg_cache_off = connect_args.get("statement_cache_size") == 0
    sqlalchemy_cache_off = connect_args.get("prepared_statement_cache_size") == 0
    if run.errors.get("InvalidSQLStatementNameError"):
        return (
            f"not yet: {run.describe()}. 'does not exist' means a statement prepared under a name in one transaction "
            "was used again in a later one, on another server connection. "
            + (
                "asyncpg's own statement cache is still on: set statement_cache_size=0."
                if not asyncpg_cache_off
                else "Something still names statements (a prepared_statement_name_func?) while SQLAlchemy caches "
                "them: set prepared_statement_cache_size=0 too."
            )
        )
    if run.errors.get("DuplicatePreparedStatementError"):
        return (
            f"not yet: {run.describe()}. 'already exists' means a name this process chose was already taken on "
            "that server connection (by another process, or an earlier kernel): asyncpg still names its "
            "statements. Set statement_cache_size=0."
        )
    if run.failed:
        first = next(iter(run.first.values()))
        return f"not yet: {run.describe()}; the first: {str(first).splitlines()[0]}"
    if not name.startswith(tag):
        return (
            "almost: no errors, but the engines no longer send this notebook's application_name "
            f"(it starts with {tag!r}): keep server_settings in your connect_args."
        )
    if statements_left > 0 and not branch.pgbouncer_tracks_prepared:
        return (
            f"not yet: no errors in this one process, but your engines left {statements_left} named prepared "
            "statements on PgBouncer's server connections. With asyncpg's cache on, every statement gets a name "
            "numbered from 1 in each process; a second worker then collides with them ('already exists', as "
            "the second process in section 3 showed). Set statement_cache_size=0."
        )
    if branch.pgbouncer_tracks_prepared and not asyncpg_cache_off:
        return (
            "well done for this PgBouncer: it tracks prepared statements itself (max_prepared_statements > 0), "
            "so no errors and nothing left behind. Behind a PgBouncer older than 1.21 (or with "
            "max_prepared_statements = 0) the same engines fail: there, set statement_cache_size=0."
        )
    if sqlalchemy_cache_off:
        return (
            f"well done: {run.describe()}, no statement left on the server connections, and the engines keep "
            "their name. Both caches off also works with asyncpg older than 0.31."
        )
    return (
        f"well done on the installed asyncpg: {run.describe()}, no statement left behind, and the engines keep "
        "their name. With asyncpg older than 0.31 this setting fails ('does not exist'): add "
        "prepared_statement_cache_size=0 if your deployments may run an older asyncpg."
    )


def _bad_cache_size(connect_args: dict[str, Any]) -> str:
    """A message when a cache size is not a whole number >= 0 (asyncpg fails on it deep inside), else ""."""
    for key in ("statement_cache_size", "prepared_statement_cache_size"):
        value = connect_args.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"not yet: {key} must be a whole number (0 turns that cache off), got {value!r}"
    return ""


async def check_exercise(stack: Stack, connect_args: object, tag: str, branch: Branch) -> str:
    """Run the exercise's load with the learner's connect_args through ``stack``'s PgBouncer; feedback.

    Before judging, named statements that earlier attempts left on the server
    connections are removed (unless PgBouncer tracks statements itself), so
    each attempt is judged on what it leaves. The engines are always disposed.
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    if not isinstance(connect_args, dict) or _bad_cache_size(connect_args):
        return exercise_feedback(connect_args, None, 0, tag, branch)
    async with StatementCensus(stack) as census:
        if not branch.pgbouncer_tracks_prepared:
            await census.count(clear=True)  # what earlier attempts left is not this attempt's
        before = sum((await census.count()).values())
        engines = []
        run: LoadErrors | None = None
        problem = ""
        try:
            engines = [
                create_async_engine(
                    stack.pgbouncer_url, pool_size=4, max_overflow=0, pool_timeout=10, connect_args=connect_args
                )
                for _ in range(2)
            ]
            run = await transactions_through(engines)
            if run.failed and run.failed == run.transactions and len(run.errors) == 1:
                kind, exc = next(iter(run.first.items()))
                if kind not in ("InvalidSQLStatementNameError", "DuplicatePreparedStatementError"):
                    run, problem = None, f"{kind}: {str(exc).splitlines()[0]}"  # nothing ran: a setting is wrong
        except Exception as exc:  # noqa: BLE001 - a typo in connect_args is feedback, not a broken notebook
            problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        finally:
            for engine in engines:
                await engine.dispose()
        left = sum((await census.count()).values()) - before
    return exercise_feedback(connect_args, run, left, tag, branch, problem)
