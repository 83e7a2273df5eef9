"""The café of notebook 01: a teaching model of SQLAlchemy's QueuePool.

A café has ``tables`` tables and ``standing`` standing places; a customer who
finds it full waits at the door for ``patience`` time units and then gives up.
In pool terms: tables are ``pool_size``, standing places are ``max_overflow``,
patience is ``pool_timeout`` and giving up is ``sqlalchemy.exc.TimeoutError``.
A customer who never leaves is a leaked session.

The rules (the notebook states the same rules in its prose):

1. At most ``tables + standing`` customers are inside at once.
2. An arriving customer takes a free table if there is one, else a free
   standing place.
3. When the café is full, the customer joins the line at the door. When
   someone leaves, the first in line comes in. Whoever is still in line
   ``patience`` units after arriving gives up and goes away.
4. A customer who got in stays ``stays`` units, then leaves. ``stays=None``
   means never leaving.
5. When a table frees up, whoever has been standing longest sits down
   (connections are interchangeable: only how many are out matters).
6. Things that happen at the same moment happen in this order: leaving (and
   the line moving up), giving up, arriving (in list order).

The model is a small deterministic discrete-event simulation: ``simulate()``
returns a ``CafeDay`` with each customer's outcome, a log, and the state at
any moment, which ``draw_strip()`` draws as a strip of small frames.

Drawing lives in ``drawing.py``; running the same customers against a real
engine lives in ``real_pool.py``.
"""

from __future__ import annotations

import heapq
import math
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ...lab.tables import Table

#: The outcomes, in the order tables and counts show them.
TABLE, STANDING, GAVE_UP = "table", "standing", "gave up"
OUTCOMES = (TABLE, STANDING, GAVE_UP)
#: The extra count: customers who stood at the door first and then got in.
WAITED = "waited, then got in"

_EPSILON = 1e-9
_LEAVE, _GIVE_UP, _ARRIVE = 0, 1, 2  # rule 6: the order of things at the same moment


@dataclass(frozen=True)
class Customer:
    """Who comes, when (in time units), and for how long (None: never leaves)."""

    name: str
    arrives: float
    stays: float | None

    @property
    def never_leaves(self) -> bool:
        return self.stays is None


