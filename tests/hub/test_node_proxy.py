"""Installing JupyterHub's proxy: reused once installed, and a clear message when npm is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hub.node_proxy import ProxyInstallError, configurable_http_proxy


def test_without_npm_the_message_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ProxyInstallError, match=r"is not on PATH\. Install them: sudo apt-get install -y nodejs npm"):
        configurable_http_proxy(cache=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*")), "nothing half-installed is left in the cache"


def test_an_installed_proxy_is_reused_without_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    program = tmp_path / "configurable-http-proxy-9.9.9" / "node_modules" / ".bin" / "configurable-http-proxy"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert configurable_http_proxy("9.9.9", cache=tmp_path) == program
