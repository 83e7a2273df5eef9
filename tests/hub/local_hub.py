"""A real JupyterHub on 127.0.0.1, started for a test and stopped afterwards.

The hub runs the pinned ``jupyterhub`` from this environment with
configurable-http-proxy from npm, a config file written here, and the
DummyAuthenticator (no passwords: the test logs in through the REST API with
tokens). Every learner has a home folder of their own with a TMPDIR in it,
so each learner's kernels keep their private stacks in a folder of their own.

Which spawner, chosen by `unix_users_possible()`:

* LocalProcessSpawner with a real Unix account per learner, as on The
  Littlest JupyterHub: each learner's server, kernels and stacks run as that
  account. Only possible as root, and when another account can run this
  environment's Python;
* otherwise SimpleLocalProcessSpawner: every learner's server runs as the
  hub's own account. A virtualenv made from an interpreter under root's 0700
  home (pyenv, as on the course's test machines and CI) cannot be run by any
  other account, so this is what runs there.
"""

from __future__ import annotations

import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

API_TIMEOUT = 10.0
START_TIMEOUT = 60.0
SPAWN_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
SERVICE = "room-test"
ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
# Written by tests/hub/local_hub.py for one test run.
import os

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{state}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{state}/jupyterhub.pid"
c.ConfigurableHTTPProxy.command = ["{proxy}"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = "{state}/proxy.pid"

# A spawn request answers at once (202) instead of waiting up to 10 s for the server.
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}

c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True

# A service whose token the test uses to add users, start and stop their servers
# and make a token for each learner.
c.JupyterHub.services = [{{"name": "{service}", "api_token": "{token}"}}]
c.JupyterHub.load_roles = [{{
    "name": "{service}",
    "scopes": ["admin:users", "admin:servers", "tokens", "access:servers"],
    "services": ["{service}"],
}}]

