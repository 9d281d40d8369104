"""Holds for approval: a new order a person must look at before any system
hears of it (``ORDERBUS_HOLD_RULES``).

- ``amount_above``: the order's total above the threshold of its currency
  (``{"CNY": "5000.00"}``); above ``second_approval_above`` it needs two
  different people to approve it;
- ``incomplete_address``: a shipping address without its province, city or
  street;
- ``first_order``: the first order of a customer orderbus has not seen before
  (by phone, else email; an order with neither is not held by this rule).

An order under every threshold with a whole address passes by itself. A held
order is recorded like any other; ``POST /holds/{id}/release`` sends its
current revision once (the second approval does, when two are needed), and
``POST /holds/{id}/reject`` keeps it from every system, with the reason.
Cross-channel duplicate suspicion (router/suspicion.py) holds orders the same way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from canonical.order import CanonicalOrder


@dataclass(frozen=True)
class HoldRules:
    amount_above: Mapping[str, Decimal] = field(default_factory=dict)
    second_approval_above: Mapping[str, Decimal] = field(default_factory=dict)
    incomplete_address: bool = False
    first_order: bool = False

    def check(self, order: CanonicalOrder) -> tuple[list[str], int]:
        """Why the order must be approved, and by how many people (0: it need not)."""
        reasons: list[str] = []
        needed = 0
        limit = self.amount_above.get(order.currency)
        if limit is not None and order.total > limit:
            needed = 1
            second = self.second_approval_above.get(order.currency)
            if second is not None and order.total > second:
                needed = 2
                reasons.append(
                    f"total {order.total} {order.currency} above {second}: two approvals needed"
                )
            else:
                reasons.append(f"total {order.total} {order.currency} above {limit}")
        if self.incomplete_address:
            a = order.shipping_address
            missing = [n for n in ("province", "city", "street") if not getattr(a, n)]
            if missing:
                needed = max(needed, 1)
                reasons.append(f"shipping address without {', '.join(missing)}")
        return reasons, needed


def customer_key(order: CanonicalOrder) -> str | None:
    """Who the customer is, hashed: their phone (digits, without +86), else
    their email (lower-case); None with neither."""
    digits = re.sub(r"\D", "", order.customer.phone or "")
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if digits:
        return hashlib.sha256(f"phone:{digits}".encode()).hexdigest()
    email = (order.customer.email or "").strip().lower()
    return hashlib.sha256(f"email:{email}".encode()).hexdigest() if email else None
