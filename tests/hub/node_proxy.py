"""configurable-http-proxy, JupyterHub's proxy, installed from npm into a cache inside the clone.

JupyterHub's proxy is a Node.js program: pip cannot install it. The first run
installs the pinned version with npm into ``.course-tools/node/`` (ignored by git),
in a temporary folder renamed into place only when npm succeeded, so an
interrupted install never leaves a half-installed proxy behind. Later runs
reuse it. The install is bounded in time and fails with a message that says
what to install when npm is missing or the registry cannot be reached.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VERSION = "5.3.0"
CACHE = ROOT / ".course-tools" / "node"
INSTALL_TIMEOUT = 300.0


class ProxyInstallError(RuntimeError):
    """configurable-http-proxy could not be installed; the text says what to do."""


def configurable_http_proxy(version: str = VERSION, cache: Path = CACHE) -> Path:
    """The path of the ``configurable-http-proxy`` program, installing it first when missing."""
    target = cache / f"configurable-http-proxy-{version}"
    program = target / "node_modules" / ".bin" / "configurable-http-proxy"
    if program.exists():
        return program
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        raise ProxyInstallError(
            "JupyterHub's proxy (configurable-http-proxy) needs Node.js and npm, and "
            f"{'npm' if npm is None else 'node'} is not on PATH. Install them: "
            "sudo apt-get install -y nodejs npm (or brew install node)"
        )
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=cache))
    try:
        done = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(staging),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                f"configurable-http-proxy@{version}",
            ],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
        if done.returncode != 0:
            raise ProxyInstallError(
                f"npm install configurable-http-proxy@{version} failed (exit {done.returncode}); "
                f"is the npm registry reachable?\n{done.stderr.strip()[-2000:]}"
            )
        staging.rename(target)
    except subprocess.TimeoutExpired as exc:
        raise ProxyInstallError(
            f"npm install configurable-http-proxy@{version} did not finish within {INSTALL_TIMEOUT:.0f} s; "
            "is the npm registry reachable?"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return program