c.JupyterHub.spawner_class = "{spawner}"
c.SimpleLocalProcessSpawner.home_dir_template = "{homes}/{{username}}"
c.Spawner.cmd = ["{singleuser}"]
c.Spawner.args = {args}
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = {spawn_timeout:.0f}
c.Spawner.http_timeout = {spawn_timeout:.0f}
c.Spawner.environment = {{
    "PYTHONPATH": "{repo}",
    # Each learner's private stacks live under their own folder.
    "TMPDIR": lambda spawner: f"{homes}/{{spawner.user.name}}/tmp",
}}
"""


@dataclass
class Learner:
    name: str
    home: Path
    token: str = ""


def unix_users_possible() -> bool:
    """Root, and another account (nobody) can import jupyterhub and the course with this environment's Python."""
    if os.geteuid() != 0:
        return False
    probe = [sys.executable, "-c", "import jupyterhub, support"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(
            ["runuser", "-u", "nobody", "--", *probe], env=env, cwd="/", capture_output=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalHub:
    """A JupyterHub process with its proxy; ``url`` is the proxy's public address."""

    def __init__(self, state: Path, proxy: Path, *, unix_users: bool) -> None:
        self.state = state
        self.unix_users = unix_users
        self.spawner = "LocalProcessSpawner" if unix_users else "SimpleLocalProcessSpawner"
        self.accounts: list[str] = []
        self.homes = state / "home"
        self.homes.mkdir(mode=0o755)
        self.token = secrets.token_hex(32)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        bin_dir = Path(sys.executable).parent
        config = CONFIG.format(
            port=self.port,
            hub_port=free_port(),
            proxy_api_port=free_port(),
            state=state,
            proxy=proxy,
            service=SERVICE,
            token=self.token,
            homes=self.homes,
            singleuser=bin_dir / "jupyterhub-singleuser",
            spawner="localprocess" if unix_users else "simple",
            # jupyter_server refuses to run as root unless told to.
            args=["--allow-root"] if os.geteuid() == 0 and not unix_users else [],
            spawn_timeout=SPAWN_TIMEOUT,
            repo=ROOT,
        )
        (state / "jupyterhub_config.py").write_text(config)
        self.log_path = state / "jupyterhub.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [str(bin_dir / "jupyterhub"), "-f", str(state / "jupyterhub_config.py")],
            cwd=state,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
        )
        started = time.monotonic()
        self._wait_until(lambda: self._answers(), START_TIMEOUT, "the hub did not answer on its API")
        self.start_seconds = time.monotonic() - started

    # -- the REST API, as the admin service --------------------------------

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        """A request to ``<hub>/hub/api/<path>`` with the service's token (or ``token``)."""
        headers = {"Authorization": f"token {token or self.token}"}
        return requests.request(method, f"{self.url}/hub/api/{path}", headers=headers, timeout=API_TIMEOUT, **kwargs)

    def add_learner(self, name: str, notebook: Path) -> Learner:
        """A hub user (and Unix account) with a home folder holding ``notebook``, and a token of their own."""
        home = self.homes / name
        (home / "tmp").mkdir(parents=True, mode=0o755)
        (home / notebook.name).write_bytes(notebook.read_bytes())
        if self.unix_users:
            self._add_account(name, home)
        self._check(self.api("POST", f"users/{name}"), 201)
        reply = self._check(self.api("POST", f"users/{name}/tokens", json={"note": "hub room test"}), 201)
        return Learner(name, home, reply.json()["token"])

    def spawn(self, name: str) -> None:
        """Ask for the learner's server; `wait_ready` waits for it."""
        reply = self.api("POST", f"users/{name}/server")
        if reply.status_code not in (201, 202):
            raise HubError(f"spawning {name}'s server: {reply.status_code} {reply.text}", self)

    def wait_ready(self, name: str, timeout: float = SPAWN_TIMEOUT) -> None:
        def ready() -> bool:
            server = self._check(self.api("GET", f"users/{name}"), 200).json()["servers"].get("")
            return bool(server and server["ready"])

        self._wait_until(ready, timeout, f"{name}'s server did not become ready")

    def stop_server(self, name: str) -> None:
        reply = self.api("DELETE", f"users/{name}/server")
        if reply.status_code not in (202, 204):
            raise HubError(f"stopping {name}'s server: {reply.status_code} {reply.text}", self)

    def wait_stopped(self, name: str, timeout: float = STOP_TIMEOUT) -> None:
        def stopped() -> bool:
            return not self._check(self.api("GET", f"users/{name}"), 200).json()["servers"]

        self._wait_until(stopped, timeout, f"{name}'s server did not stop")

    def remove_learner(self, name: str) -> None:
        self._check(self.api("DELETE", f"users/{name}"), 204)
        if name in self.accounts:
            subprocess.run(["userdel", name], check=True, timeout=30)
            self.accounts.remove(name)

    def remove_accounts(self) -> None:
        """The Unix accounts a failed test left behind."""
        for name in list(self.accounts):
            subprocess.run(["userdel", name], timeout=30)
            self.accounts.remove(name)

    def _add_account(self, name: str, home: Path) -> None:
        try:
            pwd.getpwnam(name)
        except KeyError:
            pass
        else:
            raise HubError(f"a Unix account {name!r} exists already; if an earlier run left it: userdel {name}", self)
        subprocess.run(
            ["useradd", "--home-dir", str(home), "--no-create-home", "--user-group", "--shell", "/bin/bash", name],
            check=True,
            timeout=30,
        )
        self.accounts.append(name)
        subprocess.run(["chown", "-R", f"{name}:{name}", str(home)], check=True, timeout=30)

    # -- processes -----------------------------------------------------------

    def server_process(self, name: str) -> psutil.Process:
        """The learner's Jupyter server: the hub's child whose environment names the learner."""
        for child in psutil.Process(self.process.pid).children():
            try:
                if child.environ().get("JUPYTERHUB_USER") == name:
                    return child
            except psutil.Error:
                continue
        raise HubError(f"no server process for {name}", self)

    def proxy_process(self) -> psutil.Process:
        pid = int((self.state / "proxy.pid").read_text())
        return psutil.Process(pid)

    def stop(self) -> None:
        """SIGTERM, as systemd stops a hub; it stops the proxy (which it started) and then exits."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
                    raise HubError(f"the hub did not stop within {STOP_TIMEOUT:.0f} s of SIGTERM", self) from None
        finally:
            self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def logged_errors(self) -> list[str]:
        """Lines the hub and the learners' servers logged at error level, and tracebacks."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [line for line in lines if line.startswith(("[E ", "Traceback"))]

    # -- helpers ---------------------------------------------------------------

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise HubError(f"the hub exited with code {self.process.returncode}", self)
        try:
            return self.api("GET", "").status_code == 200
        except requests.ConnectionError:
            return False

    def _check(self, reply: requests.Response, status: int) -> requests.Response:
        if reply.status_code != status:
            raise HubError(f"{reply.request.method} {reply.url}: {reply.status_code} {reply.text}", self)
        return reply

    def _wait_until(self, condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise HubError(f"{what} within {timeout:.0f} s", self)
            time.sleep(0.2)


class HubError(RuntimeError):
    """Something the hub did not do; the message ends with the tail of its log."""

    def __init__(self, message: str, hub: LocalHub) -> None:
        super().__init__(f"{message}\n--- jupyterhub.log (last lines) ---\n{hub.log_tail()}")
