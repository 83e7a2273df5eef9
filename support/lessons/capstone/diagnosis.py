"""Checking the learner's diagnosis of the service, one finding at a time.

A finding is ``{"endpoint": ..., "cause": ...}``: where the defect is (a
route template, or ``"engine"`` for the pool's settings) and what kind it is
(one of ``CAUSES``). The check reads the learner's input generously (a
concrete path such as ``/orders/7`` is matched to its route, a cause may be
written with spaces), says exactly what it could not read, and answers each
finding from the evidence of the learner's own run: what the tools showed
about that place, why the chosen cause does or does not fit, and which tool
to look at next. It keeps no state, so it can be run again and again.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from .defects import CAUSES, DEFECTS, ENGINE
from .evidence import Observation
from .reading import _confirm, _redirect, _unexplained

_SYNONYMS = {
    "session_leak": "leak",
    "connection_leak": "leak",
    "leaked_session": "leak",
    "io_inside_transaction": "io_in_transaction",
    "slow_io_in_transaction": "io_in_transaction",
    "external_call_in_transaction": "io_in_transaction",
    "blocking": "blocking_call",
    "blocking_io": "blocking_call",
    "sync_call": "blocking_call",
    "pool_size": "pool_too_small",
    "small_pool": "pool_too_small",
    "no_timeout": "missing_timeout",
    "statement_timeout": "missing_timeout",
    "stale_connections": "stale_connection",
}
_KEYS = ("endpoint", "cause")
TOTAL = len(set(DEFECTS.values()))


@dataclass
class DiagnosisFeedback:
    """Feedback lines, and which defects the findings identified."""

    lines: list[str] = field(default_factory=list)
    found: set[str] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return len(self.found) == TOTAL

    def __str__(self) -> str:
        return "\n".join(self.lines)

    __repr__ = __str__


def normalise_cause(cause: Any) -> tuple[str | None, str | None]:
    """(the cause, None) or (None, what is wrong with it)."""
    if not isinstance(cause, str) or not cause.strip():
        return None, f"the cause must be one of the words listed, as text, got {cause!r}"
    word = re.sub(r"[\s\-/]+", "_", cause.strip().lower())
    word = _SYNONYMS.get(word, word)
    if word in CAUSES:
        return word, None
    close = difflib.get_close_matches(word, list(CAUSES) + list(_SYNONYMS), n=1, cutoff=0.6)
    hint = f"did you mean {_SYNONYMS.get(close[0], close[0])!r}? " if close else ""
    return None, f"{cause!r} is not a cause I know; {hint}the causes are: {', '.join(CAUSES)}"


def normalise_place(place: Any, endpoints: list[str]) -> tuple[str | None, str | None]:
    """(the route template or 'engine', None) or (None, what is wrong with it)."""
    if not isinstance(place, str) or not place.strip():
        return None, f"the endpoint must be a route such as {endpoints[0]!r}, as text, got {place!r}"
    text = place.strip()
    text = re.sub(r"^(GET|POST|PUT|DELETE)\s+", "", text, flags=re.IGNORECASE).split("?")[0]
    if text.lower() in (ENGINE, "the engine", "pool", "the pool", "settings", "engine settings"):
        return ENGINE, None
    if not text.startswith("/"):
        text = "/" + text
    text = text.rstrip("/") or "/"
    if text in endpoints:
        return text, None
    for template in endpoints:
        if re.fullmatch(re.sub(r"\{[^/]+\}", r"[^/]+", template), text):
            return template, None
    close = difflib.get_close_matches(text, endpoints, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    listed = ", ".join(repr(e) for e in endpoints + [ENGINE])
    return None, f"{place!r} is not an endpoint of the service; {hint}the places are: {listed}"


def check_diagnosis(findings: Any, evidence: Observation) -> DiagnosisFeedback:
    """Feedback on each finding, from the evidence of the run the learner looked at."""
    feedback = DiagnosisFeedback()
    endpoints = evidence.endpoints()
    if isinstance(findings, dict):
        findings = [findings]
    if not isinstance(findings, (list, tuple)):
        feedback.lines.append(
            'not yet: findings must be a list of dicts such as [{"endpoint": "/health", "cause": "leak"}], '
            f"got {type(findings).__name__}"
        )
        return feedback
    if not findings:
        feedback.lines.append(
            f"nothing to check yet: add a finding for each defect you find ({TOTAL} are planted). "
            + _unexplained(evidence, set())[0]
        )
        return feedback
    seen: set[tuple[str, str]] = set()
    for number, finding in enumerate(findings, 1):
        label = f"finding {number}"
        problem = _shape_problem(finding)
        if problem:
            feedback.lines.append(f"{label}: {problem}")
            continue
        place, place_problem = normalise_place(finding["endpoint"], endpoints)
        cause, cause_problem = normalise_cause(finding["cause"])
        problems = [p for p in (place_problem, cause_problem) if p]
        if problems:
            feedback.lines.append(f"{label}: " + "; ".join(problems))
            continue
        assert place is not None and cause is not None
        if (place, cause) in seen:
            feedback.lines.append(f"{label}: the same as an earlier finding ({place}, {cause}); counted once")
            continue
        seen.add((place, cause))
        read_as = "" if finding["endpoint"].strip() == place else f" (read {finding['endpoint']!r} as {place})"
        defect = DEFECTS.get((place, cause))
        if defect is not None:
            feedback.found.add(defect)
            feedback.lines.append(f"{label}: RIGHT{read_as}: {place} -> {cause}. {_confirm(defect, evidence)}")
        else:
            feedback.lines.append(f"{label}: not this one{read_as}: {_redirect(place, cause, evidence)}")
    feedback.lines.append(f"found {len(feedback.found)} of {TOTAL}.")
    if not feedback.complete:
        feedback.lines.extend(_unexplained(evidence, feedback.found))
    else:
        feedback.lines.append("All of them. Now fix them (next section) and prove each fix with a run.")
    return feedback


def _shape_problem(finding: Any) -> str | None:
    if not isinstance(finding, dict):
        return f'each finding is a dict such as {{"endpoint": "/health", "cause": "leak"}}, got {finding!r}'
    problems = []
    for key in finding:
        if key not in _KEYS:
            close = difflib.get_close_matches(str(key), _KEYS, n=1)
            problems.append(f"{key!r} is not a key here" + (f"; did you mean {close[0]!r}?" if close else ""))
    problems += [f"it has no {key!r}" for key in _KEYS if key not in finding]
    return "; ".join(problems) or None
