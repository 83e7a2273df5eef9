"""A kernel in a learner's Jupyter server, driven through the hub's proxy as a browser would.

The kernel is started with the Jupyter server's REST API
(``/user/<name>/api/kernels``) and its messages travel over the server's
websocket (``.../channels``), both through configurable-http-proxy and
authenticated with the learner's own token. Messages use the JSON form of
the Jupyter messaging protocol (no subprotocol), which JupyterLab also
understands.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
import websocket

READY_TIMEOUT = 60.0
CELL_TIMEOUT = 120.0


@dataclass
class CellRun:
    """What one execute request produced."""

    code: str
    status: str = ""
    stdout: str = ""
    stderr: str = ""
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


class HubKernel:
    """A python3 kernel of ``user``'s server behind the hub at ``hub_url``."""

    def __init__(self, hub_url: str, user: str, token: str) -> None:
        self._headers = {"Authorization": f"token {token}"}
        base = f"{hub_url}/user/{user}/api/kernels"
        reply = requests.post(base, json={"name": "python3"}, headers=self._headers, timeout=30)
        reply.raise_for_status()
        self.id = reply.json()["id"]
        self._url = f"{base}/{self.id}"
        self._session = uuid.uuid4().hex
        self._user = user
        ws_url = self._url.replace("http://", "ws://", 1) + f"/channels?session_id={self._session}"
        self._ws = websocket.create_connection(
            ws_url, header=[f"{k}: {v}" for k, v in self._headers.items()], timeout=READY_TIMEOUT
        )
        self._wait_for_kernel_info()

    def execute(self, code: str, timeout: float = CELL_TIMEOUT) -> CellRun:
        """Run one cell; returns once the kernel is idle again or raises TimeoutError."""
        run = CellRun(code)
        started = time.monotonic()
        msg_id = self._send(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )
        replied = idle = False
        deadline = started + timeout
        while not (replied and idle):
            message = self._receive(deadline, f"cell did not finish within {timeout:.0f} s:\n{code[:300]}")
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if message["channel"] == "shell" and kind == "execute_reply":
                run.status, replied = content["status"], True
            elif kind == "stream":
                if content["name"] == "stdout":
                    run.stdout += content["text"]
                else:
                    run.stderr += content["text"]
            elif kind == "error":
                run.errors.append(f"{content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
        run.seconds = time.monotonic() - started
        return run

    def close(self) -> None:
        """Close the websocket; the kernel lives on until its server stops (as when a tab closes)."""
        self._ws.close()

    def _wait_for_kernel_info(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        msg_id = self._send("kernel_info_request", {})
        while True:
            message = self._receive(deadline, f"the kernel did not answer within {READY_TIMEOUT:.0f} s")
            if message["msg_type"] == "kernel_info_reply" and message["parent_header"].get("msg_id") == msg_id:
                return

    def _send(self, msg_type: str, content: dict[str, Any]) -> str:
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "session": self._session,
            "username": self._user,
            "version": "5.3",
            "date": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        self._ws.send(
            json.dumps(
                {
                    "header": header,
                    "parent_header": {},
                    "metadata": {},
                    "content": content,
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        return msg_id

    def _receive(self, deadline: float, what: str) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(what)
        self._ws.settimeout(remaining)
        try:
            return json.loads(self._ws.recv())
        except websocket.WebSocketTimeoutException:
            raise TimeoutError(what) from None
