"""Notebook 04: plumbing for the yield-dependency lessons, and the exercise's check.

The check serves the learner's app, sends it the load that exposes a leak,
and then finds out *which* mistake leaked (the endpoint still opening its
own session, a dependency that returns a session from inside ``async with``,
a dependency that yields but never closes, sessions from the wrong engine)
by looking at the route's dependencies and at what each path left checked
out. Before it judges, and again when it is done, it cleans up what an
attempt leaked, including sessions nobody references any more: those are
collected here, with their warnings caught, instead of flooding a later
cell with ``SAWarning``s at whatever moment the garbage collector runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from fastapi.routing import APIRoute

from ..lab.app_server import ServedApp, served_app
from ..lab.load import closed_loop
from ..lab.local_http import local_client
from ..lab.pool_log import pool_log
from ..lab.pool_recorder import PoolRecorder
from ..lab.settle import settled

T = TypeVar("T")
GC_MESSAGE = "The garbage collector is trying to clean up non-checked-in connection"
#: How long the exercise check waits for connections to come back: a closed session returns its
#: connection within milliseconds of the answer, so whatever is still out after this has leaked.
SETTLE_TIMEOUT = 0.5


def client_for(served: ServedApp) -> httpx.AsyncClient:
    """An HTTP client for a served app."""
    return local_client(served.url, timeout=10)


def hold_times(recorder: PoolRecorder) -> list[float]:
    """Seconds between each 0 -> 1 and the next 1 -> 0 of the checked-out count: how long a lone request held."""
    held, since = [], None
    for t, count in recorder.samples:
        if count >= 1 and since is None:
            since = t
        elif count == 0 and since is not None:
            held.append(t - since)
            since = None
    return held


async def eventually(check: Callable[[], T | Awaitable[T]], timeout: float = 3.0, interval: float = 0.05) -> T:
    """Call `check()` (awaited if need be) until it is truthy or `timeout` s have passed; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)


async def stream_and_watch(engine: Any, served: ServedApp, path: str) -> tuple[list[int], float, list[float]]:
    """Read a streaming response: the pool's checked-out count at each piece, the seconds taken, the hold times."""
    counts = []
    with PoolRecorder(engine) as recorder:
        async with client_for(served) as client:
            started = time.perf_counter()
            async with client.stream("GET", path) as response:
                async for _ in response.aiter_lines():
                    counts.append(engine.pool.checkedout())
            streamed_for = time.perf_counter() - started
        await settled(engine)  # the dependency's exit runs just after the last piece
    return counts, streamed_for, hold_times(recorder)


@dataclass
class Collected:
    """What the garbage collector freed in a `collect_quietly()` block, instead of printing it."""

    warnings: list[warnings.WarningMessage] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)

    @property
    def terminated(self) -> int:
        """Connections SQLAlchemy found only through the garbage collector (and terminated)."""
        return sum(GC_MESSAGE in str(w.message) for w in self.warnings)


@contextlib.contextmanager
def collect_quietly() -> Iterator[Collected]:
    """Catch the pool's error lines and the warnings of the block, and collect garbage at its end."""
    collected = Collected()
    with pool_log(logging.WARNING) as lines, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield collected
        finally:
            gc.collect()
            collected.warnings.extend(caught)
            collected.log_lines.extend(lines)


def session_dependencies(app: Any, path: str) -> list[Callable[..., Any]]:
    """The callables the route at `path` depends on, sub-dependencies included."""
    found: list[Callable[..., Any]] = []

    def walk(dependant: Any) -> None:
        for dependency in dependant.dependencies:
            if dependency.call is not None:
                found.append(dependency.call)
            walk(dependency)

    for route in app.routes:
        if isinstance(route, APIRoute) and route.path == path:
            walk(route.dependant)
    return found


@dataclass
class LookupRun:
    """What one run of the exercise's check measured."""

    known_status: int
    known_left: int  # checked out after the one request for an existing order
    statuses: dict[int, int]
    left: int  # checked out after the 40 requests for an unknown order
    checkouts: int  # requests for a connection the exercise engine saw
    pool_timeouts: int
    errors: list[str]
    terminated: int  # connections left to the garbage collector
    dependencies: list[Callable[..., Any]]