def names(count: int) -> list[str]:
    """A, B, ..., Z, then A2, B2, ...: short names for drawing."""
    letters = string.ascii_uppercase
    return [letters[i % 26] + (str(i // 26 + 1) if i >= 26 else "") for i in range(count)]


def line_up(count: int, *, every: float = 0.0, stays: float | None = None, start: float = 0.0) -> list[Customer]:
    """``count`` customers arriving ``every`` units apart from ``start``, all staying ``stays``."""
    return [Customer(name, start + i * every, stays) for i, name in enumerate(names(count))]


@dataclass(frozen=True)
class Outcome:
    """What happened to one customer.

    ``place`` is where they were put when they came in ("table" or
    "standing"), or "gave up". ``entered`` and ``left`` are None when it did
    not happen (never got in, never left).
    """

    name: str
    arrived: float
    place: str
    entered: float | None
    left: float | None

    @property
    def waited(self) -> float | None:
        """Time spent at the door before coming in (None if they gave up)."""
        return None if self.entered is None else self.entered - self.arrived


@dataclass(frozen=True)
class Frame:
    """The café at one moment: who is where (None marks a free place)."""

    time: float
    tables: tuple[str | None, ...]
    standing: tuple[str | None, ...]
    door: tuple[str, ...]
    gave_up: tuple[str, ...]
    left: tuple[str, ...]
    happened: tuple[str, ...]  # what happened at exactly this time

    @property
    def inside(self) -> int:
        return sum(name is not None for name in self.tables + self.standing)


@dataclass
class CafeDay:
    """The result of ``simulate()``: outcomes, a log, and frames."""

    customers: list[Customer]
    tables: int
    standing: int
    patience: float
    outcomes: dict[str, Outcome]
    log_lines: list[tuple[float, str]]
    frames: list[Frame]
    #: Customers who got in at the very moment their patience ran out; a real
    #: pool decides those by milliseconds, so the model's answer is a guess.
    photo_finishes: list[str] = field(default_factory=list)

    @property
    def capacity(self) -> int:
        return self.tables + self.standing

    def counts(self) -> dict[str, int]:
        """How many got a table, stood, gave up; and how many waited at the door first."""
        counts = {outcome: 0 for outcome in OUTCOMES}
        for outcome in self.outcomes.values():
            counts[outcome.place] += 1
        counts[WAITED] = sum(1 for o in self.outcomes.values() if o.waited and o.waited > _EPSILON)
        return counts

    def frame_at(self, time: float) -> Frame:
        """The café as it is at ``time``, once everything happening then has happened."""
        current = Frame(time, (None,) * self.tables, (None,) * self.standing, (), (), (), ())
        for frame in self.frames:
            if frame.time > time + _EPSILON:
                break
            current = frame
        if abs(current.time - time) > _EPSILON:
            current = Frame(time, current.tables, current.standing, current.door, current.gave_up, current.left, ())
        return current

    def log(self) -> str:
        """One line per moment something happened."""
        by_time: dict[float, list[str]] = {}
        for time, text in self.log_lines:
            by_time.setdefault(time, []).append(text)
        return "\n".join(f"t={_fmt(time):>4}  " + "; ".join(texts) for time, texts in by_time.items())

    def table(self) -> Table:
        """One row per customer, in arrival order."""
        rows = []
        for customer in self.customers:
            outcome = self.outcomes[customer.name]
            rows.append(
                {
                    "customer": customer.name,
                    "arrives": _fmt(customer.arrives),
                    "stays": "never leaves" if customer.never_leaves else _fmt(customer.stays),
                    "outcome": outcome.place,
                    "waited at the door": "-" if outcome.waited is None else _fmt(outcome.waited),
                    "left at": "-" if outcome.left is None else _fmt(outcome.left),
                }
            )
        return Table(
            rows, title=f"{self.tables} tables, {self.standing} standing places, patience {_fmt(self.patience)}"
        )

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in self.counts().items())
        return (
            f"<CafeDay {self.tables} tables + {self.standing} standing, patience "
            f"{_fmt(self.patience)}, {len(self.customers)} customers: {counts}>"
        )


def simulate(customers: Iterable[Customer], *, tables: int, standing: int, patience: float) -> CafeDay:
    """Run the café's rules (see the module docstring) over ``customers``."""
    customers = list(customers)
    _check_settings(customers, tables, standing, patience)
    by_name = {c.name: c for c in customers}

    table_slots: list[str | None] = [None] * tables
    standing_slots: list[str | None] = [None] * standing
    standing_since: list[str] = []  # standing customers, longest standing first
    door: list[tuple[str, float]] = []  # (name, gives up at), first in line first
    gave_up: list[str] = []
    left: list[str] = []
    entered: dict[str, float] = {}
    places: dict[str, str] = {}
    left_at: dict[str, float] = {}
    log_lines: list[tuple[float, str]] = []
    frames: list[Frame] = []
    photo_finishes: list[str] = []

    events: list[tuple[float, int, int, str]] = []
    sequence = 0

    def schedule(time: float, kind: int, name: str) -> None:
        nonlocal sequence
        heapq.heappush(events, (time, kind, sequence, name))
        sequence += 1

    for customer in customers:
        schedule(customer.arrives, _ARRIVE, customer.name)

    def come_in(name: str, time: float) -> str:
        if None in table_slots:
            index = table_slots.index(None)
            table_slots[index] = name
            where, place = f"sits at table {index + 1}", TABLE
        else:
            index = standing_slots.index(None)
            standing_slots[index] = name
            standing_since.append(name)
            where, place = f"stands (place {index + 1})", STANDING
        entered[name] = time
        places[name] = place
        stays = by_name[name].stays
        if stays is not None:
            schedule(time + stays, _LEAVE, name)
        return where

    def has_room() -> bool:
        return None in table_slots or None in standing_slots

    while events:
        now = events[0][0]
        happened: list[str] = []
        while events and events[0][0] <= now + _EPSILON:
            _, kind, _, name = heapq.heappop(events)
            if kind == _ARRIVE:
                if not door and has_room():
                    happened.append(f"{name} arrives, {come_in(name, now)}")
                else:
                    door.append((name, now + patience))
                    schedule(now + patience, _GIVE_UP, name)
                    happened.append(f"{name} arrives, waits at the door")
            elif kind == _GIVE_UP:
                if any(waiting == name for waiting, _ in door):
                    door[:] = [(w, d) for w, d in door if w != name]
                    gave_up.append(name)
                    places[name] = GAVE_UP
                    happened.append(f"{name} gives up")
            else:  # _LEAVE
                left.append(name)
                left_at[name] = now
                text = f"{name} leaves"
                if name in table_slots:
                    index = table_slots.index(name)
                    table_slots[index] = None
                    if standing_since:  # rule 5
                        mover = standing_since.pop(0)
                        standing_slots[standing_slots.index(mover)] = None
                        table_slots[index] = mover
                        text += f", {mover} sits down"
                else:
                    standing_slots[standing_slots.index(name)] = None
                    standing_since.remove(name)
                if door:  # rule 3: the first in line comes in
                    waiting, gives_up_at = door.pop(0)
                    if abs(gives_up_at - now) <= _EPSILON:
                        photo_finishes.append(waiting)
                    text += f", {waiting} comes in and {come_in(waiting, now)}"
                happened.append(text)
        log_lines.extend((now, text) for text in happened)
        frames.append(
            Frame(
                now,
                tuple(table_slots),
                tuple(standing_slots),
                tuple(w for w, _ in door),
                tuple(gave_up),
                tuple(left),
                tuple(happened),
            )
        )

    outcomes = {
        c.name: Outcome(c.name, c.arrives, places[c.name], entered.get(c.name), left_at.get(c.name)) for c in customers
    }
    return CafeDay(customers, tables, standing, patience, outcomes, log_lines, frames, photo_finishes)


def _check_settings(customers: Sequence[Customer], tables: int, standing: int, patience: float) -> None:
    for name, value, least in (("tables", tables, 1), ("standing", standing, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be a whole number of at least {least}, got {value!r}")
    if isinstance(patience, bool) or not isinstance(patience, (int, float)) or not 0 <= patience < math.inf:
        raise ValueError(f"patience must be a number of time units, 0 or more, got {patience!r}")
    seen = set()
    for customer in customers:
        if customer.name in seen:
            raise ValueError(f"two customers are called {customer.name!r}")
        seen.add(customer.name)
        if customer.arrives < 0 or (customer.stays is not None and customer.stays < 0):
            raise ValueError(f"{customer.name}: arrives and stays must not be negative")


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}"
