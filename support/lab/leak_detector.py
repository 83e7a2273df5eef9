"""A leak detector for SQLAlchemy pools: which line checked out the connections still held?

When a pool runs dry, the ``QueuePool limit ... reached`` traceback points at
the request that *wanted* a connection, not at the code that took one and
never gave it back. This detector listens to the pool's ``checkout`` and
``checkin`` events; at each checkout it walks the call stack and remembers the
first frame that belongs to your application (not to SQLAlchemy, asyncio,
Starlette, FastAPI, greenlet or anything under site-packages). ``report()``
then lists the connections held longer than a threshold, oldest first, with
that place and the PostgreSQL backend pid, which you can look up in
``pg_stat_activity``.

It is a single file with no dependency beyond SQLAlchemy; copy it into your
app and start it where the engine is created::

    from sqlalchemy.ext.asyncio import create_async_engine
    from leak_detector import LeakDetector

    engine = create_async_engine(DATABASE_URL)
    detector = LeakDetector(engine, threshold=5.0)   # listens from now on

    # later, e.g. from an admin endpoint, a periodic task, or a debugger:
    for held in detector.report():
        print(f"held {held.age:.1f} s, backend pid {held.pid}, checked out at {held.where}")
        print("    " + held.code)

    detector.stop()                                   # stop listening

Walking the stack costs some microseconds per checkout: cheap enough for a
staging server or for a while in production, not free. Async SQLAlchemy checks
connections out inside a greenlet; the walk continues into the greenlet that
started it, which is where the application's frames are.
"""

from __future__ import annotations

import linecache
import sys
import threading
import time
import types
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event

try:  # greenlet ships with SQLAlchemy's asyncio extra
    import greenlet
except ImportError:  # pragma: no cover
    greenlet = None

#: Frames from files whose path contains one of these are library code, not yours.
LIBRARY_PATHS: tuple[str, ...] = (
    "site-packages",
    "dist-packages",
    "/sqlalchemy/",
    "/asyncio/",
    "/starlette/",
    "/fastapi/",
    "/greenlet/",
    "/anyio/",
    "/uvicorn/",
    "<sqlalchemy generated",
    "/contextlib.py",
)


@dataclass(frozen=True)
class HeldConnection:
    """A connection checked out and not returned yet.

    ``age`` is in seconds. ``where`` is "file, line N, in function"; for code
    typed into a Jupyter cell the file is shown as "Cell In[n]", as in
    IPython's tracebacks. ``code`` is the text of that line. ``pid`` is the
    PostgreSQL backend pid (None if the driver cannot tell).
    """

    age: float
    where: str
    code: str
    pid: int | None
    filename: str
    lineno: int
    function: str

    def as_row(self) -> dict[str, Any]:
        """A dict for a table: age (s), where, code, pid."""
        return {"age (s)": round(self.age, 2), "where": self.where, "code": self.code, "pid": self.pid}


@dataclass
class _Checkout:
    started: float
    frame: tuple[str, int, str] | None
    pid: int | None


