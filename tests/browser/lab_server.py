"""JupyterLab started by the README's lab command, for tests that drive it from a real browser.

The tests run `./course lab` itself, adding only what a test needs (no browser, a free
port on 127.0.0.1, a random token), so the server they check is the one a learner starts.
`./course lab` installs what is missing first; `./course test` has just done that, so
here it goes straight to JupyterLab.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COURSE = ROOT / "course"


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: where it answers, its token, and the command that started it."""

    base_url: str
    token: str
    command: list[str]
    log: Path

    def page_url(self, path: str) -> str:
        return f"{self.base_url}/lab/tree/{path}?token={self.token}"

    def api(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(
            f"{self.base_url}/api/{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def kernel_state(self, notebook: str) -> str | None:
        """The execution state the server reports for the notebook's kernel ("idle", "busy", ...), or None."""
        for session in self.api("sessions"):
            if session["path"] == notebook and session.get("kernel"):
                return session["kernel"]["execution_state"]
        return None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def setup_is_current() -> bool:
    """Whether `./course lab` will start JupyterLab at once rather than install packages first.

    The same test as `install_python_packages` in `course`: `.venv`'s stamp is the
    hash of requirements.txt and pyproject.toml.
    """
    stamp = ROOT / ".venv" / ".requirements.sha256"
    want = hashlib.sha256((ROOT / "requirements.txt").read_bytes() + (ROOT / "pyproject.toml").read_bytes())
    return stamp.is_file() and stamp.read_text().strip() == want.hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_jupyter_dirs(work_dir: Path) -> dict[str, str]:
    """Settings, workspaces and runtime files of this run only, as on a learner's first start.

    One user setting differs from the defaults: autosave is off, so that running the
    notebooks in the browser never writes their outputs back into the repository.
    """
    settings = work_dir / "user-settings"
    docmanager = settings / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    return {
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(work_dir / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(work_dir / "runtime"),
    }


@contextlib.contextmanager
def course_lab(work_dir: Path, log: Path, start_timeout: float = 90) -> Iterator[Lab]:
    """Run `./course lab` on a free port of 127.0.0.1 until the block ends, then stop it and its kernels.

    Kernels started from the page get `work_dir` as TMPDIR, so the stacks they start
    leave the learner's own stacks alone.
    """
    port, token = free_port(), secrets.token_urlsafe(24)
    command = [
        str(COURSE),
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={ROOT}",
    ]
    env = {**os.environ, **private_jupyter_dirs(work_dir), "TMPDIR": str(work_dir)}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as log_file:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, command, log)
    try:
        _wait_until_answering(lab, process, start_timeout)
        yield lab
    finally:
        _stop(lab, process)


def _wait_until_answering(lab: Lab, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"`{' '.join(lab.command)}` exited with code {process.returncode}:\n{lab.log_tail()}")
        with contextlib.suppress(OSError, urllib.error.URLError):
            lab.api("status")
            return
        time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s:\n{lab.log_tail()}")


def _stop(lab: Lab, process: subprocess.Popen) -> None:
    """Shut the kernels down through the server and stop it (SIGTERM); its process group is killed if it hangs."""
    with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
        for session in lab.api("sessions"):
            lab.api(f"sessions/{session['id']}", method="DELETE")
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
