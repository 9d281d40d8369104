"""Cross-channel duplicate suspicion: the same order entering twice.

A customer orders in the mini-program and a clerk also types the order into
the store's spreadsheet; a marketplace order is re-keyed by hand into the web
shop. The two have different business keys, so dedup cannot see them. Here a
new order whose *fingerprint* (by default: the customer's phone, the SKUs and
quantities, the total and currency) equals that of an order from another
channel placed within ``window_hours`` is **held**: recorded, but sent to no
system until a person releases it (or rejects it as the duplicate it is)
through the admin API.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from canonical.order import CanonicalOrder

FIELDS = ("phone", "email", "items", "total", "address")


@dataclass(frozen=True)
class Suspicion:
    enabled: bool = True
    by: tuple[str, ...] = ("phone", "items", "total")
    window: timedelta = timedelta(hours=24)
    across_channels_only: bool = True

    def describe(self) -> str:
        return ", ".join(self.by)


def _phone(value: str | None) -> str | None:
    if not value:
        return None
    digits = re.sub(r"\D", "", value)
    return digits[2:] if digits.startswith("86") and len(digits) == 13 else digits or None


def fingerprint(order: CanonicalOrder, by: Sequence[str]) -> str | None:
    """What a duplicate of ``order`` would share; None when a chosen part is
    missing (an order without a phone cannot be suspected by phone)."""
    parts: list[str] = []
    for name in by:
        if name == "phone":
            value = _phone(order.customer.phone)
        elif name == "email":
            value = order.customer.email.lower() if order.customer.email else None
        elif name == "items":
            value = ";".join(sorted(f"{i.sku}x{i.quantity}" for i in order.items))
        elif name == "total":
            value = f"{order.total.normalize():f} {order.currency}"
        elif name == "address":
            a = order.shipping_address
            joined = "|".join(p or "" for p in (a.province, a.city, a.district, a.street))
            value = re.sub(r"\s", "", joined) or None
        else:  # pragma: no cover - settings refuse other names
            raise ValueError(name)
        if value is None:
            return None
        parts.append(f"{name}={value}")
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def within(window: timedelta, a: datetime | None, b: datetime | None) -> bool:
    return a is not None and b is not None and abs(a - b) <= window
