"""start_workers(): real `uvicorn --workers N` subprocesses, ready, reachable, and gone after stop()."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time

import httpx
import psutil
import pytest

from support.lessons.scaling_workers import WorkerStartError, _ended, imbalance, start_workers, who_answers

pytestmark = pytest.mark.stack  # starts uvicorn worker processes


def _asgi_app(imports: str, body: str, headers: str = "[]") -> str:
    """A bare ASGI app's source that completes lifespan and answers every request with `body`."""
    return f"""
    import {imports}

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({{"type": "lifespan.startup.complete"}})
                elif message["type"] == "lifespan.shutdown":
                    await send({{"type": "lifespan.shutdown.complete"}})
                    return
        body = {body}
        await send({{"type": "http.response.start", "status": 200, "headers": {headers}}})
        await send({{"type": "http.response.body", "body": body}})
"""


PID_APP = _asgi_app("os", """f"{os.getpid()} {os.environ.get('GREETING', '')}".encode()""")
JSON_PID_APP = _asgi_app(
    "json, os", """json.dumps({"worker": os.getpid()}).encode()""", '[(b"content-type", b"application/json")]'
)

HANGING_STARTUP_APP = """
    import asyncio

    async def app(scope, receive, send):
        await receive()
        await asyncio.sleep(3600)  # lifespan startup never completes
"""


def write_app(directory, source: str, name: str = "some_app") -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


def test_workers_answer_from_their_own_processes_and_stop_cleanly(tmp_path):
    write_app(tmp_path, PID_APP)
    workers = start_workers("some_app:app", workers=2, app_dir=tmp_path, env={"GREETING": "hello"}, ready_timeout=30)
    try:
        pids = workers.worker_pids()
        assert len(pids) == 2 and workers.pid not in pids
        # In the caller's process group, so that whatever ends the group ends them too.
        assert {os.getpgid(pid) for pid in [workers.pid, *pids]} == {os.getpgrp()}
        answers = {httpx.get(workers.url, timeout=5, trust_env=False).text for _ in range(10)}
        for answer in answers:
            pid, greeting = answer.split()
            assert int(pid) in pids and greeting == "hello"
        assert workers.log_text().count("Application startup complete.") == 2
    finally:
        exit_code = workers.stop(timeout=5)
    assert exit_code == 0 and not workers.running
    assert not any(psutil.pid_exists(pid) for pid in pids)
    assert workers.stop() == 0, "stopping twice is harmless"


def test_who_answers_counts_random_arrivals_by_worker(tmp_path):
    write_app(tmp_path, JSON_PID_APP)
    workers = start_workers("some_app:app", workers=2, app_dir=tmp_path, ready_timeout=30)
    try:
        answers = asyncio.run(who_answers(workers.url, rate=40, duration=1.0, seed=3))
        pids = workers.worker_pids()
    finally:
        workers.stop(timeout=5)
    assert answers.get(0, 0) == 0, "no request failed"
    assert set(answers) <= set(pids) and sum(answers.values()) >= 20
    assert 1.0 <= imbalance(answers, 2) <= 2.0


def test_an_app_that_fails_to_import_is_reported_with_its_log(tmp_path):
    write_app(tmp_path, "raise RuntimeError('no database URL configured')\n")
    with pytest.raises(WorkerStartError, match="no database URL configured"):
        start_workers("some_app:app", workers=2, app_dir=tmp_path, ready_timeout=30)
    assert _uvicorn_children() == []


def test_a_startup_that_never_completes_times_out_and_leaves_nothing(tmp_path):
    write_app(tmp_path, HANGING_STARTUP_APP)
    with pytest.raises(WorkerStartError, match="0 of 1 workers started within 2 s"):
        start_workers("some_app:app", workers=1, app_dir=tmp_path, ready_timeout=2)
    assert _uvicorn_children() == []


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"app": "some_app:app", "workers": 0}, "workers must be a whole number"),
        ({"app": "some_app", "workers": 1}, "module:attribute"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, words):
    with pytest.raises(ValueError, match=words):
        start_workers(app_dir=tmp_path, **kwargs)


def _uvicorn_children() -> list[int]:
    return [
        child.pid
        for child in psutil.Process().children(recursive=True)
        if child.is_running() and child.status() != psutil.STATUS_ZOMBIE and "uvicorn" in " ".join(child.cmdline())
    ]


def test_a_process_that_exited_but_was_not_yet_collected_counts_as_ended():
    """stop() must not wait for init to collect multiprocessing's resource tracker."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    process = psutil.Process(child.pid)
    try:
        deadline = time.monotonic() + 10
        while process.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.status() == psutil.STATUS_ZOMBIE, "exited, not collected yet"
        assert _ended(process)
    finally:
        child.wait(timeout=5)
    assert _ended(process)
