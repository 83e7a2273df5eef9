"""The café's customers run against a real engine, for notebook 01's comparison.

``run_visits()`` starts each customer's coroutine at its arrival time, says when
the café closes (customers who never leave are shown out then), and never waits
longer than a deadline; ``side_by_side()`` and ``per_customer()`` put the model's
outcomes next to the real pool's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from ...lab.tables import Table
from .model import GAVE_UP, OUTCOMES, WAITED, CafeDay, Customer


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


async def run_visits(
    engine, visit: Visit, customers: Iterable[Customer], *, seconds_per_unit: float, deadline: float = 20.0
) -> RealDay:
    """Start ``visit(engine, customer, closing_time, outcomes)`` for each customer at its arrival.

    Customers arriving at the same time start 1 ms apart in list order, the
    model's tie rule; one connection is opened (and given back) before the
    first of them. Each visit writes ``outcomes[name] = (place, waited)``
    as soon as it knows. Once every customer has an outcome and every customer
    who leaves has left, the pool's status is read and ``closing_time`` is set,
    so customers who never leave let go of their connections. The whole run is
    cut off after ``deadline`` seconds (TimeoutError), never hanging a cell.
    """
    customers = list(customers)
    pool = engine.sync_engine.pool
    loop = asyncio.get_running_loop()
    # An engine's first connection also reads the server's version and settings. Made here,
    # before opening time, that one-off delay falls on no customer; the connection waits in
    # the pool for the first one.
    async with engine.connect():
        pass
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
                tasks[c.name].done() for c in customers if not c.never_leaves
            ):
                await asyncio.sleep(0.005)
                for task in tasks.values():
                    failure = task.exception() if task.done() else None
                    if failure is not None:
                        raise failure
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
    rows = [
        {
            "outcome": key,
            "model": model_counts[key],
            "real pool": real_counts[key],
            "agree": "yes" if model_counts[key] == real_counts[key] else "NO",
        }
        for key in model_counts
    ]
    return Table(rows, title="model vs real pool")


def per_customer(model: CafeDay, real: RealDay) -> Table:
    """Each customer's outcome in the model and in the real pool."""
    rows = []
    for customer in model.customers:
        outcome = model.outcomes[customer.name]
        place, waited = real.outcomes.get(customer.name, ("?", False))
        rows.append(
            {
                "customer": customer.name,
                "model": outcome.place + (" (waited)" if outcome.waited else ""),
                "real pool": place + (" (waited)" if waited and place != GAVE_UP else ""),
            }
        )
    return Table(rows, title="per customer")
