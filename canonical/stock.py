"""Stock levels, and what a channel may sell of them (pure).

The warehouse (or the ERP) reports each SKU's available units as of a time;
a channel listing sells one of our SKUs, a pack of several units of one, or
a bundle of several SKUs (the mapping tables, canonical/mapping.py). What a
listing can sell is what its scarcest component allows; what the channel is
told is that share of it (``ratio``) less a safety stock, never below 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_FLOOR, Decimal
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from canonical.mapping import Component

MAX_PUSH_ATTEMPTS = 10  # a listing a channel refused this often waits for its next change


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain the NUL character")
    return value


Sku = Annotated[str, AfterValidator(_no_nul), Field(min_length=1, max_length=200)]


class StockLevel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    sku: Sku = Field(description="Our SKU (the mapping tables' internal SKU).")
    available: int = Field(ge=0, le=100_000_000, description="Units that can be sold now.")
    as_of: AwareDatetime = Field(description="When the warehouse counted them.")


class StockReport(BaseModel):
    """What the warehouse says: some SKUs' levels (``POST /stock``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    levels: list[StockLevel] = Field(min_length=1, max_length=5000)


def listing_units(components: tuple[Component, ...], levels: Mapping[str, int]) -> int | None:
    """Units of a listing its components' levels allow; None while one of
    them has no level yet (nothing is sent on a guess)."""
    allowed = []
    for component in components:
        level = levels.get(component.sku)
        if level is None:
            return None
        allowed.append(level // max(component.quantity, 1))
    return min(allowed) if allowed else None


def allocated(units: int, ratio: float, safety: int) -> int:
    """The channel's share of ``units``, less its safety stock, never below 0."""
    share = (Decimal(units) * Decimal(str(ratio))).to_integral_value(rounding=ROUND_FLOOR)
    return max(0, int(share) - safety)