class LeakDetector:
    """Remembers where each connection of one engine's pool was checked out.

    ``engine`` is an ``AsyncEngine``, an ``Engine`` or a pool. ``threshold``
    (seconds) is how long a connection may be held before ``report()``
    lists it. Listening starts at once (``start()`` again after ``stop()``);
    connections already checked out before that are not known. Also a
    context manager that stops on exit.
    """

    def __init__(self, engine: Any, threshold: float = 1.0, *, library_paths: tuple[str, ...] = LIBRARY_PATHS) -> None:
        if threshold < 0:
            raise ValueError(f"threshold must be 0 or more seconds, got {threshold!r}")
        self.threshold = threshold
        self.library_paths = library_paths
        self._engine = engine
        self._held: dict[int, _Checkout] = {}
        self._lock = threading.Lock()
        self.listening = False
        self.start()

    @property
    def pool(self):
        """The engine's current pool (``dispose()`` replaces it)."""
        engine = getattr(self._engine, "sync_engine", self._engine)
        return getattr(engine, "pool", engine)

    def start(self) -> None:
        """Listen to checkouts and checkins (again); does nothing if already listening."""
        if self.listening:
            return
        self._listened_pool = self.pool
        event.listen(self._listened_pool, "checkout", self._on_checkout)
        event.listen(self._listened_pool, "checkin", self._on_checkin)
        self.listening = True

    def stop(self) -> None:
        """Stop listening and forget what was held; stopping twice does nothing."""
        if not self.listening:
            return
        event.remove(self._listened_pool, "checkout", self._on_checkout)
        event.remove(self._listened_pool, "checkin", self._on_checkin)
        with self._lock:
            self._held.clear()
        self.listening = False

    def __enter__(self) -> LeakDetector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def checked_out(self) -> int:
        """Connections checked out now (of those checked out while listening)."""
        return len(self._held)

    def report(self, threshold: float | None = None) -> list[HeldConnection]:
        """Connections held for longer than ``threshold`` (default: the detector's), oldest first."""
        limit = self.threshold if threshold is None else threshold
        now = time.monotonic()
        with self._lock:
            held = list(self._held.values())
        rows = []
        for checkout in sorted(held, key=lambda c: c.started):
            age = now - checkout.started
            if age < limit:
                continue
            filename, lineno, function = checkout.frame or ("?", 0, "?")
            code = linecache.getline(filename, lineno).strip() if lineno else ""
            rows.append(
                HeldConnection(
                    age, describe_place(filename, lineno, function), code, checkout.pid, filename, lineno, function
                )
            )
        return rows

    def _on_checkout(self, dbapi_connection: Any, connection_record: Any, connection_proxy: Any) -> None:
        frame = self.application_frame(sys._getframe(1))
        with self._lock:
            self._held[id(connection_record)] = _Checkout(time.monotonic(), frame, _backend_pid(dbapi_connection))

    def _on_checkin(self, dbapi_connection: Any, connection_record: Any) -> None:
        with self._lock:
            self._held.pop(id(connection_record), None)

    def application_frame(self, frame: types.FrameType | None) -> tuple[str, int, str] | None:
        """(filename, line, function) of the first frame outside the library paths.

        When the frames of the current greenlet run out (async SQLAlchemy runs
        its sync core in a greenlet), the walk goes on in the parent
        greenlet, where the awaiting coroutine frames are.
        """
        current = greenlet.getcurrent() if greenlet is not None else None
        while True:
            while frame is not None:
                filename = frame.f_code.co_filename
                if not any(part in filename for part in self.library_paths) and filename != __file__:
                    return filename, frame.f_lineno, frame.f_code.co_name
                frame = frame.f_back
            current = current.parent if current is not None else None
            if current is None:
                return None
            frame = current.gr_frame


def describe_place(filename: str, lineno: int, function: str) -> str:
    """ "file, line N, in function", with Jupyter cells shown as "Cell In[n]"."""
    return f"{_readable_filename(filename)}, line {lineno}, in {function}"


def _readable_filename(filename: str) -> str:
    """IPython names cell code after a temporary file; show its execution count instead."""
    try:
        from IPython import get_ipython
    except ImportError:
        return filename
    shell = get_ipython()
    number = getattr(getattr(shell, "compile", None), "_filename_map", {}).get(filename)
    return f"Cell In[{number}]" if number is not None else filename


def _backend_pid(dbapi_connection: Any) -> int | None:
    """The server's pid for this connection, without a query (asyncpg, psycopg)."""
    driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    for getter in ("get_server_pid",):  # asyncpg
        if hasattr(driver, getter):
            return getattr(driver, getter)()
    info = getattr(driver, "info", None)  # psycopg 3
    return getattr(info, "backend_pid", None)
