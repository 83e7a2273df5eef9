"""Notebook 11, stale connections: a firewall that forgets idle connections, and the plumbing around it.

A pooled connection can die while it sits idle in the pool: the server ends it
(a restart, ``pg_terminate_backend``), PgBouncer drops it, or a firewall or NAT
gateway between app and database forgets the connection after some minutes of
silence. The notebook shows each of these for real:

* ``terminate_backends()`` ends this notebook's own server connections, found
  by application_name, and never anybody else's;
* ``IdleFirewall`` is a TCP relay on 127.0.0.1 that behaves like a stateful
  firewall with an idle timeout: after ``idle_limit`` seconds without a byte in
  either direction it forgets the connection, closes its side towards the
  server, and answers the client's next packet with a TCP reset (what a NAT
  gateway does with a packet of a flow it no longer knows);
* ``QueryCounter`` counts what asyncpg sends (its query logger), so that "the
  pre-ping ran" is checked by counting pings, not by timing them;
* the exercise's check lives in ``stale_connections_exercise.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import psycopg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from ..stack import Stack

_HOST = "127.0.0.1"
_CHUNK = 65536
_CONNECT_TIMEOUT = 5
_POSTGRES_PORT = 5432
_firewalls: dict[str, IdleFirewall] = {}


def terminate_backends(stack: Stack, application_name: str) -> list[int]:
    """End the server connections whose application_name matches (a LIKE pattern); their pids.

    This is what a server restart or an administrator does to a connection:
    the backend sends "terminating connection due to administrator command"
    and exits. The call waits (up to 5 s) until each backend is gone, which
    needs PostgreSQL 14 or later. The pattern must start with a fixed name (a
    notebook's tag), so that on a shared server only this notebook's
    connections can match.
    """
    if not application_name or application_name[0] in "%_":
        raise ValueError(f"start the pattern with this notebook's tag, got {application_name!r}")
    with psycopg.connect(stack.database_dsn, connect_timeout=_CONNECT_TIMEOUT, autocommit=True) as conn:
        # In the select list, never in WHERE: only rows that passed the filter are terminated.
        rows = conn.execute(
            "SELECT pid, pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE application_name LIKE %s AND pid <> pg_backend_pid() ORDER BY pid",
            [application_name],
        ).fetchall()
    return [pid for pid, ended in rows if ended]


# "module.Class: message", or a bare name ending in Error, Exception or Warning (not "HINT: ..." or "DETAIL: ...").
_RAISED_LINE = re.compile(r"^(?:(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*|[A-Za-z_]\w*(?:Error|Exception|Warning)): ")


def raised(report: str) -> list[str]:
    """The ``module.Class: message`` lines of a traceback's text, innermost exception first.

    A chained traceback (``raise ... from ...``) names every exception in the
    chain on a line of its own, unindented; these are the lines a log reader
    scans for. Only the first line of each message is kept.
    """
    return [line for line in report.splitlines() if _RAISED_LINE.match(line)]


class QueryCounter:
    """Counts the statements asyncpg sends on an engine's connections, by their text.

    It adds asyncpg's query logger (asyncpg 0.29 and later) to every new
    connection through the pool's ``connect`` event, so create it before the
    engine's first connection. The logger sees what asyncpg's connection
    methods send (transactions' ``BEGIN;`` and ``ROLLBACK;``, ``fetchrow``),
    not SQLAlchemy's own queries, which run as prepared statements.
    SQLAlchemy's pre-ping on asyncpg sends ``BEGIN;``, ``;`` and
    ``ROLLBACK;``; ``pings()`` counts the ``;``.
    asyncpg calls its loggers on the next turn of the event loop, so read the
    counts with ``await counter.totals()``.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._queries: Counter[str] = Counter()
        event.listen(engine.sync_engine, "connect", self._on_connect)

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(self._log)

    def _log(self, record: Any) -> None:
        self._queries[record.query] += 1

    async def totals(self) -> Counter[str]:
        """A copy of the counts so far, after letting pending logger calls run."""
        for _ in range(2):
            await asyncio.sleep(0)
        return Counter(self._queries)

    async def pings(self) -> int:
        """How many pre-pings ran so far (the ``;`` statements)."""
        return (await self.totals())[";"]


@dataclass
class _Flow:
    """One client connection through the firewall, and its server-side twin."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    last_packet: float = field(default_factory=time.monotonic)
    forgotten: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (RST) instead of a polite FIN, as a firewall does for an unknown flow."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class IdleFirewall:
    """A TCP relay on 127.0.0.1 in front of ``target_url`` that forgets connections idle for ``idle_limit`` s.

    Connect through ``firewall.url`` (the target URL with this relay's port).
    While bytes flow it relays them unchanged. Once a connection has been
    silent for longer than ``idle_limit``, the firewall forgets it: it closes
    the server side (the database sees the client go away) and says nothing to
    the client, whose socket still looks open. The client's next packet is
    answered with a reset. ``forgotten`` and ``resets`` count both events.
    Starting a firewall with the name of a running one stops the old one first,
    so a re-run cell does not leave relays behind.
    """

    def __init__(self, target_url: str, idle_limit: float, name: str) -> None:
        if not isinstance(idle_limit, (int, float)) or isinstance(idle_limit, bool) or idle_limit <= 0:
            raise ValueError(f"idle_limit is a number of seconds above 0, got {idle_limit!r}")
        parts = urlsplit(target_url)
        if parts.hostname is None:
            raise ValueError("the target URL needs a host")
        self.name = name
        self.idle_limit = float(idle_limit)
        self.target_url = target_url
        self._target = (parts.hostname, parts.port or _POSTGRES_PORT)
        self._flows: list[_Flow] = []
        self._server: asyncio.Server | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.connections = 0
        self.forgotten = 0
        self.resets = 0

    @classmethod
    async def start(cls, target_url: str, *, idle_limit: float, name: str = "firewall") -> Self:
        """A running firewall in front of ``target_url``; stops a running one of the same name first."""
        previous = _firewalls.pop(name, None)
        if previous is not None:
            await previous.stop()
        firewall = cls(target_url, idle_limit, name)
        firewall._server = await asyncio.start_server(firewall._accept, _HOST, 0)
        firewall._watcher = asyncio.create_task(firewall._watch(), name=f"{name}: idle watch")
        _firewalls[name] = firewall
        return firewall

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the firewall is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """``target_url`` with host and port replaced by this relay's."""
        parts = urlsplit(self.target_url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@{_HOST}:{self.port}" if credentials else f"{_HOST}:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def open_connections(self) -> int:
        """Connections the firewall still relays (forgotten ones excluded)."""
        return sum(1 for flow in self._flows if not flow.forgotten)

    def __repr__(self) -> str:
        state = "running" if self._server is not None else "stopped"
        return (
            f"<IdleFirewall {self.name!r} on {_HOST}:{self.port if self._server else '-'}, "
            f"idle limit {self.idle_limit:g} s, {state}: {self.connections} connections, "
            f"{self.forgotten} forgotten, {self.resets} reset>"
        )

    async def stop(self) -> None:
        """Close the listening socket and every connection; stopping twice does nothing."""
        if _firewalls.get(self.name) is self:
            del _firewalls[self.name]
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if self._watcher is not None:
            self._watcher.cancel()
        tasks = [task for flow in self._flows for task in flow.tasks]
        if self._watcher is not None:
            tasks.append(self._watcher)
        for flow in list(self._flows):
            self._close_flow(flow)
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.wait_for(asyncio.open_connection(*self._target), 5)
        except (OSError, TimeoutError):
            client_writer.close()
            return
        flow = _Flow(client_writer, server_writer)
        self._flows.append(flow)
        self.connections += 1
        flow.tasks = [
            asyncio.create_task(self._client_to_server(flow, client_reader)),
            asyncio.create_task(self._server_to_client(flow, server_reader)),
        ]

    async def _client_to_server(self, flow: _Flow, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(_CHUNK):
                if flow.forgotten:
                    # A packet of a connection the firewall no longer knows: reset.
                    self.resets += 1
                    _reset(flow.client)
                    return
                flow.last_packet = time.monotonic()
                flow.server.write(data)
                await flow.server.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        self._close_flow(flow)  # the client left (or was reset): nothing more to relay

    async def _server_to_client(self, flow: _Flow, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(_CHUNK):
                flow.last_packet = time.monotonic()
                flow.client.write(data)
                await flow.client.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        if not flow.forgotten:
            # The server ended the connection (it was not the firewall): pass the close on.
            self._close_flow(flow)

    def _close_flow(self, flow: _Flow) -> None:
        for writer in (flow.client, flow.server):
            if not writer.is_closing():
                writer.close()
        if flow in self._flows:
            self._flows.remove(flow)

    async def _watch(self) -> None:
        interval = min(0.05, self.idle_limit / 10)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for flow in self._flows:
                if not flow.forgotten and now - flow.last_packet > self.idle_limit:
                    flow.forgotten = True
                    self.forgotten += 1
                    flow.server.close()  # the database side goes away; the client is not told
