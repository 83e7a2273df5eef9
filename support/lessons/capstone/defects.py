"""The capstone's planted defects: the causes a finding may name, and where each defect is."""

from __future__ import annotations

#: The kinds of defect a finding can name, with what each means.
CAUSES: dict[str, str] = {
    "leak": "a connection is taken and, on some path, never given back",
    "io_in_transaction": "slow I/O (such as an HTTP call) while a transaction holds the connection",
    "blocking_call": "a blocking call inside async def stops the event loop",
    "pool_too_small": "correct code, but the traffic keeps more connections busy than the pool has",
    "missing_timeout": "nothing limits how long a statement may run",
    "slow_query": "a query that is slow every time it runs",
    "stale_connection": "connections that died while they sat in the pool",
}
#: The place for defects in the pool's settings rather than in one endpoint's code.
ENGINE = "engine"
#: Where the defects are, and of which kind. Several keys may name the same defect.
DEFECTS: dict[tuple[str, str], str] = {
    ("/orders/{order_id}", "leak"): "leak",
    ("/catalog/items/{item_id}/price", "blocking_call"): "blocking_call",
    (ENGINE, "pool_too_small"): "pool_too_small",
    ("/orders/{order_id}/eta", "io_in_transaction"): "io_in_transaction",
    ("/reports/sales", "missing_timeout"): "missing_timeout",
    (ENGINE, "missing_timeout"): "missing_timeout",
}
#: The place where each defect shows, for feedback on a right cause at the wrong place.
HOME = {
    "leak": "/orders/{order_id}",
    "blocking_call": "/catalog/items/{item_id}/price",
    "pool_too_small": ENGINE,
    "io_in_transaction": "/orders/{order_id}/eta",
    "missing_timeout": "/reports/sales",
}
