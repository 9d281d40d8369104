"""The order orderbus has, for a channel's news that does not carry it (a
status change, an after-sale): read from ``orders`` and revised."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select

from canonical.order import CanonicalOrder
from connectors.base import AfterSaleChange
from infra.database import translate_db_errors
from infra.tables import orders

ASSIGNED = ("order_number", "accounts", "mapping_version")  # orderbus's, not the channel's


def stored_order(
    engine: Engine, channel: str, shop: str, external_id: str
) -> dict[str, Any] | None:
    """The order's stored body (its latest accepted revision), or None."""
    with translate_db_errors(), engine.connect() as conn:
        body = conn.scalar(
            select(orders.c.body).where(
                orders.c.channel == channel,
                orders.c.shop == shop,
                orders.c.external_id == external_id,
            )
        )
    return None if body is None else dict(json.loads(body))


def with_after_sale(stored: dict[str, Any], change: AfterSaleChange) -> CanonicalOrder:
    """The stored order with the after-sale added (or replacing its earlier
    report), as a revision later than the stored one (the router keeps its
    status from going back, and makes its documents)."""
    for assigned in ASSIGNED:
        stored.pop(assigned, None)
    kept = CanonicalOrder.model_validate(stored)
    sales = [s for s in kept.after_sales if s.id != change.after_sale.id]
    stamp = kept.updated_at or kept.placed_at
    later = max(change.at, stamp + timedelta(seconds=1))
    return kept.model_copy(update={"after_sales": [*sales, change.after_sale], "updated_at": later})
