"""Notebook 13's capstone without servers: reading the learner's findings and fixes, feedback from evidence,
the service's routers, the traffic's timetable, the loop watch, and the solution shown in the notebook."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from support.lab.leak_detector import HeldConnection
from support.lab.load import LoadResult, RequestRecord
from support.lessons.capstone import service, solution
from support.lessons.capstone.defects import CAUSES, DEFECTS, ENGINE
from support.lessons.capstone.diagnosis import TOTAL, check_diagnosis, normalise_cause, normalise_place
from support.lessons.capstone.evidence import Observation
from support.lessons.capstone.fixes import fix_problems
from support.lessons.capstone.harness import DURATION, TRAFFIC, copy_routers
from support.lessons.capstone.instruments import EndpointPool, Snapshot
from support.lessons.capstone.listing import sections
from support.lessons.capstone.loop_watch import LoopWatch, StallSample
from support.lessons.capstone.traffic import Stream

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "13_capstone_diagnose_an_app.ipynb"
ENDPOINTS = [
    "/reports/sales",
    "/orders/{order_id}",
    "/health",
    "/catalog/items",
    "/catalog/items/{item_id}/price",
    "/catalog/menu.pdf",
    "/orders/{order_id}/eta",
    "/reports/export.csv",
]
SERVICE_FILE = service.__file__


class _Recorder:
    """Just what an Observation reads of a PoolRecorder."""

    waits: list[Any] = []
    timeouts = 12
    peak_checked_out = 3

    def timeline(self) -> tuple[list[float], list[int]]:
        return [0.0], [0]


def _records(count: int, latency: float, status: int | None = 200) -> list[RequestRecord]:
    return [RequestRecord(i * 0.1, latency, status, None if status else "ReadTimeout") for i in range(count)]


def _row(state: str, age: float, query: str) -> dict[str, Any]:
    return {"state": state, "state_age": age, "transaction_age": age, "query": query}


def before_like() -> Observation:
    """An Observation with the evidence the unfixed service leaves: numbers chosen, not measured."""
    results = {
        "/reports/sales?days=30": _records(1, 2.1),
        "/orders/999": _records(1, 0.01, 404),
        "/health": _records(6, 0.15),
        "/catalog/items": _records(8, 0.5, 500),
        "/catalog/items/3/price": _records(4, 0.13),
        "/catalog/menu.pdf": _records(2, 0.04),
        "/orders/7": _records(4, 0.02),
        "/orders/7/eta": _records(4, 0.45),
        "/reports/sales?days=7": _records(18, 0.5),
        "/reports/export.csv": _records(2, 0.02),
    }
    watch = LoopWatch()
    watch.lags = [0.001] * 90 + [0.1] * 10
    watch.stalls = [
        StallSample(0.5, "/catalog/items/{item_id}/price", SERVICE_FILE, 115, "legacy_tax_cents") for _ in range(30)
    ] + [StallSample(0.7, None, None, 0, "")]
    pool = {
        "/reports/sales": EndpointPool(10, 10, [0.5] * 9 + [2.1]),
        "/orders/{order_id}": EndpointPool(3, 2, [0.01, 0.01]),
        "/catalog/items": EndpointPool(4, 4, [0.01] * 4),
        "/orders/{order_id}/eta": EndpointPool(2, 2, [0.45, 0.46], outgoing_calls=2, calls_holding=2),
        "/reports/export.csv": EndpointPool(1, 1, [0.02]),
    }
    held = HeldConnection(
        2.5, f"{SERVICE_FILE}, line 147, in get_order", "row = ...", 4242, SERVICE_FILE, 147, "get_order"
    )
    activity = [
        Snapshot(0.4, [_row("active", 1.9, "SELECT ... pg_sleep($1)")]),
        Snapshot(0.8, [_row("idle in transaction", 0.3, "SELECT address FROM orders WHERE id = $1")]),
        Snapshot(
            2.5, [_row("idle in transaction", 2.5, "SELECT id, item_id, quantity, status FROM orders WHERE id = $1")]
        ),
    ]
    return Observation(
        label="before",
        settings=dict(service.SETTINGS),
        replaced=(),
        streams=TRAFFIC,
        duration=2.0,
        endpoint_of={s.path: next(e for e in ENDPOINTS if _matches(e, s.path.split("?")[0])) for s in TRAFFIC},
        results={path: LoadResult("test", path, records, 3.0) for path, records in results.items()},
        pool=pool,
        still_out=Counter({"/orders/{order_id}": 1}),
        still_out_ages={"/orders/{order_id}": [2.5]},
        pool_log=[],
        recorder=_Recorder(),  # type: ignore[arg-type]
        idle_samples=[],
        checked_out_after=1,
        idle_after=2,
        leaks=[held],
        loop=watch,
        activity=activity,
        errors=["Traceback ...\nsqlalchemy.exc.TimeoutError: QueuePool limit of size 3 overflow 0 reached"] * 12,
        wall_time=3.0,
    )


def _matches(template: str, path: str) -> bool:
    parts, wanted = template.strip("/").split("/"), path.strip("/").split("/")
    return len(parts) == len(wanted) and all(p == w or p.startswith("{") for p, w in zip(parts, wanted))


# ------------------------------------------------------------ reading the learner's words


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("/orders/7", "/orders/{order_id}"),
        ("GET /orders/7/eta", "/orders/{order_id}/eta"),
        ("reports/sales?days=30", "/reports/sales"),
        ("/catalog/items/3/price/", "/catalog/items/{item_id}/price"),
        ("the pool", ENGINE),
        ("Engine", ENGINE),
    ],
)
def test_places_are_read_generously(written: str, read: str):
    assert normalise_place(written, ENDPOINTS) == (read, None)


def test_an_unknown_place_is_answered_with_the_closest_and_the_list():
    place, problem = normalise_place("/order/{id}", ENDPOINTS)
    assert place is None and problem is not None
    assert "did you mean '/orders/{order_id}'" in problem and "'engine'" in problem and "/catalog/menu.pdf" in problem


@pytest.mark.parametrize(
    ("written", "read"),
    [("leak", "leak"), ("Blocking call", "blocking_call"), ("io-in-transaction", "io_in_transaction"),
     ("session leak", "leak"), ("statement_timeout", "missing_timeout")],
)  # fmt: skip
def test_causes_are_read_with_spaces_hyphens_and_common_names(written: str, read: str):
    assert normalise_cause(written) == (read, None)


def test_a_misspelt_cause_gets_a_suggestion_and_the_vocabulary():
    cause, problem = normalise_cause("leaks")
    assert cause is None and problem is not None
    assert "did you mean 'leak'" in problem and all(word in problem for word in CAUSES)
    assert "as text" in (normalise_cause(3)[1] or "")


# ------------------------------------------------------------ feedback on findings


def test_nothing_yet_lists_the_unexplained_symptoms_by_their_evidence():
    feedback = check_diagnosis([], before_like())
    text = str(feedback)
    assert "nothing to check yet" in text and "5 are planted" in text
    assert "1 connection(s) were still checked out" in text
    assert "12 checkouts gave up" in text
    assert "'active' for 1.9 s" in text
    unexplained = text.split("Still unexplained")[1]
    assert not any(culprit in unexplained for culprit in ("/orders/", "/catalog/items/", "/reports/sales"))


def test_the_solution_finds_all_five_and_each_is_backed_by_evidence():
    feedback = check_diagnosis(solution.FINDINGS, before_like())
    assert feedback.complete and len(feedback.found) == TOTAL
    assert sum(line.startswith("finding") and "RIGHT" in line for line in feedback.lines) == 5
    assert "get_order" in str(feedback) and "2 of its 2 calls" in str(feedback)


def test_a_single_dict_and_concrete_paths_are_accepted():
    feedback = check_diagnosis({"endpoint": "/orders/999", "cause": "leak"}, before_like())
    assert feedback.found == {"leak"}
    assert "read '/orders/999' as /orders/{order_id}" in str(feedback)


def test_wrong_cause_at_a_culprit_names_its_evidence_not_the_answer():
    text = str(check_diagnosis([{"endpoint": "/orders/{order_id}/eta", "cause": "leak"}], before_like()))
    assert "does have a problem" in text and "returned (2 of 2)" in text
    assert "io_in_transaction" not in text.split("found 0")[0]


def test_a_victim_is_explained_and_pointed_at_the_tool_for_that_cause():
    text = str(check_diagnosis([{"endpoint": "/catalog/items", "cause": "leak"}], before_like()))
    assert "returned (4 of 4)" in text and "leak detector" in text


def test_the_def_endpoint_is_not_a_blocking_call_and_the_check_says_why():
    text = str(check_diagnosis([{"endpoint": "/catalog/menu.pdf", "cause": "blocking_call"}], before_like()))
    assert "plain def endpoint" in text and "worker thread" in text


def test_pool_too_small_at_an_endpoint_is_sent_to_engine():
    text = str(check_diagnosis([{"endpoint": "/reports/sales", "cause": "pool_too_small"}], before_like()))
    assert "write 'engine'" in text


def test_the_missing_timeout_is_accepted_at_the_endpoint_or_the_engine():
    for place in ("/reports/sales", ENGINE):
        assert check_diagnosis([{"endpoint": place, "cause": "missing_timeout"}], before_like()).found == {
            "missing_timeout"
        }
    assert {DEFECTS[(ENGINE, "missing_timeout")], DEFECTS[("/reports/sales", "missing_timeout")]} == {"missing_timeout"}


def test_input_problems_are_named_and_the_rest_still_checked():
    findings = [
        "leak",
        {"endpiont": "/orders/7", "cause": "leak"},
        {"endpoint": "/orders/{order_id}", "cause": "leak"},
        {"endpoint": "/orders/7", "cause": "leak"},
    ]
    feedback = check_diagnosis(findings, before_like())
    text = str(feedback)
    assert "each finding is a dict" in text and "did you mean 'endpoint'?" in text
    assert "counted once" in text and feedback.found == {"leak"}
    assert "findings must be a list" in str(check_diagnosis("leak", before_like()))


def test_the_check_keeps_no_state():
    evidence = before_like()
    first = str(check_diagnosis(solution.FINDINGS[:2], evidence))
    assert str(check_diagnosis(solution.FINDINGS[:2], evidence)) == first


# ------------------------------------------------------------ fixes


def test_fix_input_problems_are_named():
    problems = fix_problems({"pool_sise": 5, "pool_timeout": "1", "max_overflow": -1}, {"/orders/7": print}, ENDPOINTS)
    text = "\n".join(problems)
    assert "did you mean 'pool_size'?" in text
    assert "without quotes" in text
    assert "'no limit on overflow'" in text
    assert "write the route as '/orders/{order_id}'" in text
    assert fix_problems({"pool_size": 30, "max_overflow": 30}, {}, ENDPOINTS) == [
        "pool_size + max_overflow = 60: more than 40 connections for one worker; "
        "Little's law says how many the traffic needs"
    ]
    assert "must be a function" in "\n".join(fix_problems({}, {"/health": "ok"}, ENDPOINTS))
    assert fix_problems({"statement_timeout": None, "pool_size": 10}, {"/health": service.liveness}, ENDPOINTS) == []


# ------------------------------------------------------------ the service's routers, source, traffic


def test_copied_routers_swap_one_function_and_leave_the_service_alone():
    copies = copy_routers(service.ROUTERS, {"/orders/{order_id}": solution.get_order})
    routes = {r.path: r for router in copies for r in router.routes if isinstance(r, APIRoute)}
    assert routes["/orders/{order_id}"].endpoint is solution.get_order
    assert routes["/orders/{order_id}/eta"].endpoint is service.order_eta
    assert next(r for r in service.orders.routes if r.path == "/orders/{order_id}").endpoint is service.get_order
    assert set(routes) == {r.path for router in service.ROUTERS for r in router.routes}
    with pytest.raises(KeyError):
        copy_routers(service.ROUTERS, {"/nowhere": solution.get_order})


def test_the_listing_has_every_section_of_the_service():
    found = sections()
    assert list(found) == ["settings", "the database", "/health", "/catalog", "/orders", "/reports", "the app"]
    assert "def get_order" in found["/orders"] and "SETTINGS" in found["settings"]


def test_the_traffic_is_a_repeatable_poisson_mix_with_the_rare_requests_at_the_start():
    again = [stream.schedule(DURATION) for stream in TRAFFIC]
    assert again == [stream.schedule(DURATION) for stream in TRAFFIC]
    first = {s.path: s.schedule(DURATION) for s in TRAFFIC if s.start == 0.0}
    assert set(first) == {"/reports/sales?days=30", "/orders/999", "/orders/7/eta"}
    assert first["/reports/sales?days=30"] == first["/orders/999"] == [0.0] and first["/orders/7/eta"][0] == 0.0
    assert all(0 < s.schedule(DURATION)[0] < DURATION for s in TRAFFIC if s.start is None)
    assert Stream("/x", 5, seed=1, start=0.5).schedule(DURATION)[0] == 0.5


def test_the_loop_watch_names_a_blocking_call_and_the_endpoint_it_ran_for():
    def blocking_sdk() -> None:
        time.sleep(0.15)

    async def body() -> LoopWatch:
        tasks: dict[asyncio.Task, str] = {}
        watch = LoopWatch(tasks=tasks)
        await watch.start()

        async def endpoint() -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks[task] = "/blocking"
            blocking_sdk()

        await asyncio.sleep(0.05)
        await asyncio.create_task(endpoint())
        await asyncio.sleep(0.05)
        await watch.stop()
        return watch

    watch = asyncio.run(body())
    places = [(sample.endpoint, sample.function) for sample, _ in watch.places()]
    assert ("/blocking", "blocking_sdk") in places
    assert max(watch.lags) >= 0.1 and watch.blocked_in_application >= 0.05


# ------------------------------------------------------------ the notebook


def test_the_notebook_shows_the_solution_the_proof_applies():
    notebook = json.loads(NOTEBOOK.read_text())
    markdown = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "markdown")
    for function in (solution.get_order, solution.item_price, solution.order_eta):
        assert inspect.getsource(function).strip() in markdown
    for finding in solution.FINDINGS:
        assert json.dumps(finding) in markdown
    assert "<details>" in markdown and "13_capstone" not in markdown
