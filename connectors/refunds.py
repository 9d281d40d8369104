"""What every platform connector needs to read its refunds and returns (售后)
into canonical after-sales (canonical/aftersales.py): the kind from what the
platform says about goods and shipment, a status from the platform's code by
a table, and the after-sale's fields.

A platform's after-sale of a kind orderbus does not act on (an exchange, a
repair, a resend) is left out: its connector's table does not list it. A
status the table does not know makes the order unreadable, named, rather
than guessed: a wrong guess could undo a sale.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from connectors.base import unreadable

SHIPPED = frozenset({"shipped", "delivered"})


def kind_of(*, returns_goods: bool, shipped: bool) -> str:
    """Goods coming back: a return; money only, before the order shipped: a
    cancel (stop the pick); money only after it: a refund."""
    if returns_goods:
        return "return"
    return "refund" if shipped else "cancel"


def status_of(table: Mapping[Any, str], code: Any, where: str) -> str:
    """The canonical after-sale status for the platform's ``code``."""
    if code not in table:
        raise unreadable(f"{where}: after-sale status {code!r} is not one orderbus knows")
    return table[code]


def sale_line(sku: str, quantity: int, given_back: Decimal) -> dict[str, Any]:
    return {"sku": sku, "quantity": max(quantity, 1), "amount": given_back}


def after_sale(
    sale_id: Any,
    kind: str,
    status: str,
    given_back: Decimal,
    *,
    lines: list[dict[str, Any]] | None = None,
    reason: Any = None,
    updated_at: datetime | None = None,
) -> dict[str, Any]:
    """One canonical after-sale's fields (validated with its order)."""
    return {
        "id": str(sale_id),
        "kind": kind,
        "status": status,
        "lines": lines or [],
        "amount": given_back,
        "reason": str(reason)[:200] if reason not in (None, "") else None,
        "updated_at": updated_at,
    }
