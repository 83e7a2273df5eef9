"""A JupyterHub for a room: four learners run notebook 00 at the same time, each with a private stack.

A real JupyterHub (pinned in requirements.txt) with configurable-http-proxy
from npm starts on 127.0.0.1. The test adds four learners through the hub's
REST API, starts their Jupyter servers, and then, in four threads at once,
runs every code cell of notebooks/00_setup_check.ipynb in a kernel of each
learner's server, through the proxy and with the learner's own token, as
JupyterLab in a browser would. Each kernel starts its own private
PostgreSQL and PgBouncer. While all four are up the test measures what each
learner costs in memory (printed; docs/instructors.md quotes it), checks
that an app served in a hub kernel is reachable under the learner's proxy
path, and afterwards that stopping the servers and the hub leaves nothing
behind. Where it can (as root, with a Python other accounts can run) each
learner is a Unix account of their own, as on The Littlest JupyterHub; see
local_hub.py for the other case and why it is the one on the test machines.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests

from tests.hub.hub_kernel import CellRun, HubKernel
from tests.hub.learner_memory import MIB, PARTS, TreeProcess, by_part, learner_tree, pss_mib
from tests.hub.local_hub import Learner, LocalHub, unix_users_possible
from tests.hub.node_proxy import ProxyInstallError, configurable_http_proxy

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "00_setup_check.ipynb"
# Distinct from any real account a machine may have: they become Unix accounts where possible.
LEARNERS = ("ft-ada", "ft-grace", "ft-edsger", "ft-barbara")
LEFTOVER_TIMEOUT = 30.0

# Run after the notebook, in the same kernel: serve the notebook's app again and say where a browser finds it.
SERVE_AGAIN = """\
import os
from support.lab.app_server import serve
hub_served = await serve(app, name="hub-check")
print(json.dumps({"port": hub_served.port, "browser_url": hub_served.browser_url,
                  "prefix": os.environ["JUPYTERHUB_SERVICE_PREFIX"], "database": stack.database_name}))
