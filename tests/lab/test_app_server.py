"""support.lab.app_server: real apps served on 127.0.0.1 and asked over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from support.lab.app_server import ServedApp, proxied_url, serve, served_app, stop_all
from tests.async_bodies import run
from tests.kernels import kernel

pytestmark = pytest.mark.timeout(60)


def demo_app(title: str = "demo") -> FastAPI:
    app = FastAPI(title=title)

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"hello": title}

    @app.get("/boom")
    async def boom() -> None:
        raise ValueError(f"kaboom from {title}")

    return app


def uvicorn_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What reached logging handlers from uvicorn.

    Under pytest the root logger has pytest's handlers, so a record that got
    through would be captured here rather than printed to stderr.
    """
    return [record.getMessage() for record in caplog.records if record.name.startswith("uvicorn")]


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=5, trust_env=False)


async def status_of(url: str) -> int:
    async with client() as c:
        return (await c.get(url)).status_code


def test_serves_the_app_over_http() -> None:
    async def body() -> None:
        served = await serve(demo_app())
        assert served.url == f"http://127.0.0.1:{served.port}"
        async with client() as c:
            response = await c.get(served.url)
        assert response.status_code == 200
        assert response.json() == {"hello": "demo"}
        assert served.running and served.errors == []

    run(body())


def test_serving_the_same_name_again_replaces_the_first_server() -> None:
    async def body() -> None:
        first = await serve(demo_app("v1"), name="cell")
        second = await serve(demo_app("v2"), name="cell")
        assert not first.running
        with pytest.raises(httpx.ConnectError):
            await status_of(first.url)
        async with client() as c:
            assert (await c.get(second.url)).json() == {"hello": "v2"}

    run(body())


def test_the_default_name_is_the_app_title_so_a_rerun_cell_replaces_its_server() -> None:
    async def body() -> None:
        first = await serve(demo_app("same title"))
        second = await serve(demo_app("same title"))
        other = await serve(demo_app("another title"))
        assert not first.running
        assert second.running and other.running

    run(body())


def test_a_server_left_behind_by_an_earlier_asyncio_run_is_replaced() -> None:
    async def serve_and_leave_it() -> ServedApp:
        return await serve(demo_app(), name="left behind")

    left_behind = asyncio.run(serve_and_leave_it())
    assert not left_behind.running

    async def body() -> None:
        again = await serve(demo_app(), name="left behind")
        assert await status_of(again.url) == 200

    run(body())


def test_stop_frees_the_port() -> None:
    async def body() -> int:
        served = await serve(demo_app())
        assert await status_of(served.url) == 200
        await served.stop()
        assert not served.running
        return served.port

    port = run(body())
    # SO_REUSEADDR as every server sets it: it tolerates connections in
    # TIME_WAIT but not another socket still listening on the port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()


