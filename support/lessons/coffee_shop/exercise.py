"""Notebook 01's exercise, rush hour: is the learner's café a café, and what did it do?

``settings_problem()`` answers wrong input (text, negative numbers, "no limit")
in the learner's words before anything runs; ``rush_hour_feedback()`` reads
the model's and the real pool's outcomes and names the actual mistake.
"""

from __future__ import annotations

import math
from typing import TypeGuard

from .model import GAVE_UP, WAITED, CafeDay
from .real_pool import RealDay

#: The exercise keeps the café at the default 5 + 10 places and changes one setting.
PLACES = 15
#: Longer patience would make the real run (and the cell) wait too long.
MAX_PATIENCE = 10


def _is_whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _not_a_number(name: str, value: object) -> str:
    if isinstance(value, str):
        return f"{name} is the text {value!r}; write the number without quotes"
    return f"{name} must be a number, got {value!r} ({type(value).__name__})"


def settings_problem(pool_size: object, max_overflow: object, patience: object) -> str | None:
    """What keeps these settings from making a café, or None when they make one."""
    if not _is_whole(pool_size):
        return _not_a_number("EXERCISE_POOL_SIZE", pool_size) + " (a whole number of tables)"
    if not _is_whole(max_overflow):
        return _not_a_number("EXERCISE_MAX_OVERFLOW", max_overflow) + " (a whole number of standing places)"
    if not _is_number(patience):
        return _not_a_number("EXERCISE_PATIENCE", patience) + " (time units)"
    if pool_size == 0:
        return "pool_size=0 means 'no limit' in SQLAlchemy: a café without walls. Keep 5 tables."
    if pool_size < 0:
        return f"EXERCISE_POOL_SIZE={pool_size}: a café needs at least one table"
    if max_overflow == -1:
        return "max_overflow=-1 means 'no limit' in SQLAlchemy: endless standing room. Keep 10 places."
    if max_overflow < 0:
        return f"EXERCISE_MAX_OVERFLOW={max_overflow}: standing places cannot be fewer than 0"
    if patience < 0:
        return f"EXERCISE_PATIENCE={patience}: a patience cannot be negative"
    if patience > MAX_PATIENCE:
        return f"EXERCISE_PATIENCE={patience:g}: keep it at {MAX_PATIENCE} units or less, so the cell stays short"
    return None


def rush_hour_feedback(model: CafeDay | None, real: RealDay | None, *, seconds_per_unit: float) -> str:
    """One sentence on the learner's attempt, naming what went wrong (or right)."""
    if model is None or real is None:
        return "not yet: fix the settings first (see the message above)"
    customers = len(model.customers)
    model_gave_up, real_gave_up = model.counts()[GAVE_UP], real.counts()[GAVE_UP]
    if model.capacity != PLACES:
        if model_gave_up:
            return (
                f"not yet: the café has {model.capacity} places instead of {PLACES}, and still "
                f"{model_gave_up} customers give up. Keep pool_size + max_overflow at {PLACES}: "
                "only the patience needs to change."
            )
        return (
            f"not yet: nobody gives up, but the café now has {model.capacity} places. That works for a "
            f"burst, yet every place is a real server connection. Keep {PLACES} and change the patience."
        )
    if model_gave_up:
        return (
            f"not yet: {model_gave_up} customers still give up in the model ({real_gave_up} in the real "
            f"pool) with patience {model.patience:g}. Look at when the first customers leave."
        )
    if model.photo_finishes:
        return (
            "almost: the patience ends exactly when the first customers leave, a photo finish. "
            f"The real pool let {customers - real_gave_up} of {customers} in; pick a value clearly on one side."
        )
    if real_gave_up or model.counts() != real.counts():
        return (
            "almost: the model lets everyone in, but the real pool did not agree "
            f"({real.counts()}). A value very close to a departure time is decided by "
            "milliseconds; leave some room."
        )
    return (
        f"well done: with patience {model.patience:g} units (pool_timeout="
        f"{model.patience * seconds_per_unit:g} s) nobody gives up; {model.counts()[WAITED]} customers "
        "waited at the door and got in, in the model and in the real pool."
    )
