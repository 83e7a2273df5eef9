"""Notebook 05: what a leak costs in memory, and the leak-hunt exercise's check.

The check validates what the learner typed (a function's name, as a string),
names what is missing (no detector, a threshold too high, the wrong
function), and afterwards stops the detector and closes what the exercise
app leaked, so it can be run again at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..lab.leak_detector import LeakDetector


def backend_private_memory(pid: int) -> int | None:
    """Bytes a PostgreSQL backend process has to itself (Private_Clean + Private_Dirty), or None.

    Read from ``/proc/<pid>/smaps_rollup``, so only when the server runs on
    this machine (Linux) and its processes are readable by this user; an
    attached server in a container or elsewhere gives None.
    """
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    private = 0
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("Private_Clean", "Private_Dirty"):
            private += int(value.split()[0]) * 1024  # the kernel writes kB
    return private or None


def leak_hunt_feedback(detector: LeakDetector | None, leaky_endpoint: object, *, checked_out: int) -> str:
    """Feedback on the exercise: did the learner start a detector in time, and name the right function?"""
    if detector is not None and not isinstance(detector, LeakDetector):
        return f"not yet: exercise_detector should be a LeakDetector(exercise_engine, threshold=...), got {detector!r}"
    if leaky_endpoint is not None and not isinstance(leaky_endpoint, str):
        name = getattr(leaky_endpoint, "__name__", None)
        hint = f" such as {name!r}" if name else ""
        return f"not yet: set leaky_endpoint to the function's name as a string{hint}, got {leaky_endpoint!r}"
    if detector is None:
        return (
            "not yet: create exercise_detector = LeakDetector(exercise_engine, threshold=...) in the exercise cell, "
            "before the traffic runs"
        )
    found = detector.report()
    if not found:
        return (
            f"not yet: {checked_out} connection(s) are checked out, but none has been held longer than the "
            f"threshold ({detector.threshold:g} s): try a smaller one, e.g. 0.2"
        )
    if leaky_endpoint is None:
        return f"almost: the report names {found[0].where}; now set leaky_endpoint to that function's name"
    functions = sorted({held.function for held in found})
    if leaky_endpoint.strip().rstrip("()") in functions:
        first = found[0]
        return (
            f"well done: {first.function}() leaks ({len(found)} held, checked out at line {first.lineno}: "
            f"{first.code!r}); only one of its two return paths closes the session"
        )
    return (
        f"not yet: the detector's report names {', '.join(f'{f}()' for f in functions)}, not {leaky_endpoint!r}; "
        "read its 'where' column again"
    )


async def clean_up_leak_hunt(detector: Any, engine: Any, sessions: list[Any]) -> int:
    """Stop the learner's detector and close what the exercise app leaked; returns what is still checked out."""
    if isinstance(detector, LeakDetector):
        detector.stop()
    for session in sessions:
        await session.close()
    sessions.clear()
    return int(engine.pool.checkedout())
