"""Five Tables' order service: the app notebook 13 diagnoses.

A small FastAPI service as it is often found: four routers, a yield
dependency for sessions, a background task, a streaming export, a call to
another company's API, a plain ``def`` endpoint. It works when one person
clicks through it. At peak traffic it throws ``QueuePool limit ... reached``,
and the reasons are in this file, several of them, of different kinds.
Read it the way you read a service you have just inherited; the notebook's
tools tell you where to look. Do not copy it as it is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_scoped_session, async_sessionmaker, create_async_engine

# ---------------------------------------------------------------- settings

#: The service's settings. Timeouts in seconds; None means "not set".
SETTINGS: dict[str, Any] = {
    "pool_size": 3,
    "max_overflow": 0,
    "pool_timeout": 0.3,  # SQLAlchemy's default is 30 s; short here, so that failures show within seconds
    "statement_timeout": None,  # PostgreSQL's limit on one statement; None: no limit
}

# ---------------------------------------------------------------- the database


class Database:
    """The engine, the two ways this service makes sessions, and what it caches."""

    def __init__(self, url: str, settings: dict[str, Any], server_settings: dict[str, str], courier_url: str) -> None:
        server_settings = dict(server_settings)
        if settings["statement_timeout"] is not None:
            server_settings["statement_timeout"] = str(round(settings["statement_timeout"] * 1000))  # ms
        self.engine = create_async_engine(
            url,
            pool_size=settings["pool_size"],
            max_overflow=settings["max_overflow"],
            pool_timeout=settings["pool_timeout"],
            connect_args={"server_settings": server_settings},
        )
        self.Session = async_sessionmaker(self.engine, expire_on_commit=False)
        # The orders code came from an older app: one session per asyncio task, kept in a
        # registry until ScopedSession.remove() is called.
        self.ScopedSession = async_scoped_session(self.Session, scopefunc=asyncio.current_task)
        self.courier = httpx.AsyncClient(base_url=courier_url, timeout=2.0, trust_env=False)
        self.prices: dict[int, int] = {}

    async def load_prices(self) -> None:
        async with self.Session() as session:
            rows = await session.execute(text("SELECT id, price_cents FROM items"))
            self.prices = {item_id: price for item_id, price in rows}


def get_db(request: Request) -> Database:
    return request.app.state.db


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.db.Session() as session:
        yield session


DbDep = Annotated[Database, Depends(get_db)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]

# ---------------------------------------------------------------- /health

health = APIRouter(tags=["health"])


@health.get("/health")
async def liveness() -> dict[str, str]:
    return {"status": "ok"}


# ---------------------------------------------------------------- /catalog

catalog = APIRouter(prefix="/catalog", tags=["catalog"])

ITEMS = text("SELECT id, name, price_cents FROM items ORDER BY id")
RECORD_VIEW = text("INSERT INTO page_views (page) VALUES (:page)")
VAT = {"DE": 0.19, "FR": 0.20, "NL": 0.21}


async def record_view(db: Database, page: str) -> None:
    """Runs after the response, with a session of its own."""
    async with db.Session() as session:
        await session.execute(RECORD_VIEW, {"page": page})
        await session.commit()


@catalog.get("/items")
async def list_items(db: DbDep, background: BackgroundTasks) -> dict[str, Any]:
    async with db.Session() as session:
        rows = (await session.execute(ITEMS)).mappings().all()
    background.add_task(record_view, db, "catalog")
    return {"items": [dict(row) for row in rows]}


def legacy_tax_cents(price_cents: int, country: str) -> int:
    """The tax office's Python SDK. It is synchronous: each call waits about 80 ms for its server."""
    time.sleep(0.08)  # stands in for the SDK's blocking network round trip
    return round(price_cents * VAT.get(country, 0.20))


@catalog.get("/items/{item_id}/price")
async def item_price(item_id: int, db: DbDep, country: str = "DE") -> dict[str, Any]:
    if item_id not in db.prices:
        raise HTTPException(404, f"no item {item_id}")
    tax = legacy_tax_cents(db.prices[item_id], country)
    return {"item": item_id, "price_cents": db.prices[item_id], "tax_cents": tax}


