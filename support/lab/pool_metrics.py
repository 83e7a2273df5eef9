"""Prometheus metrics for SQLAlchemy pools: what an operator can alert on.

``QueuePool.status()`` says how many connections are checked out and idle
right now, which is what a person reads during an incident. An alert needs
more, sampled all the time: how many requests are *waiting* for a
connection, how long checkouts take, how many gave up, and how long the
connections held right now have been held. SQLAlchemy counts none of the
first three publicly (its queue's waiters are private), so this module
counts them itself:

* the pool's ``checkout``, ``checkin``, ``connect``, ``close`` and
  ``invalidate`` events give checkouts, connections opened and closed,
  and the age of each connection and each checkout;
* ``Engine.raw_connection()``, the one place an engine asks its pool for a
  connection, is wrapped on the engine instance: calls in progress are the
  waiting checkouts, their durations the wait histogram, and a
  ``sqlalchemy.exc.TimeoutError`` from it a pool timeout.

Gauges are read at scrape time from the engine's current pool, so they are
right even after ``engine.dispose()`` swapped the pool. Everything is
exposed by one prometheus_client collector in its own registry::

    metrics = PoolMetrics()
    metrics.watch(engine, pool="orders")         # AsyncEngine or Engine
    add_metrics_route(app, metrics)              # GET /metrics on a FastAPI app
    ...
    metrics.stop()                               # detach from every engine

Metric names (label ``pool`` on each): ``db_pool_checked_out``,
``db_pool_idle``, ``db_pool_overflow``, ``db_pool_waiting``,
``db_pool_size``, ``db_pool_capacity``, ``db_pool_longest_checkout_seconds``,
``db_pool_oldest_connection_seconds`` (gauges); ``db_pool_checkouts_total``,
``db_pool_checkout_timeouts_total``, ``db_pool_checkout_errors_total``,
``db_pool_connections_opened_total``, ``db_pool_connections_closed_total``,
``db_pool_connections_invalidated_total`` (counters);
``db_pool_checkout_wait_seconds`` (histogram).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

#: Upper bounds (seconds) of the checkout-wait histogram: from "a connection was idle" to "the default pool_timeout".
WAIT_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_EVENTS = ("checkout", "checkin", "connect", "close", "invalidate")


@dataclass
class _Watched:
    """What is known about one engine's pool: event counts, start times, waits."""

    name: str
    engine: Any  # the sync Engine
    pool: Any  # the pool the listeners were added to
    listeners: dict[str, Callable[..., None]] = field(default_factory=dict)
    checkouts: int = 0
    timeouts: int = 0
    errors: int = 0
    opened: int = 0
    closed: int = 0
    invalidated: int = 0
    waiting: int = 0
    connected_at: dict[int, float] = field(default_factory=dict)  # id(dbapi connection) -> monotonic time
    checked_out_at: dict[int, float] = field(default_factory=dict)  # id(connection record) -> monotonic time
    wait_buckets: list[int] = field(default_factory=lambda: [0] * (len(WAIT_BUCKETS) + 1))
    wait_sum: float = 0.0


