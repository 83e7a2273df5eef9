"""Running the capstone's service: its tables, the courier it calls, one run of
traffic with every instrument attached, and a clean-up after each run.

Each ``Capstone.run()`` builds the service afresh (with the settings and
endpoint replacements it is given), serves it for real, puts the traffic mix
on it, records, and takes it all down again: leaked sessions are closed, the
engine disposed, and anything still connected on the server is ended. So a
run never inherits the damage of the one before, and a wrong attempt can be
run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from ...lab.app_server import ServedApp, serve
from ...lab.leak_detector import LIBRARY_PATHS, LeakDetector
from ...lab.naming import named
from ...lab.pool_recorder import PoolRecorder
from ...lab.server_activity import backends
from ...lab.tables import Table
from ...stack import Stack
from .evidence import LEAK_THRESHOLD, Observation
from .instruments import ActivityWatch, PoolByEndpoint, RequestTags, TagRequests
from .loop_watch import LoopWatch
from .service import ROUTERS, SETTINGS, create_app, create_courier_app
from .traffic import Stream, mixed_open_loop, warm_up

#: The ordinary sales report: a week of orders (0.175 s on the server), asked for all the time.
ORDINARY_REPORT = "/reports/sales?days=7"
#: The rare runaway: a month of orders (0.75 s on the server), once, at the start of a run.
RUNAWAY_REPORT = "/reports/sales?days=30"
#: The traffic at peak: what users ask for, and how often (requests per second, Poisson arrivals).
TRAFFIC: tuple[Stream, ...] = (
    Stream(RUNAWAY_REPORT, 1, seed=2, start=0.0),
    Stream("/orders/999", 1, seed=6, start=0.0),
    Stream("/orders/7/eta", 5, seed=58, start=0.0),
    Stream("/health", 7.5, seed=19),
    Stream("/catalog/items", 10, seed=29),
    Stream("/catalog/items/3/price", 5, seed=14),
    Stream("/catalog/menu.pdf", 2.5, seed=12),
    Stream("/orders/7", 5, seed=37),
    Stream(ORDINARY_REPORT, 22.5, seed=257),
    Stream("/reports/export.csv", 2.5, seed=25),
)
#: Sent once before each run, so that the run does not pay for first-request work (lazy imports,
#: statement compilation): one harmless and quick request per endpoint, the slow courier call left out
#: (an unknown item's price is a 404 before the tax SDK is called; a report of 0 days sleeps 0 s).
WARM_UP = (
    "/health",
    "/catalog/items",
    "/catalog/items/999/price",
    "/catalog/menu.pdf",
    "/orders/7",
    "/reports/sales?days=0",
    "/reports/export.csv",
)
#: Seconds during which requests arrive; a run lasts this plus the time its last requests take.
DURATION = 0.65
#: How long the courier company's API takes to answer.
COURIER_DELAY = 0.15
#: How long a run waits for its last requests (and their clean-up) to finish.
SETTLE_TIMEOUT = 4.0

_TABLES = [
    "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price_cents int NOT NULL)",
    "CREATE TABLE orders (id int PRIMARY KEY, item_id int NOT NULL, quantity int NOT NULL, "
    "status text NOT NULL, address text NOT NULL)",
    "CREATE TABLE page_views (id bigserial PRIMARY KEY, page text NOT NULL, at timestamptz DEFAULT now())",
    "CREATE TABLE eta_log (id bigserial PRIMARY KEY, order_id int NOT NULL, minutes int NOT NULL, "
    "at timestamptz DEFAULT now())",
    "INSERT INTO items SELECT i, 'dish ' || i, 450 + 75 * i FROM generate_series(1, 12) AS i",
    "INSERT INTO orders SELECT i, 1 + i % 12, 1 + i % 3, 'delivered', i || ' Table Street' "
    "FROM generate_series(1, 60) AS i",
]


def copy_routers(routers: tuple[APIRouter, ...], replace: dict[str, Callable[..., Any]]) -> tuple[APIRouter, ...]:
    """Copies of the service's routers, with the function behind some route paths swapped.

    FastAPI 0.165's include_router() keeps a reference to the router it
    includes rather than copying its routes, so swapping a route in place
    would change the module's routers for every later app: each app gets
    copies instead. Raises KeyError for a path no router has.
    """
    paths = {route.path for router in routers for route in router.routes if isinstance(route, APIRoute)}
    for path in replace:
        if path not in paths:
            raise KeyError(path)
    copies = []
    for router in routers:
        copy = APIRouter()
        for route in router.routes:
            if isinstance(route, APIRoute):
                endpoint = replace.get(route.path, route.endpoint)
                copy.add_api_route(
                    route.path,
                    endpoint,
                    methods=sorted(route.methods or ()),
                    tags=route.tags,
                    response_class=route.response_class,
                )
        copies.append(copy)
    return tuple(copies)


class Capstone:
    """The service's world on one stack: a schema of its own, the courier app, and runs of traffic."""

    def __init__(self, stack: Stack, tag: str, schema: str, courier: ServedApp) -> None:
        self.stack = stack
        self.tag = tag
        self.schema = schema
        self.courier = courier
        self.service_name = f"{tag}-service"
        self._stopping: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, stack: Stack, tag: str, *, courier_delay: float = COURIER_DELAY) -> Capstone:
        """Create the service's tables (in a schema named after `tag`) and serve the courier."""
        schema = tag.replace("-", "_")
        engine = create_async_engine(stack.database_url, connect_args=named(f"{tag}-setup"))
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))  # a re-run starts clean
                await conn.execute(text(f"CREATE SCHEMA {schema}"))
                await conn.execute(text(f"SET LOCAL search_path = {schema}"))
                for statement in _TABLES:
                    await conn.execute(text(statement))
        finally:
            await engine.dispose()
        courier = await serve(create_courier_app(courier_delay), name=f"{tag}-courier")
        return cls(stack, tag, schema, courier)

    def build(
        self, settings: dict[str, Any] | None = None, replace: dict[str, Callable[..., Any]] | None = None
    ) -> tuple[FastAPI, RequestTags]:
        """The service with `settings` and `replace`d endpoints, and the middleware that tags its requests."""
        routers = copy_routers(ROUTERS, replace or {})
        app = create_app(
            self.stack.database_url,
            courier_url=self.courier.url,
            settings=settings,
            server_settings={"application_name": self.service_name, "search_path": self.schema},
            routers=routers,
        )
        tags = RequestTags([route for router in routers for route in router.routes if isinstance(route, APIRoute)])
        app.add_middleware(TagRequests, tags=tags)
        return app, tags

    def traffic_table(self, streams: tuple[Stream, ...] = TRAFFIC, duration: float = DURATION) -> Table:
        return Table(
            [
                {"request": f"GET {s.path}", "per second": s.rate, "in the run (Poisson)": len(s.schedule(duration))}
                for s in streams
            ],
            title=f"The traffic mix: {duration:g} s of arrivals",
        )

    async def run(
        self,
        *,
        settings: dict[str, Any] | None = None,
        replace: dict[str, Callable[..., Any]] | None = None,
        label: str = "run",
        streams: tuple[Stream, ...] = TRAFFIC,
        duration: float = DURATION,
    ) -> Observation:
        """Serve the service, put the traffic on it with every instrument attached, take it down again."""
        effective = {**SETTINGS, **(settings or {})}
        app, tags = self.build(settings, replace)
        with _no_display():  # serve() shows the docs link; this service is gone before anyone could use it
            served = await serve(app, name=self.service_name)
        db = app.state.db
        try:
            await _open_steady_connections(db.engine, effective["pool_size"])
            await warm_up(served.url, WARM_UP)
            await tags.settled(SETTLE_TIMEOUT)
            await self._stopped()  # the service of the run before is gone before this one's traffic starts
            observation = await self._observe(app, served, tags, effective, replace or {}, label, streams, duration)
        finally:
            await self._take_down(served, db)
        return observation

    async def _observe(
        self,
        app: FastAPI,
        served: ServedApp,
        tags: RequestTags,
        effective: dict[str, Any],
        replace: dict[str, Callable[..., Any]],
        label: str,
        streams: tuple[Stream, ...],
        duration: float,
    ) -> Observation:
        engine = app.state.db.engine
        pool = engine.sync_engine.pool
        loop_watch = LoopWatch(tasks=tags.tasks)
        activity = ActivityWatch(self.stack.database_dsn, self.service_name, f"{self.tag}-watch")
        await activity.start()
        await loop_watch.start()
        recorder = PoolRecorder(engine)
        by_endpoint = PoolByEndpoint(engine)
        app.state.db.courier.event_hooks = {"request": [by_endpoint.note_outgoing_call], "response": []}
        detector = LeakDetector(engine, threshold=LEAK_THRESHOLD, library_paths=LIBRARY_PATHS + ("/support/lab/",))
        idle_samples: list[tuple[float, int]] = []
        sampler = asyncio.create_task(_sample_idle(pool, idle_samples), name="idle connections")
        started = time.perf_counter()
        try:
            results = await mixed_open_loop(served.url, streams, duration=duration)
            await tags.settled(SETTLE_TIMEOUT)
            wall_time = time.perf_counter() - started
            checked_out_after, idle_after = pool.checkedout(), pool.checkedin()
            idle_samples.append((time.perf_counter() - started, idle_after))
            await activity.snapshot()
            leaks = detector.report()
            still_out, still_out_ages = by_endpoint.still_out(), by_endpoint.still_out_ages()
        finally:
            sampler.cancel()
            detector.stop()
            by_endpoint.stop()
            recorder.stop()
            await loop_watch.stop()
            await activity.stop()
        return Observation(
            label=label,
            settings=effective,
            replaced=tuple(replace),
            streams=streams,
            duration=duration,
            endpoint_of={s.path: tags.endpoint_of(_scope(s.path)) for s in streams},
            results=results,
            pool=by_endpoint.by_endpoint,
            still_out=still_out,
            still_out_ages=still_out_ages,
            pool_log=by_endpoint.log,
            recorder=recorder,
            idle_samples=idle_samples,
            checked_out_after=checked_out_after,
            idle_after=idle_after,
            leaks=leaks,
            loop=loop_watch,
            activity=activity.snapshots,
            errors=list(served.errors),
            wall_time=wall_time,
        )

    async def _take_down(self, served: ServedApp, db: Any) -> None:
        """Close what the run leaked, end every connection of the service, and stop serving it.

        The engine is disposed here (the app's lifespan would do it only once uvicorn's shutdown,
        0.1-0.2 s of fixed waits, is under way), so that the server can be checked at once. The
        stop, which then holds no connection, finishes in the background; the next run and
        ``close()`` wait for it.
        """
        registry = db.ScopedSession.registry.registry
        for session in list(registry.values()):
            await session.close()
        registry.clear()
        await db.engine.dispose()
        stopping = asyncio.create_task(served.stop(), name=f"stop {self.service_name}")
        self._stopping.add(stopping)
        stopping.add_done_callback(self._stopping.discard)
        await asyncio.sleep(0)  # lets the stop begin: it takes the service out of serve()'s registry at once
        if await backends(self.stack, self.service_name, expect=0, timeout=2.0):
            await asyncio.to_thread(self._terminate, self.service_name)
            await backends(self.stack, self.service_name, expect=0, timeout=2.0)

    async def _stopped(self) -> None:
        """Wait for the services of earlier runs to stop."""
        await asyncio.gather(*self._stopping)

    def _terminate(self, application_name: str) -> None:
        with psycopg.connect(self.stack.database_dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                [application_name],
            )

    async def close(self) -> None:
        """Stop the courier and drop the service's schema; nothing of the capstone stays on the server."""
        await self._stopped()
        await self.courier.stop()
        engine = create_async_engine(self.stack.database_url, connect_args=named(f"{self.tag}-setup"))
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE"))
        finally:
            await engine.dispose()


async def _open_steady_connections(engine: Any, connections: int) -> None:
    """Open the pool's steady connections before the traffic, as a service that has been up for a while has."""
    taken = await asyncio.gather(*(engine.connect() for _ in range(connections)))  # at once: a run starts sooner
    await asyncio.gather(*(conn.close() for conn in taken))


async def _sample_idle(pool: Any, samples: list[tuple[float, int]], every: float = 0.05) -> None:
    started = time.perf_counter()
    while True:
        samples.append((time.perf_counter() - started, pool.checkedin()))
        await asyncio.sleep(every)


@contextlib.contextmanager
def _no_display() -> Iterator[None]:
    """Keep what the block displays in a notebook out of the cell's output."""
    try:
        from IPython.utils.capture import capture_output
    except ImportError:  # pragma: no cover - IPython comes with the course
        yield
        return
    with capture_output(stdout=False, stderr=False, display=True):
        yield


def _scope(path: str) -> dict[str, Any]:
    """Just enough of an ASGI scope for route matching."""
    return {"type": "http", "path": path.split("?")[0], "root_path": "", "method": "GET"}