@catalog.get("/menu.pdf")
def menu_pdf(db: DbDep) -> Response:
    """A plain def: FastAPI runs it in its thread pool."""
    time.sleep(0.01)  # stands in for the PDF renderer's work
    body = "%PDF-1.4\n" + "".join(f"% item {item}: {cents} cents\n" for item, cents in sorted(db.prices.items()))
    return Response(body.encode(), media_type="application/pdf")


# ---------------------------------------------------------------- /orders

orders = APIRouter(prefix="/orders", tags=["orders"])

ORDER = text("SELECT id, item_id, quantity, status FROM orders WHERE id = :id")
ADDRESS = text("SELECT address FROM orders WHERE id = :id")
RECORD_ETA = text("INSERT INTO eta_log (order_id, minutes) VALUES (:id, :minutes)")


@orders.get("/{order_id}")
async def get_order(order_id: int, db: DbDep) -> dict[str, Any]:
    session = db.ScopedSession()  # this task's session, from the registry
    row = (await session.execute(ORDER, {"id": order_id})).mappings().first()
    if row is None:
        raise HTTPException(404, f"no order {order_id}")
    await db.ScopedSession.remove()  # closes the session and takes it out of the registry
    return dict(row)


@orders.get("/{order_id}/eta")
async def order_eta(order_id: int, session: SessionDep, db: DbDep) -> dict[str, Any]:
    async with session.begin():
        address = await session.scalar(ADDRESS, {"id": order_id})
        if address is None:
            raise HTTPException(404, f"no order {order_id}")
        reply = await db.courier.get("/eta", params={"address": address})  # the courier company's API
        minutes = reply.json()["minutes"]
        await session.execute(RECORD_ETA, {"id": order_id, "minutes": minutes})
    return {"order": order_id, "eta_minutes": minutes}


# ---------------------------------------------------------------- /reports

reports = APIRouter(prefix="/reports", tags=["reports"])

#: The sales report aggregates `days` days of orders. Its heavy part is simulated by
#: pg_sleep: 25 ms of work per day of data.
SALES = text("SELECT count(*) AS orders, coalesce(sum(quantity), 0) AS items, pg_sleep(:work) FROM orders")
SECONDS_PER_DAY = 0.025
ALL_ORDERS = text("SELECT id, item_id, quantity, status FROM orders ORDER BY id")


@reports.get("/sales")
async def sales_report(session: SessionDep, days: int = 7) -> dict[str, Any]:
    row = (await session.execute(SALES, {"work": days * SECONDS_PER_DAY})).mappings().one()
    return {"days": days, "orders": row["orders"], "items": row["items"]}


@reports.get("/export.csv")
async def export_csv(session: SessionDep) -> StreamingResponse:
    rows = (await session.execute(ALL_ORDERS)).all()

    async def lines() -> AsyncIterator[str]:
        yield "id,item_id,quantity,status\n"
        for row in rows:
            yield ",".join(str(value) for value in row) + "\n"

    return StreamingResponse(lines(), media_type="text/csv")


# ---------------------------------------------------------------- the app


async def database_error(request: Request, exc: Exception) -> JSONResponse:
    """A statement the server cancelled (statement_timeout) is a 503; any other database error a 500."""
    if "statement timeout" in str(exc):
        return JSONResponse({"detail": "the query took too long"}, status_code=503)
    return JSONResponse({"detail": "database error"}, status_code=500)


ROUTERS = (health, catalog, orders, reports)


def create_app(
    database_url: str,
    *,
    courier_url: str,
    settings: dict[str, Any] | None = None,
    server_settings: dict[str, str] | None = None,
    routers: tuple[APIRouter, ...] = ROUTERS,
) -> FastAPI:
    """The service, with SETTINGS updated by `settings`; `server_settings` go to every connection."""
    db = Database(database_url, {**SETTINGS, **(settings or {})}, server_settings or {}, courier_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await db.load_prices()
        yield
        await db.courier.aclose()
        await db.engine.dispose()

    app = FastAPI(title="five-tables-orders", lifespan=lifespan)
    app.state.db = db
    for router in routers:
        app.include_router(router)
    app.add_exception_handler(DBAPIError, database_error)
    return app


def create_courier_app(delay: float = 0.15) -> FastAPI:
    """The courier company's API, played by a second app: every answer takes `delay` seconds."""
    courier = FastAPI(title="courier")

    @courier.get("/eta")
    async def eta(address: str) -> dict[str, int]:
        await asyncio.sleep(delay)
        return {"minutes": 12 + len(address) % 20}

    return courier
