"""The HTTP client every instrument uses to talk to an app served on this machine.

Two settings matter for such an app, and they were easy to forget one call
at a time. ``trust_env=False``: proxy settings from the environment
(HTTP_PROXY and friends, common on company laptops) must not reroute
requests meant for 127.0.0.1. And no CA bundle for plain http: httpx loads
the certificates for every client it makes (0.02-0.1 s each), which shows
when a load generator makes a client per request; an https address gets one
TLS context, made once and shared.
"""

from __future__ import annotations

import functools
import ssl

import httpx

#: httpx's own default connection limits.
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


def local_client(base_url: str, *, timeout: float, limits: httpx.Limits = DEFAULT_LIMITS) -> httpx.AsyncClient:
    """An httpx client for the app at `base_url` (absolute URLs work too)."""
    verify: bool | ssl.SSLContext = False if httpx.URL(base_url).scheme == "http" else _tls_context()
    return httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits, trust_env=False, verify=verify)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()