async def check_order_lookup(
    app: Any, engine: Any, *, known_id: int, opened_by_hand: list[Any], path: str = "/orders/{order_id}"
) -> str:
    """Serve the learner's app, find the leak if there is one, clean up, and say what the mistake was."""
    with collect_quietly():  # what an earlier attempt left to the garbage collector goes now, quietly
        pass
    failure = None
    with collect_quietly() as collected:
        try:
            run = await _serve_and_measure(app, engine, known_id)
        except Exception as exc:  # the learner's app may fail in ways the check cannot foresee
            failure = f"{type(exc).__name__}: {exc}"
        finally:
            for session in opened_by_hand:
                await session.close()
            opened_by_hand.clear()
            await engine.dispose()
    if failure is not None:
        return f"not yet: the check could not run your app: {failure}"
    run.terminated = collected.terminated
    run.dependencies = session_dependencies(app, path)
    return diagnose(run)


async def _serve_and_measure(app: Any, engine: Any, known_id: int) -> LookupRun:
    async with served_app(app, name="nb04-exercise") as served:
        with PoolRecorder(engine) as recorder:
            async with client_for(served) as client:
                known = await client.get(f"/orders/{known_id}")
            known_left = await settled(engine, timeout=SETTLE_TIMEOUT)
            unknown = await closed_loop(served.url + "/orders/0", clients=20, requests_per_client=2, timeout=10)
            left = await settled(engine, timeout=SETTLE_TIMEOUT)
    return LookupRun(
        known_status=known.status_code,
        known_left=known_left,
        statuses=unknown.summary()["by_status"],
        left=left,
        checkouts=len(recorder.waits),
        pool_timeouts=recorder.timeouts,
        errors=list(served.errors),
        terminated=0,
        dependencies=[],
    )


def diagnose(run: LookupRun) -> str:
    """Feedback that names the mistake the measurements point to."""
    deps = [call for call in run.dependencies if callable(call)]
    generators = [call for call in deps if inspect.isasyncgenfunction(call) or inspect.isgeneratorfunction(call)]
    leaked = run.left or run.known_left or run.terminated
    evidence = (
        f"(after the run {run.left} connection(s) were still checked out, {run.pool_timeouts} request(s) timed out "
        f"waiting for the pool, {run.terminated} connection(s) were left for the garbage collector)"
    )
    if run.checkouts == 0 and run.known_status in (200, 404):
        return (
            "not yet: the exercise engine lent no connection at all, so your sessions come from another engine. "
            "Use ExerciseSession in the dependency (Session belongs to the notebook's main engine)."
        )
    if leaked and not deps:
        return (
            f"not yet: read_order still opens its session itself, and its 404 path raises before close() {evidence}. "
            "Let a dependency with yield own the session: async with ExerciseSession() as session: yield session."
        )
    if leaked and not generators:
        name = deps[0].__name__
        return (
            f"not yet: {name}() returns the session instead of yielding it. Its async with block closes the session "
            "as the function returns, before the endpoint runs; the endpoint's query then makes the closed session "
            "check out a new connection that nothing gives back, so every request leaks, the 200 one too "
            f"(the one existing order left {run.known_left} checked out) {evidence}. Write yield session inside "
            "the async with block."
        )
    if leaked:
        name = generators[0].__name__
        return (
            f"not yet: {name}() yields the session but does not close it afterwards {evidence}. Put the yield inside "
            "async with ExerciseSession() as session: (or close the session in a finally block)."
        )
    if run.known_status != 200:
        last = run.errors[-1].splitlines()[-1] if run.errors else "nothing logged"
        return f"not yet: an existing order should give 200, got {run.known_status} (server log: {last})"
    if run.statuses != {404: 40}:
        last = run.errors[-1].splitlines()[-1] if run.errors else "nothing logged"
        if run.statuses.get(500):
            return f"not yet: nothing leaked, but {run.statuses[500]} requests got a 500 (server log: {last})"
        return (
            f"almost: nothing leaked, but an unknown order should give 404 every time, got {run.statuses} "
            f"(server log: {last})"
        )
    if not generators:
        return (
            "almost: 40 x 404 and nothing leaked, but the session is not given by a dependency with yield; "
            "that is what makes every future endpoint safe, not just this one."
        )
    return "well done: 40 x 404, nothing left checked out, no pool timeout, nothing left for the garbage collector."
