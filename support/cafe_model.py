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

``run_visits()`` is the plumbing that runs the same customers against a real
engine: it starts each customer's coroutine at its arrival time, says when the
café closes (customers who never leave are shown out then), and never waits
longer than a deadline.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import string
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .tables import Table

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


def line_up(count: int, *, every: float = 0.0, stays: float | None = None,
            start: float = 0.0) -> list[Customer]:
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
            current = Frame(time, current.tables, current.standing, current.door,
                            current.gave_up, current.left, ())
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
            rows.append({
                "customer": customer.name,
                "arrives": _fmt(customer.arrives),
                "stays": "never leaves" if customer.never_leaves else _fmt(customer.stays),
                "outcome": outcome.place,
                "waited at the door": "-" if outcome.waited is None else _fmt(outcome.waited),
                "left at": "-" if outcome.left is None else _fmt(outcome.left),
            })
        return Table(rows, title=f"{self.tables} tables, {self.standing} standing places, "
                                 f"patience {_fmt(self.patience)}")

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in self.counts().items())
        return (f"<CafeDay {self.tables} tables + {self.standing} standing, patience "
                f"{_fmt(self.patience)}, {len(self.customers)} customers: {counts}>")


def simulate(customers: Iterable[Customer], *, tables: int, standing: int,
             patience: float) -> CafeDay:
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
        frames.append(Frame(now, tuple(table_slots), tuple(standing_slots),
                            tuple(w for w, _ in door), tuple(gave_up), tuple(left), tuple(happened)))

    outcomes = {
        c.name: Outcome(c.name, c.arrives, places[c.name], entered.get(c.name), left_at.get(c.name))
        for c in customers
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


# --- drawing -----------------------------------------------------------------

_LEAKER, _GUEST, _WAITING, _GONE = "tab:red", "tab:blue", "tab:orange", "0.6"


def _layout(day: CafeDay) -> tuple[int, float, float]:
    """Width in places, the door's x, and the lowest y of the café, in data units."""
    width = max(day.tables, min(day.standing, 5), 3)
    rows = math.ceil(day.standing / 5) if day.standing else 0
    bottom = -1.45 - (rows - 1) * 0.8 if rows else -0.5
    return width, width + 0.3, bottom


def draw_frame(day: CafeDay, time: float, ax) -> None:
    """Draw the café at ``time`` on ``ax``: tables, standing places, the door line."""
    from matplotlib.patches import Circle, Rectangle

    frame = day.frame_at(time)
    never = {c.name for c in day.customers if c.never_leaves}
    width, door_x, bottom = _layout(day)
    ax.set_xlim(-0.2, door_x + 2.0)
    ax.set_ylim(bottom - 1.0, 0.75)
    ax.set_aspect("equal")
    ax.axis("off")

    def person(x: float, y: float, name: str, color: str) -> None:
        ax.add_patch(Circle((x, y), 0.3, color=color, zorder=3))
        ax.text(x, y, name, ha="center", va="center", color="white", fontsize=7,
                fontweight="bold", zorder=4)

    for i, name in enumerate(frame.tables):
        x = 0.5 + i
        ax.add_patch(Rectangle((x - 0.42, -0.42), 0.84, 0.84, facecolor="#f3e3c7",
                               edgecolor="#8b5a2b", linewidth=1))
        if name is not None:
            person(x, 0, name, _LEAKER if name in never else _GUEST)
    for i, name in enumerate(frame.standing):
        x, y = 0.5 + i % 5, -1.0 - (i // 5) * 0.8
        ax.add_patch(Circle((x, y), 0.34, fill=False, edgecolor="0.55", linestyle=(0, (2, 2))))
        if name is not None:
            person(x, y, name, _LEAKER if name in never else _GUEST)
    ax.plot([door_x, door_x], [0.5, bottom], color="0.3", linewidth=2)
    ax.text(door_x + 0.1, 0.55, "door", fontsize=6, color="0.3")
    per_column = max(2, int((0.5 - bottom) / 0.7))
    shown = frame.door[: 2 * per_column]
    for i, name in enumerate(shown):
        person(door_x + 0.6 + (i // per_column) * 0.7, -(i % per_column) * 0.7, name, _WAITING)
    if len(frame.door) > len(shown):
        ax.text(door_x + 1.0, bottom - 0.1, f"+{len(frame.door) - len(shown)} more", ha="center",
                va="top", fontsize=6)
    notes = []
    if frame.gave_up:
        notes.append("gave up: " + " ".join(frame.gave_up))
    if frame.left:
        notes.append("left: " + " ".join(frame.left))
    ax.text(-0.1, bottom - 0.35, "\n".join(notes), fontsize=6, color=_GONE, va="top")
    ax.set_title(f"t = {_fmt(time)}  ({frame.inside} inside, {len(frame.door)} at the door)", fontsize=7)


def draw_strip(day: CafeDay, times: Sequence[float] | None = None, *, columns: int = 4):
    """A strip of small frames, one per time in ``times`` (default: every event time)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    times = list(times) if times is not None else [frame.time for frame in day.frames]
    columns = max(1, min(columns, len(times)))
    rows = math.ceil(len(times) / columns)
    _, door_x, bottom = _layout(day)
    width, height = door_x + 2.2, 1.75 - bottom + 0.4
    scale = 2.6 / width
    fig, axes = plt.subplots(rows, columns, figsize=(columns * width * scale, rows * height * scale + 0.3),
                             squeeze=False, layout="constrained")
    for ax, time in zip(axes.flat, times):
        draw_frame(day, time, ax)
    for ax in list(axes.flat)[len(times):]:
        ax.axis("off")
    legend = [Line2D([], [], marker="o", linestyle="", color=color, label=label)
              for color, label in ((_GUEST, "customer"), (_LEAKER, "never leaves"),
                                   (_WAITING, "waiting at the door"))]
    legend += [Line2D([], [], marker="s", linestyle="", markerfacecolor="#f3e3c7",
                      markeredgecolor="#8b5a2b", label="table"),
               Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
                      markeredgecolor="0.55", label="standing place")]
    fig.legend(handles=legend, loc="outside lower center", ncols=5 if columns >= 3 else 2, fontsize=7,
               frameon=False)
    return fig


def show_slider(day: CafeDay, times: Sequence[float] | None = None) -> bool:
    """A slider over the frames, if ipywidgets is installed; False when it is not.

    Where no widget front end runs (a static page, CI) the widget shows as a
    one-line note instead of its default text, and the strip drawn before it
    already shows every frame.
    """
    try:
        import ipywidgets as widgets
        import matplotlib.pyplot as plt
        from IPython.display import display
    except ImportError:
        return False
    times = list(times) if times is not None else [frame.time for frame in day.frames]
    slider = widgets.SelectionSlider(options=[(f"t = {_fmt(t)}", t) for t in times], description="time",
                                     continuous_update=False)

    def draw(time: float) -> None:
        fig, ax = plt.subplots(figsize=(4, 3), layout="constrained")
        draw_frame(day, time, ax)
        plt.show()

    output = widgets.interactive_output(draw, {"time": slider})
    box = widgets.VBox([slider, output])
    bundle = box._repr_mimebundle_()
    bundle["text/plain"] = ("[a slider over the frames: it needs a live kernel and a widget "
                            "front end such as JupyterLab; the strip above shows the same frames]")
    display(bundle, raw=True)
    return True


# --- running the same customers against a real engine ---------------------------

@dataclass
class RealDay:
    """What a run of ``run_visits()`` saw: each customer's outcome and the pool at closing."""

    outcomes: dict[str, tuple[str, bool]]  # name -> (place, waited at the door first)
    status_before_closing: str
    checked_out_before_closing: int
    checked_out_after: int
    seconds: float

    def counts(self) -> dict[str, int]:
        counts = {outcome: 0 for outcome in OUTCOMES}
        for place, _ in self.outcomes.values():
            counts[place] += 1
        counts[WAITED] = sum(1 for place, waited in self.outcomes.values() if waited and place != GAVE_UP)
        return counts


Visit = Callable[[object, Customer, asyncio.Event, dict], Awaitable[None]]


async def run_visits(engine, visit: Visit, customers: Iterable[Customer], *, seconds_per_unit: float,
                     deadline: float = 20.0) -> RealDay:
    """Start ``visit(engine, customer, closing_time, outcomes)`` for each customer at its arrival.

    Customers arriving at the same time start 1 ms apart in list order, the
    model's tie rule. Each visit writes ``outcomes[name] = (place, waited)``
    as soon as it knows. Once every customer has an outcome and every customer
    who leaves has left, the pool's status is read and ``closing_time`` is set,
    so customers who never leave let go of their connections. The whole run is
    cut off after ``deadline`` seconds (TimeoutError), never hanging a cell.
    """
    customers = list(customers)
    pool = engine.sync_engine.pool
    loop = asyncio.get_running_loop()
    started = loop.time()
    closing_time = asyncio.Event()
    outcomes: dict[str, tuple[str, bool]] = {}

    async def arrive(index: int, customer: Customer) -> None:
        await asyncio.sleep(customer.arrives * seconds_per_unit + index * 0.001)
        await visit(engine, customer, closing_time, outcomes)

    tasks = {customer.name: asyncio.create_task(arrive(i, customer)) for i, customer in enumerate(customers)}
    try:
        async with asyncio.timeout(deadline):
            while len(outcomes) < len(customers) or not all(
                    tasks[c.name].done() for c in customers if not c.never_leaves):
                await asyncio.sleep(0.005)
                for task in tasks.values():
                    if task.done() and task.exception() is not None:
                        raise task.exception()
            status = pool.status()
            checked_out = pool.checkedout()
            closing_time.set()
            await asyncio.gather(*tasks.values())
    finally:
        closing_time.set()
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    return RealDay(outcomes, status, checked_out, pool.checkedout(), loop.time() - started)


def side_by_side(model: CafeDay, real: RealDay) -> Table:
    """Counts of the model and of the real pool in one small table."""
    model_counts, real_counts = model.counts(), real.counts()
    rows = [{"outcome": key, "model": model_counts[key], "real pool": real_counts[key],
             "agree": "yes" if model_counts[key] == real_counts[key] else "NO"}
            for key in model_counts]
    return Table(rows, title="model vs real pool")


def per_customer(model: CafeDay, real: RealDay) -> Table:
    """Each customer's outcome in the model and in the real pool."""
    rows = []
    for customer in model.customers:
        outcome = model.outcomes[customer.name]
        place, waited = real.outcomes.get(customer.name, ("?", False))
        rows.append({"customer": customer.name,
                     "model": outcome.place + (" (waited)" if outcome.waited else ""),
                     "real pool": place + (" (waited)" if waited and place != GAVE_UP else "")})
    return Table(rows, title="per customer")