def test_an_endpoint_exception_is_kept_in_errors_and_not_printed(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> ServedApp:
        served = await serve(demo_app())
        assert await status_of(f"{served.url}/boom") == 500
        return served

    served = run(body())
    assert len(served.errors) == 1
    assert "Exception in ASGI application" in served.errors[0]
    assert "ValueError: kaboom from demo" in served.errors[0]
    assert capfd.readouterr() == ("", "")
    assert uvicorn_records(caplog) == []


def test_errors_are_kept_by_the_server_that_had_them() -> None:
    async def body() -> tuple[ServedApp, ServedApp]:
        failing = await serve(demo_app("failing"))
        healthy = await serve(demo_app("healthy"))
        assert await status_of(f"{failing.url}/boom") == 500
        assert await status_of(healthy.url) == 200
        return failing, healthy

    failing, healthy = run(body())
    assert len(failing.errors) == 1 and "kaboom from failing" in failing.errors[0]
    assert healthy.errors == []


def test_logged_errors_waits_for_an_error_logged_after_the_client_left() -> None:
    app = FastAPI(title="late")

    @app.get("/late-boom")
    async def late_boom() -> None:
        await asyncio.sleep(0.2)
        raise ValueError("raised after the client gave up")

    async def body() -> tuple[list[str], list[str], list[str], float]:
        served = await serve(app)
        quiet = await serve(demo_app("quiet"))
        async with client() as http:
            with contextlib.suppress(httpx.ReadTimeout):
                await http.get(f"{served.url}/late-boom", timeout=0.05)
        right_away = list(served.errors)
        waited = await served.logged_errors(timeout=2)
        started = time.monotonic()
        nothing = await quiet.logged_errors(timeout=0.2)
        return right_away, waited, nothing, time.monotonic() - started

    right_away, waited, nothing, quiet_wait = run(body())
    assert right_away == [], "the error is not logged yet when the client has gone"
    assert len(waited) == 1 and "raised after the client gave up" in waited[0]
    assert nothing == [] and quiet_wait < 1.5, "no error: an empty list after the timeout, not a hang"


def test_the_sigint_handler_is_left_alone_while_serving() -> None:
    async def body() -> None:
        before = signal.getsignal(signal.SIGINT)  # asyncio.run's own handler
        served = await serve(demo_app())
        assert await status_of(served.url) == 200
        assert signal.getsignal(signal.SIGINT) is before
        await served.stop()
        assert signal.getsignal(signal.SIGINT) is before

    run(body())


def test_connections_have_nagle_turned_off() -> None:
    # With Nagle on, uvicorn's two writes per response (headers, then body)
    # cost a delayed ACK each: about 40 ms on every request. Checked on the
    # accepted sockets themselves, through the server's live connections.
    async def body() -> None:
        served = await serve(demo_app())
        async with client() as c:
            assert (await c.get(served.url)).status_code == 200
            connections = served._server.server_state.connections
            assert connections
            for connection in connections:
                sock = connection.transport.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    run(body())


def test_an_idle_connection_outlives_the_clients_expiry() -> None:
    # httpx reuses an idle connection for 5 s, uvicorn's default keep-alive is
    # also 5 s: a long-lived client that sends again after about 5 s can race
    # the server's close and get "Server disconnected without sending a
    # response". The server must wait longer; shown on one raw connection.
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    async def one_answer(reader: asyncio.StreamReader) -> bytes:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        await asyncio.wait_for(reader.readexactly(length), 5)
        return head.split(b"\r\n")[0]

    async def body() -> None:
        expiry = httpx.AsyncHTTPTransport()._pool._keepalive_expiry
        assert expiry is not None
        async with served_app(demo_app()) as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(request)
            assert await one_answer(reader) == b"HTTP/1.1 200 OK"
            await asyncio.sleep(expiry + 0.5)
            writer.write(request)
            assert await one_answer(reader) == b"HTTP/1.1 200 OK", "the server closed an idle connection too soon"
            writer.close()

    run(body())


def test_a_failed_startup_raises_with_what_uvicorn_reported(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        raise ConnectionRefusedError("database unreachable")
        yield

    async def body() -> None:
        with pytest.raises(RuntimeError, match="database unreachable") as raised:
            await serve(FastAPI(title="no database", lifespan=lifespan))
        assert "Application startup failed" in str(raised.value)

    run(body())
    assert capfd.readouterr() == ("", "")
    assert uvicorn_records(caplog) == []


@pytest.mark.stack  # serves an app for seconds: outside the fast set
def test_a_startup_that_never_finishes_raises_instead_of_hanging() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.Event().wait()
        yield

    async def body() -> None:
        with pytest.raises(RuntimeError, match="not accepting requests after 0.3 s"):
            await asyncio.wait_for(
                serve(FastAPI(title="waits forever", lifespan=lifespan), ready_timeout=0.3), timeout=10
            )

    run(body())


def test_stop_ends_a_stuck_request_and_still_runs_the_lifespan_shutdown() -> None:
    shutdown_ran = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        shutdown_ran.append(True)

    app = FastAPI(title="stuck", lifespan=lifespan)

    @app.get("/stuck")
    async def stuck() -> None:
        await asyncio.Event().wait()

    async def body() -> None:
        served = await serve(app)
        async with client() as c:
            request = asyncio.create_task(c.get(f"{served.url}/stuck"))
            while not served._server.server_state.tasks:  # the request has reached the app
                await asyncio.sleep(0.01)
            await asyncio.wait_for(served.stop(timeout=0.2), timeout=5)
            assert not served.running
            with contextlib.suppress(httpx.HTTPError):
                await asyncio.wait_for(request, timeout=5)
        # Cancelling the request was our doing, not an error of the app.
        assert served.errors == []

    run(body())
    assert shutdown_ran == [True]


def test_served_app_stops_the_server_at_the_end_of_the_block() -> None:
    async def body() -> None:
        async with served_app(demo_app()) as served:
            assert await status_of(served.url) == 200
        assert not served.running

    run(body())


def test_stop_all_stops_every_server() -> None:
    async def body() -> None:
        servers = [await serve(demo_app(f"app {i}")) for i in range(3)]
        await stop_all()
        assert not any(served.running for served in servers)

    run(body())


def _wait_for_output(k: Any, msg_id: str, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        message = k.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if (
            message["parent_header"].get("msg_id") == msg_id
            and message["msg_type"] == "stream"
            and text in message["content"]["text"]
        ):
            return


KERNEL_SETUP = """
import asyncio, signal
import httpx
from fastapi import FastAPI
from support.lab.app_server import allow_asyncio_run, serve, served_app

app = FastAPI(title="kernel app")

@app.get("/")
async def hello():
    return {"hello": "kernel"}

@app.get("/boom")
async def boom():
    raise ValueError("kaboom in the kernel")

async def status_of(url):
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        return (await client.get(url)).status_code

sigint_between_cells = signal.getsignal(signal.SIGINT)
"""


@pytest.mark.stack
def test_serving_from_a_real_kernel() -> None:
    with kernel() as k:
        k.run(KERNEL_SETUP, timeout=20)

        # Top-level await, a request from the kernel, an error kept quiet.
        first = k.run("served = await serve(app)\nprint(served.port, await status_of(served.url))", timeout=10)
        first_port, status = first.split()
        assert status == "200"
        printed = k.run(
            "import contextlib, io\n"
            "stderr = io.StringIO()\n"
            "with contextlib.redirect_stderr(stderr):\n"
            "    status = await status_of(served.url + '/boom')\n"
            "print(status, len(served.errors), repr(stderr.getvalue()))",
            timeout=10,
        )
        assert printed == "500 1 ''\n"

        # Re-running the serving cell replaces the server.
        second = k.run("served = await serve(app)\nprint(served.port, await status_of(served.url))", timeout=10)
        assert second.split()[1] == "200" and second.split()[0] != first_port
        assert k.run("print(signal.getsignal(signal.SIGINT) is sigint_between_cells)", timeout=10) == "True\n"

        # "Interrupt kernel" ends the running cell, not the server.
        # stop_on_error=False: otherwise the kernel aborts a cell that
        # arrives just after the interrupted one's error reply.
        msg_id = k.client.execute("print('sleeping', flush=True)\nawait asyncio.sleep(30)", stop_on_error=False)
        _wait_for_output(k, msg_id, "sleeping", timeout=10)
        k.manager.interrupt_kernel()
        reply = k.reply_to(msg_id, timeout=10)["content"]
        assert reply["status"] == "error"
        assert reply["ename"] in ("CancelledError", "KeyboardInterrupt")
        assert k.run("print(await status_of(served.url))", timeout=10) == "200\n"

        # A pasted script ending in asyncio.run(), serving an app of its own.
        script = (
            "allow_asyncio_run()\n"
            "async def main():\n"
            "    async with served_app(app, name='script') as own:\n"
            "        return await status_of(own.url), await status_of(served.url)\n"
            "print(asyncio.run(main()))"
        )
        assert k.run(script, timeout=10) == "(200, 200)\n"
        assert k.run("print(await status_of(served.url))", timeout=10) == "200\n"
        assert k.run("await served.stop()\nprint(served.running)", timeout=10) == "False\n"


def test_the_browser_link_goes_through_jupyters_proxy_on_a_hub() -> None:
    assert proxied_url(8123, {}) is None, "no hub prefix: the plain 127.0.0.1 link works"
    assert proxied_url(8123, {"JUPYTERHUB_SERVICE_PREFIX": "/user/ada/"}) == "/user/ada/proxy/8123/"
    assert proxied_url(8123, {"JUPYTERHUB_SERVICE_PREFIX": "/user/ada"}) == "/user/ada/proxy/8123/"


def test_a_served_app_names_its_browser_link(monkeypatch: pytest.MonkeyPatch) -> None:
    async def body() -> tuple[str, str]:
        async with served_app(FastAPI(title="linked")) as served:
            plain = served.browser_url
            monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")
            return plain, served.browser_url.replace(str(served.port), "PORT")

    plain, proxied = run(body())
    assert plain.startswith("http://127.0.0.1:")
    assert proxied == "/user/ada/proxy/PORT/"


def test_behind_jupyters_proxy_the_docs_page_loads_its_schema_under_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy strips ``/user/ada/proxy/<port>``; the page a browser gets must still point back under it."""
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")

    async def body() -> tuple[str, str, int]:
        async with served_app(demo_app("behind-proxy")) as served:
            async with httpx.AsyncClient(base_url=served.url, timeout=5) as client:
                docs = (await client.get("/docs")).text
                hello = await client.get("/")  # as the proxy forwards it: without the prefix
        return docs, served.browser_url, hello.status_code

    docs, browser_url, hello_status = run(body())
    assert f"url: '{browser_url}openapi.json'" in docs
    assert hello_status == 200
