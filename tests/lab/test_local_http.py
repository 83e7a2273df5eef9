"""support.lab.local_http: proxies from the environment ignored, the CA bundle loaded at most once."""

from __future__ import annotations

import ssl

import httpx
import pytest
from fastapi import FastAPI

from support.lab import local_http
from support.lab.app_server import serve
from support.lab.local_http import local_client
from tests.async_bodies import run

pytestmark = pytest.mark.timeout(60)

#: A proxy nobody listens on: a request routed through it fails to connect.
DEAD_PROXY = "http://127.0.0.1:9"


def test_a_proxy_from_the_environment_does_not_reroute_local_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, DEAD_PROXY)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"pong": True}

    async def body() -> tuple[int, type[Exception] | None]:
        served = await serve(app, name="local-http")
        try:
            async with local_client(served.url, timeout=5) as client:
                status = (await client.get("/ping")).status_code
            async with httpx.AsyncClient(base_url=served.url, timeout=5) as trusting:  # httpx's default
                try:
                    await trusting.get("/ping")
                    failure = None
                except httpx.HTTPError as exc:
                    failure = type(exc)
        finally:
            await served.stop()
        return status, failure

    status, failure = run(body())
    assert status == 200
    assert failure is httpx.ProxyError or failure is httpx.ConnectError, "the default client went to the proxy"


def test_the_ca_bundle_is_not_loaded_for_http_and_once_for_https(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = []
    create_default_context = ssl.create_default_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext:  # httpx loads the CA bundle through it
        loads.append(1)
        return create_default_context(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl, "create_default_context", counting)
    local_http._tls_context.cache_clear()

    async def body() -> None:
        for base_url in ["http://127.0.0.1:1"] * 3:
            await local_client(base_url, timeout=1).aclose()
        assert loads == [], "plain http needs no certificates"
        for base_url in ["https://127.0.0.1:1"] * 3:
            await local_client(base_url, timeout=1).aclose()
        assert len(loads) == 1, "one TLS context, shared"
        await httpx.AsyncClient().aclose()
        assert len(loads) == 2, "httpx's own client loads them every time (the counter sees it)"

    run(body())
    local_http._tls_context.cache_clear()
