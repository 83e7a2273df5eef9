"""Notebook 13, the capstone: a service with planted defects, the course's tools to diagnose it,
the checks of the learner's diagnosis and fixes, and the worked solution.

``service`` is the app the learner reads; ``harness`` runs it under traffic with every instrument
attached (``instruments``, ``loop_watch``, ``traffic``) and returns an ``evidence.Observation``;
``diagnosis`` and ``fixes`` check the exercise; ``solution`` is the hidden answer the proof applies.
"""

from .defects import CAUSES, ENGINE
from .diagnosis import check_diagnosis
from .evidence import Observation
from .fixes import gauge_table, try_fixes, verdicts
from .harness import COURIER_DELAY, DURATION, TRAFFIC, Capstone

__all__ = [
    "CAUSES",
    "COURIER_DELAY",
    "DURATION",
    "ENGINE",
    "TRAFFIC",
    "Capstone",
    "Observation",
    "check_diagnosis",
    "gauge_table",
    "try_fixes",
    "verdicts",
]
