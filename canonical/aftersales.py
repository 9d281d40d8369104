"""After-sales (售后) on an order: cancellations, refunds and returns, whole
or per line, with amounts exact to the fen.

An order carries its after-sales as its channel reports them
(``CanonicalOrder.after_sales``); each has the platform's id, a kind, a
status that only moves forward (requested → agreed → completed; or refused /
withdrawn, which end it), the lines it concerns (none: the whole order) and
the amount given back. The router keeps what it has seen (a status never
goes back, router/aftersales.py) and turns each after-sale that takes effect
into the documents the systems need: an intercept for the warehouse, a
reversal or a return for finance.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from canonical.money import Money


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain the NUL character")
    return value


Id = Annotated[str, AfterValidator(_no_nul), Field(min_length=1, max_length=100)]
ShortText = Annotated[str, AfterValidator(_no_nul), Field(max_length=200)]


class AfterSaleKind(StrEnum):
    CANCEL = "cancel"  # the order, before it ships: stop it
    REFUND = "refund"  # money back, the goods stay with the buyer (仅退款)
    RETURN = "return"  # goods come back, money goes back (退货退款)


class AfterSaleStatus(StrEnum):
    REQUESTED = "requested"  # the buyer asked; nothing is done yet
    AGREED = "agreed"  # the seller (or the platform) agreed: it takes effect
    COMPLETED = "completed"  # the money went back
    REFUSED = "refused"  # the seller said no: it ends, nothing happens
    WITHDRAWN = "withdrawn"  # the buyer took it back: it ends, nothing happens

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def takes_effect(self) -> bool:
        return self in (AfterSaleStatus.AGREED, AfterSaleStatus.COMPLETED)


_RANK = {
    AfterSaleStatus.REQUESTED: 0,
    AfterSaleStatus.AGREED: 1,
    AfterSaleStatus.REFUSED: 1,
    AfterSaleStatus.WITHDRAWN: 1,
    AfterSaleStatus.COMPLETED: 2,
}


class AfterSaleLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    sku: ShortText = Field(description="The order line's SKU, as the channel sent it.")
    quantity: int = Field(ge=1, description="Units given back (a return) or refunded.")
    amount: Money = Field(description="Money given back for this line.")


class AfterSale(BaseModel):
    """One cancellation, refund or return of an order (or of some of its lines)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    id: Id = Field(description="The platform's id of the after-sale (refund id, return id).")
    kind: AfterSaleKind
    status: AfterSaleStatus
    lines: list[AfterSaleLine] = Field(
        default_factory=list,
        max_length=1000,
        description="The lines it concerns; none: the whole order.",
    )
    amount: Money = Field(description="The money given back in all (0 for a bare cancel).")
    reason: ShortText | None = None
    updated_at: AwareDatetime | None = None

    @property
    def whole_order(self) -> bool:
        return not self.lines

    def lines_total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0"))
