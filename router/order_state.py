"""An order as one routing transaction sees it, and the rows that hold it:
what the router's batch (router/batch.py) reads, decides on and writes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, select

from canonical.aftersales import AfterSale
from canonical.order import CanonicalOrder, OrderStatus
from infra.tables import orders
from router.dedup import Outcome, order_number

BusinessKey = tuple[str, str, str]


@dataclass(frozen=True)
class RouteResult:
    outcome: Outcome | None  # None: this message was processed before
    order_number: str | None
    targets: tuple[str, ...] = ()


def lock_known_orders(keys: Iterable[BusinessKey]) -> Select[Any]:
    """The orders with these business keys, locked in key order (so two routers
    never deadlock), found by their order numbers.

    An order number is a function of the business key, and its unique index
    is one column: each number is one index probe, whatever the planner knows.
    (Asked by the three-column key, PostgreSQL without statistics scanned every
    order of the channel and shop for each batch: it grew with the table.)
    """
    numbers = sorted({order_number(*key) for key in keys})
    return (
        select(orders)
        .where(orders.c.order_number.in_(numbers))
        .order_by(orders.c.channel, orders.c.shop, orders.c.external_id)
        .with_for_update()
    )


def state_values(
    order: CanonicalOrder, body: str, digest: str, version: int, now: datetime
) -> dict[str, object]:
    """The ``orders`` columns that hold an accepted revision."""
    rank, source_version, stamp = order.precedence()
    parcel = order.tracking
    return {
        "tracking_number": order.shipment.tracking_number if order.shipment else None,
        "parcel_state": parcel.state.value if parcel else None,
        "parcel_updated_at": parcel.updated_at if parcel else None,
        "status": order.status.value,
        "status_rank": rank,
        "source_version": source_version,
        "source_updated_at": stamp,
        "content_hash": digest,
        "version": version,
        "body": body,
        "updated_at": now,
    }


@dataclass(frozen=True)
class Lookalike:
    """An order a new one may repeat: stored, or new earlier in this batch."""

    number: str
    channel: str
    placed_at: datetime | None


@dataclass
class OrderState:
    """An order as this transaction sees it: loaded, or created or changed by
    an earlier arrival of the same batch."""

    id: int | None
    number: str
    status: OrderStatus
    precedence: tuple[int, int, str]
    content_hash: str
    version: int
    values: dict[str, object] | None = None  # to write: the latest accepted revision
    is_new: bool = False
    arrival_rows: list[dict[str, object]] = field(default_factory=list)
    hold_status: str | None = None  # open or rejected: nothing of it goes out
    new_hold: dict[str, object] | None = None  # to write: the hold this batch opened
    customer_key: str | None = None  # a new order's customer (router/approval.py)
    fingerprint: str | None = None
    placed_at: datetime | None = None
    body: str | None = None  # the accepted revision as stored (its after-sales are read from it)
    parcel_noticed: bool = False  # the customer was told of a problem with the parcel

    @property
    def held(self) -> bool:
        return self.hold_status in ("open", "rejected")

    def after_sales(self) -> list[AfterSale]:
        """The after-sales of the accepted revision (the body is parsed only
        when it has some: the compact wire form writes them as
        ``"after_sales":[{``; bodies stored before after-sales existed have
        no such key and are not parsed on every update either)."""
        if not self.body or '"after_sales":[{' not in self.body:
            return []
        return CanonicalOrder.from_wire(self.body.encode("utf-8")).after_sales

    @classmethod
    def loaded(cls, row: Row[Any]) -> OrderState:
        return cls(
            id=row.id,
            number=row.order_number,
            status=OrderStatus(row.status),
            precedence=(row.status_rank, row.source_version, row.source_updated_at),
            content_hash=row.content_hash,
            version=row.version,
            hold_status=row.hold_status,
            body=row.body,
            parcel_noticed=row.parcel_noticed_at is not None,
        )


@dataclass(frozen=True)
class HoldDecision:
    """Why a new order waits for people, and how many must approve it."""

    reasons: list[str]
    approvals: int
    twin: Lookalike | None
