"""Notebook 05's helpers: a backend's memory, the leak hunt's feedback and clean-up."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import QueuePool

from support.lab.leak_detector import LeakDetector
from support.lessons.pool_monitoring import backend_private_memory, clean_up_leak_hunt, leak_hunt_feedback


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_backend_private_memory_reads_proc_and_says_none_for_the_unknown():
    assert (backend_private_memory(os.getpid()) or 0) > 1_000_000
    assert backend_private_memory(2**22 + 12345) is None


def leaky_function(engine):
    connection = engine.connect()
    connection.execute(text("SELECT 1"))
    return connection


def test_feedback_walks_a_learner_to_the_answer():
    engine = create_engine("sqlite://", poolclass=QueuePool)
    detector = LeakDetector(engine, threshold=0)
    held = leaky_function(engine)
    try:
        assert "create exercise_detector" in leak_hunt_feedback(None, None, checked_out=1)
        assert "should be a LeakDetector" in leak_hunt_feedback(0.2, None, checked_out=1)  # type: ignore[arg-type]
        as_object = leak_hunt_feedback(detector, leaky_function, checked_out=1)
        assert "as a string such as 'leaky_function'" in as_object
        assert leak_hunt_feedback(detector, None, checked_out=1).startswith("almost")
        wrong = leak_hunt_feedback(detector, "relations", checked_out=1)
        assert wrong.startswith("not yet") and "names leaky_function()" in wrong
        assert leak_hunt_feedback(detector, "leaky_function", checked_out=1).startswith("well done")
        assert leak_hunt_feedback(detector, " leaky_function() ", checked_out=1).startswith("well done")
        detector.threshold = 60
        assert "try a smaller one" in leak_hunt_feedback(detector, "leaky_function", checked_out=1)
    finally:
        held.close()
        detector.stop()
        engine.dispose()


def test_clean_up_closes_sessions_and_stops_the_detector():
    engine = create_engine("sqlite://", poolclass=QueuePool)
    detector = LeakDetector(engine, threshold=0)

    class Session:
        def __init__(self):
            self.connection = leaky_function(engine)

        async def close(self):
            self.connection.close()

    sessions = [Session(), Session()]
    assert asyncio.run(clean_up_leak_hunt(detector, engine, sessions)) == 0
    assert sessions == [] and not detector.listening
    engine.dispose()