class PoolMetrics(Collector):
    """A prometheus_client collector for the pools of one or more engines.

    It registers itself in ``registry`` (a new ``CollectorRegistry`` unless
    given one), so it never collides with metrics registered elsewhere and
    a notebook cell can be re-run. ``watch()`` adds an engine, ``stop()``
    removes all listeners and wrappers again.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._watched: list[_Watched] = []
        self._lock = threading.Lock()
        self.registry.register(self)

    # -- attaching -----------------------------------------------------------

    def watch(self, engine: Any, pool: str) -> None:
        """Count what the pool of ``engine`` (an AsyncEngine or Engine) does, labelled ``pool=<pool>``."""
        sync_engine = getattr(engine, "sync_engine", engine)
        if any(w.name == pool for w in self._watched):
            raise ValueError(f"a pool named {pool!r} is already watched; give each engine its own name")
        if "raw_connection" in vars(sync_engine):
            raise ValueError("this engine is already instrumented (its raw_connection is wrapped)")
        watched = _Watched(pool, sync_engine, sync_engine.pool)
        watched.listeners = {
            "checkout": lambda dbapi, record, proxy: self._on_checkout(watched, record),
            "checkin": lambda dbapi, record: self._on_checkin(watched, record),
            "connect": lambda dbapi, record: self._on_connect(watched, dbapi),
            "close": lambda dbapi, record: self._on_close(watched, dbapi),
            "invalidate": lambda dbapi, record, exc: self._on_invalidate(watched),
        }
        for name, listener in watched.listeners.items():
            event.listen(watched.pool, name, listener)
        original = sync_engine.raw_connection
        sync_engine.raw_connection = lambda: self._timed_checkout(watched, original)
        self._watched.append(watched)

    def stop(self) -> None:
        """Detach from every engine; the collector stays registered and reports nothing more."""
        for watched in self._watched:
            for name, listener in watched.listeners.items():
                if event.contains(watched.pool, name, listener):
                    event.remove(watched.pool, name, listener)
            del watched.engine.raw_connection  # the class's own method shows through again
        self._watched.clear()

    # -- counting ------------------------------------------------------------

    def _timed_checkout(self, watched: _Watched, original: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        with self._lock:
            watched.waiting += 1
        try:
            connection = original()
        except PoolTimeoutError:
            self._finish_wait(watched, started, timeouts=1)
            raise
        except Exception:
            self._finish_wait(watched, started, errors=1)
            raise
        self._finish_wait(watched, started)
        return connection

    def _finish_wait(self, watched: _Watched, started: float, timeouts: int = 0, errors: int = 0) -> None:
        waited = time.perf_counter() - started
        with self._lock:
            watched.waiting -= 1
            watched.timeouts += timeouts
            watched.errors += errors
            watched.wait_buckets[bisect.bisect_left(WAIT_BUCKETS, waited)] += 1
            watched.wait_sum += waited

    def _on_checkout(self, watched: _Watched, record: Any) -> None:
        with self._lock:
            watched.checkouts += 1
            watched.checked_out_at[id(record)] = time.monotonic()

    def _on_checkin(self, watched: _Watched, record: Any) -> None:
        with self._lock:
            watched.checked_out_at.pop(id(record), None)

    def _on_connect(self, watched: _Watched, dbapi_connection: Any) -> None:
        with self._lock:
            watched.opened += 1
            watched.connected_at[id(dbapi_connection)] = time.monotonic()

    def _on_close(self, watched: _Watched, dbapi_connection: Any) -> None:
        with self._lock:
            watched.closed += 1
            watched.connected_at.pop(id(dbapi_connection), None)

    def _on_invalidate(self, watched: _Watched) -> None:
        with self._lock:
            watched.invalidated += 1

    # -- exposing ------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """Every metric family, one sample per watched pool (called by the registry at each scrape)."""
        gauges = {
            "checked_out": "Connections checked out of the pool now (in use by the app).",
            "idle": "Connections open and idle in the pool now.",
            "overflow": "Connections open beyond pool_size now.",
            "waiting": "Checkouts asked for and not answered yet (waiting for a free connection or a new one).",
            "size": "pool_size: connections the pool keeps open.",
            "capacity": "pool_size + max_overflow: the most connections the pool opens (+Inf: no limit).",
            "longest_checkout_seconds": "How long the connection checked out longest ago has been held (0: none).",
            "oldest_connection_seconds": "Age of the oldest open connection of the pool (0: none).",
        }
        counters = {
            "checkouts": ("Connections handed out by the pool.", "checkouts"),
            "checkout_timeouts": (
                "Checkouts that gave up after pool_timeout (sqlalchemy.exc.TimeoutError).",
                "timeouts",
            ),
            "checkout_errors": ("Checkouts that failed otherwise (e.g. the database refused to connect).", "errors"),
            "connections_opened": ("New database connections opened by the pool.", "opened"),
            "connections_closed": ("Database connections closed by the pool (also after invalidation).", "closed"),
            "connections_invalidated": ("Connections invalidated (found broken, or thrown away).", "invalidated"),
        }
        gauge_families = {k: GaugeMetricFamily(f"db_pool_{k}", text, labels=["pool"]) for k, text in gauges.items()}
        counter_families = {
            k: CounterMetricFamily(f"db_pool_{k}", text, labels=["pool"]) for k, (text, _) in counters.items()
        }
        wait = HistogramMetricFamily(
            "db_pool_checkout_wait_seconds",
            "Time from asking the pool for a connection to getting one or an error.",
            labels=["pool"],
        )
        now = time.monotonic()
        with self._lock:
            for watched in self._watched:
                state = pool_state(watched.engine.pool)
                state["waiting"] = watched.waiting
                state["longest_checkout_seconds"] = now - min(watched.checked_out_at.values(), default=now)
                state["oldest_connection_seconds"] = now - min(watched.connected_at.values(), default=now)
                for key, family in gauge_families.items():
                    family.add_metric([watched.name], float(state[key]))
                for key, (_, attribute) in counters.items():
                    counter_families[key].add_metric([watched.name], float(getattr(watched, attribute)))
                cumulative, buckets = 0, []
                for bound, count in zip((*WAIT_BUCKETS, math.inf), watched.wait_buckets):
                    cumulative += count
                    buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
                wait.add_metric([watched.name], buckets, watched.wait_sum)
        yield from gauge_families.values()
        yield from counter_families.values()
        yield wait

    def exposition(self) -> str:
        """The text a scrape of ``/metrics`` returns (Prometheus text format)."""
        return generate_latest(self.registry).decode()


def pool_state(pool: Any) -> dict[str, float]:
    """checked_out, idle, overflow, size and capacity of a pool, from its public methods.

    A QueuePool answers all of them. ``max_overflow`` has no public getter,
    so it is read from the pool's ``_max_overflow`` (-1 means no limit:
    capacity +Inf). A pool without these methods (NullPool) reports 0s and
    an unlimited capacity.
    """
    if not hasattr(pool, "checkedout"):
        return {"checked_out": 0, "idle": 0, "overflow": 0, "size": 0, "capacity": math.inf}
    size, max_overflow = pool.size(), getattr(pool, "_max_overflow", 0)
    return {
        "checked_out": pool.checkedout(),
        "idle": pool.checkedin(),
        "overflow": max(0, pool.overflow()),
        "size": size,
        "capacity": math.inf if max_overflow < 0 else size + max_overflow,
    }


def add_metrics_route(app: Any, metrics: PoolMetrics, path: str = "/metrics") -> None:
    """Serve ``metrics`` as Prometheus text at ``path`` on a FastAPI or Starlette app.

    The route needs no database connection, so it keeps answering while
    the pool is exhausted: exactly when the numbers matter.
    """
    from starlette.responses import Response

    async def metrics_endpoint(request: Any) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.add_route(path, metrics_endpoint, methods=["GET"], include_in_schema=False)
