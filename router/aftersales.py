"""After-sales in the router: what an order's cancellations, refunds and
returns (canonical/aftersales.py) mean for the systems.

Each accepted revision's after-sales are first **merged** with those the
order had: an after-sale the channel reports again at an earlier status
keeps the status it reached (and its amounts), and one the channel leaves out
is kept. A channel that only says the order's status gets its after-sale
all the same: an order that becomes ``cancelled`` or ``refunded`` with no
such after-sale reported gets one for the whole order (id ``status-cancel``
or ``status-refund``).

Then each after-sale that **takes effect** with this revision (agreed or
completed, and was not before) becomes documents, which go to their systems
instead of the plain revision:

- a cancel (or a whole-order refund) before the order shipped: an
  ``intercept`` to the warehouse (stop the pick) and a ``reversal`` to
  finance (undo the sale), each only if that system had the order;
- a refund (money only) otherwise: a ``refund`` to finance, for its lines
  and amount;
- a return, or a cancel after the order shipped: a ``return`` to the
  warehouse (goods coming back) and to finance; a return with no money (the
  goods of a cancelled order the warehouse shipped before the intercept
  reached it) to the warehouse only.

A document's message id names the order, the document and the after-sale,
not the revision: however often the after-sale is reported, each system gets
each document once (the consumers' inbox).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from canonical.aftersales import AfterSale, AfterSaleKind, AfterSaleStatus
from canonical.order import CanonicalOrder
from canonical.order import OrderStatus as S

SHIPPED = frozenset({S.SHIPPED, S.DELIVERED})
HAD_IT = frozenset({S.PAID, S.SHIPPED, S.DELIVERED})  # the systems had the order


@dataclass(frozen=True)
class Document:
    target: str
    kind: str  # intercept | reversal | refund | return
    after_sale: AfterSale


def merged(before: list[AfterSale], incoming: list[AfterSale]) -> list[AfterSale]:
    """``incoming`` with no after-sale behind where it was, and none lost."""
    known = {sale.id: sale for sale in before}
    result = []
    for sale in incoming:
        old = known.pop(sale.id, None)
        result.append(old if old is not None and old.status.rank > sale.status.rank else sale)
    return result + list(known.values())


def with_status_after_sale(order: CanonicalOrder, previous: S | None) -> CanonicalOrder:
    """``order`` with an after-sale for a cancellation or a full refund that
    its status says and no after-sale of it does."""
    if previous is None or previous == order.status:
        return order
    if order.status == S.CANCELLED:
        kinds, sale_id, kind = {AfterSaleKind.CANCEL}, "status-cancel", AfterSaleKind.CANCEL
    elif order.status == S.REFUNDED:
        kinds = {AfterSaleKind.REFUND, AfterSaleKind.RETURN, AfterSaleKind.CANCEL}
        sale_id, kind = "status-refund", AfterSaleKind.REFUND
    else:
        return order
    effective = [s for s in order.after_sales if s.status.takes_effect]
    if any(s.kind in kinds and s.whole_order for s in effective):
        return order
    given_back = sum((s.amount for s in effective), Decimal("0"))
    sale = AfterSale(
        id=sale_id,
        kind=kind,
        status=AfterSaleStatus.COMPLETED,
        amount=order.total - given_back if kind == AfterSaleKind.REFUND else order.total,
        reason=f"the channel says the order is {order.status.value}",
        updated_at=order.updated_at,
    )
    return order.model_copy(update={"after_sales": [*order.after_sales, sale]})


def documents(before: list[AfterSale], after: CanonicalOrder, previous: S | None) -> list[Document]:
    """The documents of the after-sales that take effect with this revision.
    An order closed already (cancelled, refunded) had its sale undone: only
    goods coming back still concern a system (a cancel the warehouse heard
    of too late: router/shipments.py)."""
    if previous is None or previous == S.CREATED:
        return []  # nobody has the order: nothing to undo
    closed = previous not in HAD_IT
    was_effective = {s.id for s in before if s.status.takes_effect}
    found: list[Document] = []
    for sale in after.after_sales:
        if not sale.status.takes_effect or sale.id in was_effective:
            continue
        if closed and sale.kind != AfterSaleKind.RETURN:
            continue
        found += _documents_of(sale, after, previous)
    return found


def _documents_of(sale: AfterSale, order: CanonicalOrder, previous: S) -> list[Document]:
    shipped = previous in SHIPPED
    whole = sale.amount >= order.total  # all the money back
    if sale.kind == AfterSaleKind.RETURN and not sale.amount:
        return [Document("warehouse", "return", sale)]  # goods only: no money moves
    if sale.kind == AfterSaleKind.RETURN or (sale.kind == AfterSaleKind.CANCEL and shipped):
        return [Document("warehouse", "return", sale), Document("finance", "return", sale)]
    if sale.kind == AfterSaleKind.CANCEL or (whole and not shipped):
        return [Document("warehouse", "intercept", sale), Document("finance", "reversal", sale)]
    return [Document("finance", "refund", sale)]
