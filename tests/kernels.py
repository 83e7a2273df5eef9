"""Real Jupyter kernels for tests that must see what a learner's kernel sees."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

from jupyter_client.manager import KernelManager


class KernelSession:
    """A kernel started with jupyter_client and a way to run cells in it."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(env={**os.environ, **(env or {})})
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    @property
    def pid(self) -> int:
        return self.manager.provisioner.process.pid

    def run(self, code: str, timeout: float = 60) -> str:
        """Execute a cell; return what it printed; raise if it raised."""
        printed: list[str] = []

        def collect(message: dict) -> None:
            if message["msg_type"] == "stream":
                printed.append(message["content"]["text"])
            elif message["msg_type"] == "execute_result":
                printed.append(message["content"]["data"].get("text/plain", "") + "\n")

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=collect)
        content = reply["content"]
        if content["status"] != "ok":
            raise KernelCellError(content.get("ename", "?"), content.get("evalue", ""))
        return "".join(printed)

    def start_cell(self, code: str) -> str:
        """Send a cell without waiting for it (to interrupt it, say)."""
        return self.client.execute(code, stop_on_error=False)

    def reply_to(self, msg_id: str, timeout: float = 30) -> dict:
        while True:
            reply = self.client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply

    def kill_process_group(self) -> None:
        """End the kernel the way nbval does: SIGKILL to its whole process group."""
        os.killpg(os.getpgid(self.pid), signal.SIGKILL)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.stop_channels()
        with contextlib.suppress(Exception):
            if self.manager.is_alive():
                self.manager.shutdown_kernel(now=True)


class KernelCellError(RuntimeError):
    def __init__(self, ename: str, evalue: str) -> None:
        super().__init__(f"{ename}: {evalue}")
        self.ename = ename


@contextlib.contextmanager
def kernel(env: dict[str, str] | None = None) -> Iterator[KernelSession]:
    session = KernelSession(env)
    try:
        yield session
    finally:
        session.close()