"""


@dataclass
class LearnerRun:
    learner: Learner
    cells: list[CellRun] = field(default_factory=list)
    served: dict = field(default_factory=dict)
    docs: requests.Response | None = None
    openapi: requests.Response | None = None
    whoami: requests.Response | None = None

    @property
    def stdout(self) -> str:
        return "".join(cell.stdout for cell in self.cells)

    def failed_cell(self) -> CellRun | None:
        return next((cell for cell in self.cells if cell.status != "ok" or cell.errors), None)


@pytest.fixture
def hub() -> Iterator[LocalHub]:
    try:
        proxy = configurable_http_proxy()
    except ProxyInstallError as exc:
        pytest.fail(str(exc))
    state = Path(tempfile.mkdtemp(prefix="five-tables-hub-"))
    # Run as root, PostgreSQL runs as another account that must pass through to each learner's TMPDIR.
    state.chmod(0o755)
    local_hub = None
    try:
        local_hub = LocalHub(state, proxy, unix_users=unix_users_possible())
        yield local_hub
    finally:
        if local_hub is not None:
            local_hub.stop()
            local_hub.remove_accounts()
        shutil.rmtree(state, ignore_errors=True)


def code_cells(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]


def run_notebook_00(hub: LocalHub, learner: Learner) -> LearnerRun:
    """Every code cell of notebook 00 in order (stopping at a failure), then the proxy-path check."""
    run = LearnerRun(learner)
    kernel = HubKernel(hub.url, learner.name, learner.token)
    try:
        for code in ["import json", *code_cells(NOTEBOOK)]:
            run.cells.append(kernel.execute(code))
            if run.failed_cell():
                return run
        run.cells.append(kernel.execute(SERVE_AGAIN))
        if run.failed_cell():
            return run
        run.served = json.loads(run.cells[-1].stdout.strip().splitlines()[-1])
        auth = {"Authorization": f"token {learner.token}"}
        base = f"{hub.url}{run.served['browser_url'].rstrip('/')}"
        run.docs = requests.get(f"{base}/docs", headers=auth, timeout=10)
        openapi = re.search(r"url: '([^']+)'", run.docs.text)
        if openapi:
            run.openapi = requests.get(f"{hub.url}{openapi.group(1)}", headers=auth, timeout=10)
        run.whoami = requests.get(f"{base}/whoami", headers=auth, timeout=10)
        run.cells.append(kernel.execute("await hub_served.stop()"))
        return run
    finally:
        kernel.close()


def memory_report(hub: LocalHub, trees: dict[str, list[TreeProcess]]) -> str:
    header = f"{'learner':10}" + "".join(f"{part:>11}" for part in (*PARTS, "total")) + "   (MiB of PSS)"
    lines = [header]
    for name, tree in trees.items():
        mib = by_part(tree)
        lines.append(f"{name:10}" + "".join(f"{mib[part]:11.1f}" for part in (*PARTS, "total")))
    hub_alone = psutil.Process(hub.process.pid).memory_full_info().pss / MIB
    lines.append(f"the hub itself {hub_alone:.1f} MiB, its proxy {pss_mib(hub.proxy_process()):.1f} MiB")
    return "\n".join(lines)


def wait_until_gone(processes: list[TreeProcess], stack_dirs: list[Path]) -> tuple[list[TreeProcess], list[Path]]:
    deadline = time.monotonic() + LEFTOVER_TIMEOUT
    while True:
        alive = [p for p in processes if p.alive()]
        left = [d for d in stack_dirs if d.exists()]
        if not (alive or left) or time.monotonic() > deadline:
            return alive, left
        time.sleep(0.2)


def test_four_learners_run_notebook_00_through_a_local_jupyterhub(hub: LocalHub, capsys: pytest.CaptureFixture):
    started = time.monotonic()
    learners = [hub.add_learner(name, NOTEBOOK) for name in LEARNERS]
    for learner in learners:
        hub.spawn(learner.name)
    for learner in learners:
        hub.wait_ready(learner.name)
    spawned = time.monotonic()

    with ThreadPoolExecutor(len(learners)) as pool:
        runs = list(pool.map(lambda learner: run_notebook_00(hub, learner), learners))
    ran = time.monotonic()

    for run in runs:
        name, failed = run.learner.name, run.failed_cell()
        assert failed is None, f"{name}: cell failed ({failed.status}, {failed.errors}):\n{failed.code}"
        stderr = "".join(cell.stderr for cell in run.cells)
        assert not stderr, f"{name}: cells wrote to stderr:\n{stderr}"
        assert "PASS  all checks done" in run.stdout, f"{name}: no final PASS line:\n{run.stdout}"
        assert not re.search(r"^FIX", run.stdout, re.MULTILINE), f"{name}: a check printed FIX:\n{run.stdout}"

    stacks = {run.learner.name: re.search(r"Stack: private, in (\S+)", run.stdout) for run in runs}
    assert all(stacks.values()), f"every kernel starts a private stack: {stacks}"
    stack_dirs = {name: Path(match.group(1)) for name, match in stacks.items() if match}
    assert len(set(stack_dirs.values())) == len(learners), f"one stack per learner: {stack_dirs}"
    for learner in learners:
        assert stack_dirs[learner.name].is_relative_to(learner.home / "tmp"), stack_dirs[learner.name]

    # The link serve() prints in a hub kernel leads through the learner's Jupyter server to the app.
    for run in runs:
        name, port = run.learner.name, run.served["port"]
        assert run.served["prefix"] == f"/user/{name}/"
        assert run.served["browser_url"] == f"/user/{name}/proxy/{port}/"
        assert run.docs is not None and run.docs.status_code == 200 and "swagger-ui" in run.docs.text, run.docs
        assert run.openapi is not None and run.openapi.status_code == 200, (
            f"{name}: /docs points its browser at an OpenAPI schema it cannot load: {run.openapi}"
        )
        assert run.whoami is not None and run.whoami.status_code == 200, run.whoami
        assert run.whoami.json()["database"] == run.served["database"]

    trees = {learner.name: learner_tree(hub.server_process(learner.name)) for learner in learners}
    for name, tree in trees.items():
        parts = {process.part for process in tree}
        assert {"server", "kernel", "keeper", "postgres", "pgbouncer"} <= parts, f"{name}: {sorted(parts)}"
        if hub.unix_users:
            owners = {process.user for process in tree}
            assert owners == {name}, f"{name}'s server, kernel and stack run as {owners}"
    report = memory_report(hub, trees)

    for learner in learners:
        hub.stop_server(learner.name)
    for learner in learners:
        hub.wait_stopped(learner.name)
    stopped = time.monotonic()
    every_process = [process for tree in trees.values() for process in tree]
    alive, left = wait_until_gone(every_process, list(stack_dirs.values()))
    assert not alive, f"still running after the servers stopped: {alive}"
    assert not left, f"stack folders left behind: {left}"
    assert not [d for learner in learners for d in (learner.home / "tmp").glob("five-tables-*/stack-*")]

    for learner in learners:
        hub.remove_learner(learner.name)
        assert hub.api("GET", f"users/{learner.name}").status_code == 404
    assert not hub.accounts, f"Unix accounts left: {hub.accounts}"
    proxy = hub.proxy_process()
    hub.stop()
    assert hub.process.returncode is not None
    try:
        proxy.wait(10)
    except psutil.TimeoutExpired:
        pytest.fail(f"the proxy (pid {proxy.pid}) outlived the hub")
    finished = time.monotonic()
    assert not hub.logged_errors(), "\n".join(hub.logged_errors())

    per_learner = ", ".join(f"{sum(cell.seconds for cell in run.cells):.1f}" for run in runs)
    with capsys.disabled():
        print(
            f"\nJupyterHub room, {len(learners)} learners ({hub.spawner}): hub up in {hub.start_seconds:.1f} s; "
            f"servers ready {spawned - started:.1f} s later; notebook 00 in all of them {ran - spawned:.1f} s "
            f"(per learner {per_learner} s); servers stopped and cleaned up in {stopped - ran:.1f} s; "
            f"{finished - started:.1f} s in all\n{report}"
        )
