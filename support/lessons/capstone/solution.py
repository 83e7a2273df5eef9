"""The worked solution of notebook 13: the five findings, and a fix for each.

The notebook keeps this hidden in a ``<details>`` block and applies it, fix by
fix, in its proof section. Each fixed endpoint is the service's own function
with the defect taken out; everything else about the service stays as it was.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import HTTPException

from .service import ADDRESS, ORDER, RECORD_ETA, DbDep, SessionDep, legacy_tax_cents

#: What is wrong, where: one finding per planted defect.
FINDINGS = [
    {"endpoint": "/orders/{order_id}", "cause": "leak"},
    {"endpoint": "/catalog/items/{item_id}/price", "cause": "blocking_call"},
    {"endpoint": "engine", "cause": "pool_too_small"},
    {"endpoint": "/orders/{order_id}/eta", "cause": "io_in_transaction"},
    {"endpoint": "/reports/sales", "cause": "missing_timeout"},
]


async def get_order(order_id: int, session: SessionDep) -> dict[str, Any]:
    # The yield dependency closes the session on every path, the 404 included.
    row = (await session.execute(ORDER, {"id": order_id})).mappings().first()
    if row is None:
        raise HTTPException(404, f"no order {order_id}")
    return dict(row)


async def item_price(item_id: int, db: DbDep, country: str = "DE") -> dict[str, Any]:
    if item_id not in db.prices:
        raise HTTPException(404, f"no item {item_id}")
    # The blocking SDK call runs in a worker thread; the event loop keeps serving meanwhile.
    tax = await asyncio.to_thread(legacy_tax_cents, db.prices[item_id], country)
    return {"item": item_id, "price_cents": db.prices[item_id], "tax_cents": tax}


async def order_eta(order_id: int, session: SessionDep, db: DbDep) -> dict[str, Any]:
    address = await session.scalar(ADDRESS, {"id": order_id})
    await session.commit()  # ends the transaction: the connection goes back to the pool
    if address is None:
        raise HTTPException(404, f"no order {order_id}")
    reply = await db.courier.get("/eta", params={"address": address})  # no connection held meanwhile
    minutes = reply.json()["minutes"]
    await session.execute(RECORD_ETA, {"id": order_id, "minutes": minutes})
    await session.commit()  # a second, short transaction for the write
    return {"order": order_id, "eta_minutes": minutes}


#: The fixes in the order the proof applies them: (what, settings, endpoint replacements).
FIXES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("close the session on every path", {}, {"/orders/{order_id}": get_order}),
    ("run the blocking SDK in a thread", {}, {"/catalog/items/{item_id}/price": item_price}),
    ("pool_size 10, max_overflow 5", {"pool_size": 10, "max_overflow": 5}, {}),
    ("call the courier outside the transaction", {}, {"/orders/{order_id}/eta": order_eta}),
    ("statement_timeout 0.4 s", {"statement_timeout": 0.4}, {}),
]
