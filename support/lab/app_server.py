"""Serving an ASGI app from inside a running Jupyter kernel.

A notebook cell already runs on the kernel's event loop, so `uvicorn.run()`
and `asyncio.run()` cannot start another one there. Instead the server runs as
a task on the loop the cell is using (`served = await serve(app)`), and keeps
answering requests between cells until it is stopped.

Three things make this comfortable in a notebook:

* the listening socket is bound to 127.0.0.1 port 0 before uvicorn starts, so
  the port is free and known up front and "address already in use" never
  happens, not even when a cell is re-run;
* servers are registered by name, so re-running the cell that serves an app
  stops the old server before the new one starts;
* what uvicorn logs as an error for one of these servers (a traceback from an
  endpoint, a failed startup) is kept in that server's `.errors` list instead
  of being written to stderr, so a notebook can show one failure rather than a
  wall of tracebacks from a load test.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib.util
import logging
import os
import socket
import time
import traceback
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import uvicorn

from .display import notebook_display

_HOST = "127.0.0.1"
_POLL_INTERVAL = 0.01
#: Seconds an idle keep-alive connection stays open on the server. uvicorn's
#: default, 5 s, is also how long httpx keeps an idle connection for reuse, so
#: a client kept across cells that sends again after about 5 s can write its
#: request just as the server closes the socket, and gets RemoteProtocolError
#: ("Server disconnected without sending a response"). With the server waiting
#: longer than any client here, the client always lets go of the connection first.
KEEP_ALIVE_SECONDS = 75
#: How long each escalation step of a stop waits once graceful shutdown is over.
_ESCALATION_GRACE = 1.0

_uvicorn_logger = logging.getLogger("uvicorn.error")
# The server whose task (or a task it started) is running; asyncio copies the
# context into every task and callback, so uvicorn's log calls made on behalf
# of a server can be traced back to it.
_current_server: contextvars.ContextVar[ServedApp | None] = contextvars.ContextVar("current_served_app", default=None)
_registry: dict[str, ServedApp] = {}


class _SignalFreeServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone.

    `Server.serve()` wraps serving in `capture_signals()`, which on the main
    thread installs its own SIGINT/SIGTERM handlers and re-raises the captured
    signals when serving ends. In a kernel, SIGINT is how "Interrupt kernel"
    reaches the running cell, so letting uvicorn take it would turn an
    interrupt into a server shutdown. These servers are stopped explicitly
    with `ServedApp.stop()` instead.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ServedApp:
    """An app being served on 127.0.0.1 by a task on the current event loop.

    Made by `serve()`. `errors` collects, in order, the text of every error
    uvicorn logged for this server (the message and, when there is one, the
    traceback); nothing of it reaches stderr.
    """

    def __init__(self, name: str, app: Any) -> None:
        self.name = name
        self.errors: list[str] = []
        self._socket = _bind_free_port()
        self.port: int = self._socket.getsockname()[1]
        # log_config=None keeps uvicorn from configuring logging for the whole
        # process. access_log=False does touch one global: uvicorn empties the
        # "uvicorn.access" logger's handlers and stops its propagation.
        # Behind Jupyter's proxy the app is reached under a path prefix that the
        # proxy strips; root_path tells the app about it, so that the pages it
        # builds link to that prefix (FastAPI's /docs fetches its OpenAPI schema
        # from root_path + /openapi.json, which is a 404 in the browser without
        # it). Requests straight to 127.0.0.1 are routed as before.
        root_path = (proxied_url(self.port) or "").rstrip("/")
        config = uvicorn.Config(
            app,
            host=_HOST,
            port=self.port,
            root_path=root_path,
            log_config=None,
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
        self._server = _SignalFreeServer(config)
        self._collecting_errors = True
        self._task = asyncio.create_task(self._serve(), name=f"serve {name!r} on {self.url}")

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    @property
    def browser_url(self) -> str:
        """Where a browser reaches the app: through Jupyter's proxy on Binder or a JupyterHub, else directly."""
        return proxied_url(self.port) or self.url

    @property
    def running(self) -> bool:
        return not self._task.done()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ServedApp {self.name!r} at {self.url}, {state}, {len(self.errors)} error(s)>"

    async def logged_errors(self, timeout: float = 2.0) -> list[str]:
        """`errors`, once it has at least one (or after `timeout` s, then perhaps empty).

        An endpoint's exception is logged only after the request's clean-up has
        run (its connection is back in the pool first) and the error response
        has gone out, so a cell that has just seen the pool settle may look a
        moment too early.
        """
        deadline = time.monotonic() + timeout
        while not self.errors and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.errors

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop serving; returns within about `timeout` + 2 s whatever the app does.

        Graceful shutdown lets in-flight requests finish, but in this course
        those are often requests stuck waiting for a database connection. So
        after `timeout` the remaining requests are cancelled, which still lets
        uvicorn run the app's lifespan shutdown (disposing its engine and so
        giving connections back to the database); uvicorn's own `force_exit`
        would skip that. If even that does not end the server, its task is
        cancelled. Stopping a stopped server does nothing.
        """
        if _registry.get(self.name) is self:
            del _registry[self.name]
        if self._task.done():
            # Also the case for a server left behind by an earlier
            # asyncio.run(), which cancelled it: its loop is closed, so
            # waiting on the task there would fail.
            return
        self._server.should_exit = True
        if await _finishes_within(self._task, timeout):
            return
        # Cancelled requests are logged by uvicorn as failures; they are our
        # doing, not the app's, so they are not reported as errors.
        self._collecting_errors = False
        for request in list(self._server.server_state.tasks):
            request.cancel()
        if await _finishes_within(self._task, _ESCALATION_GRACE):
            return
        self._task.cancel()
        await _finishes_within(self._task, _ESCALATION_GRACE)

    async def _serve(self) -> None:
        _current_server.set(self)
        try:
            await self._server.serve(sockets=[self._socket])
        except SystemExit:
            # uvicorn calls sys.exit() when the app's startup fails, after
            # logging why. Raised out of a task, SystemExit would escape the
            # event loop and take the kernel down with it.
            pass
        except Exception:
            self.errors.append(traceback.format_exc().rstrip())
        finally:
            self._socket.close()

    def _keep_log_record(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR and self._collecting_errors:
            self.errors.append(_record_text(record))

    async def _wait_until_started(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._server.started and not self._task.done() and loop.time() < deadline:
            await asyncio.sleep(_POLL_INTERVAL)
        return self._server.started and not self._task.done()


async def serve(app: Any, *, name: str | None = None, ready_timeout: float = 5.0) -> ServedApp:
    """Serve `app` on a free 127.0.0.1 port and return once it accepts requests.

    `name` defaults to the app's title (FastAPI) or name, so re-running the
    cell that builds and serves an app replaces the previous server; two apps
    that should run side by side need different names.

    Raises RuntimeError, with what uvicorn reported, if the app does not start
    within `ready_timeout` seconds (for example when its lifespan startup
    fails).
    """
    name = name or _default_name(app)
    previous = _registry.pop(name, None)
    if previous is not None:
        await previous.stop()
    _uvicorn_logger.addFilter(_divert_served_app_records)  # no-op once added
    served = ServedApp(name, app)
    if not await served._wait_until_started(ready_timeout):
        await served.stop(timeout=_ESCALATION_GRACE)
        reported = "\n".join(served.errors) or (
            f"no error, but the app was not accepting requests after {ready_timeout} s "
            "(is its lifespan startup waiting for something?)"
        )
        raise RuntimeError(f"Could not serve {name!r}; uvicorn reported:\n{reported}")
    _registry[name] = served
    display = notebook_display()
    if display is not None:
        docs = f"{served.browser_url.rstrip('/')}/docs"
        display(
            {"text/plain": f"{name}: {docs}", "text/html": f'{name}: <a href="{docs}" target="_blank">{docs}</a>'},
            raw=True,
        )
    return served


def proxied_url(port: int, environ: Mapping[str, str] | None = None) -> str | None:
    """The path under which Jupyter's server proxy forwards to ``port``, when this kernel has one.

    Binder and JupyterHub run the learner's Jupyter server behind a prefix
    (JUPYTERHUB_SERVICE_PREFIX, e.g. ``/user/ada/``) on a machine the
    learner's browser cannot reach on 127.0.0.1; jupyter-server-proxy
    forwards ``<prefix>proxy/<port>/`` to a port inside it. Elsewhere the
    plain 127.0.0.1 address works and this returns None.
    """
    prefix = (os.environ if environ is None else environ).get("JUPYTERHUB_SERVICE_PREFIX")
    if not prefix or importlib.util.find_spec("jupyter_server_proxy") is None:
        return None
    return f"{prefix.rstrip('/')}/proxy/{port}/"


@contextlib.asynccontextmanager
async def served_app(app: Any, *, name: str | None = None, ready_timeout: float = 5.0) -> AsyncIterator[ServedApp]:
    """`serve()` for an `async with` block, which stops the server at its end."""
    served = await serve(app, name=name, ready_timeout=ready_timeout)
    try:
        yield served
    finally:
        await served.stop()


async def stop_all() -> None:
    """Stop every server `serve()` started, e.g. before a notebook ends."""
    await asyncio.gather(*(served.stop() for served in list(_registry.values())))


def allow_asyncio_run() -> None:
    """Let a pasted script that ends in `asyncio.run(main())` run in a cell.

    Inside a kernel the event loop is already running, so `asyncio.run()`
    refuses to start. nest_asyncio patches asyncio (for the rest of the
    kernel's life) so that the running loop can be re-entered. This exists
    only for copying scripts in unchanged; the course's own code uses
    top-level `await` instead, which needs no patching.
    """
    import nest_asyncio

    nest_asyncio.apply()


def _bind_free_port() -> socket.socket:
    """A socket on a port the OS picks, so it is free and known before serving.

    The protocol must be given as IPPROTO_TCP: asyncio turns Nagle's algorithm
    off (TCP_NODELAY) only on accepted sockets whose `proto` says TCP, and
    with the default proto 0 every response written in two parts (uvicorn
    writes headers and body separately) waits about 40 ms for a delayed ACK.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind((_HOST, 0))
    return sock


def _default_name(app: Any) -> str:
    title = getattr(app, "title", None)
    if isinstance(title, str) and title:
        return title
    return getattr(app, "__name__", type(app).__name__)


async def _finishes_within(task: asyncio.Task[None], timeout: float) -> bool:
    done, _ = await asyncio.wait({task}, timeout=timeout)
    return bool(done)


def _divert_served_app_records(record: logging.LogRecord) -> bool:
    """Logger filter: records made for a served app go to it, not to handlers.

    Records of other uvicorn servers in the process pass through untouched,
    so no handler or propagation setting needs changing.
    """
    served = _current_server.get()
    if served is None:
        return True
    served._keep_log_record(record)
    return False


def _record_text(record: logging.LogRecord) -> str:
    text = record.getMessage().rstrip()
    if record.exc_info:
        text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
    return text
