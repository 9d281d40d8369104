"""Canonical order model, schema version 1.

Every channel's payload is translated into :class:`CanonicalOrder`. The model
checks *shape* (types, required fields, timezone-aware timestamps, exact
money); business rules (a Chinese mobile number, a complete address, totals
adding up) are the router's validation, which reports machine-readable
reasons instead of a parse error.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from canonical.aftersales import AfterSale
from canonical.json_bytes import sorted_compact
from canonical.money import Money
from canonical.tracking import Tracking

SCHEMA_VERSION: Literal[1] = 1


def _no_nul(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold U+0000; refuse it at the edge.
    if "\x00" in value:
        raise ValueError("text must not contain the NUL character")
    return value


# The length first: checked in pydantic's core; after a Python validator it
# would be a Python call of its own for every text (a tenth of an order's parse).
Text = Annotated[str, Field(max_length=2000), AfterValidator(_no_nul)]
ShortText = Annotated[str, Field(max_length=200), AfterValidator(_no_nul)]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class OrderStatus(StrEnum):
    """Order status. Rank only grows: an order never goes back to a lower one."""

    CREATED = "created"
    PAID = "paid"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"

    @property
    def rank(self) -> int:
        return _STATUS_RANK[self]


# created < paid < shipped < delivered; cancellation and refund close an
# order whatever came before, and a refund may follow a cancellation.
_STATUS_RANK: dict[OrderStatus, int] = {
    OrderStatus.CREATED: 0,
    OrderStatus.PAID: 1,
    OrderStatus.SHIPPED: 2,
    OrderStatus.DELIVERED: 3,
    OrderStatus.CANCELLED: 4,
    OrderStatus.REFUNDED: 5,
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Customer(_Model):
    name: ShortText | None = None
    phone: ShortText | None = Field(default=None, description="Mobile number, e.g. 13800138000")
    email: ShortText | None = None
    masked_phone: ShortText | None = Field(
        default=None,
        description=(
            "The phone as the platform shows it when it hides the number, e.g. 1387677****: "
            "the buyer is reached through the platform."
        ),
    )


class Address(_Model):
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "CN"
    province: ShortText | None = None
    city: ShortText | None = None
    district: ShortText | None = None
    street: Text | None = None
    postal_code: ShortText | None = None


class LineItem(_Model):
    sku: ShortText
    name: ShortText | None = None
    quantity: int
    unit_price: Money
    discount: Money = Decimal("0")
    platform_sku: ShortText | None = Field(
        default=None,
        description="The channel's SKU this line was mapped from (set on the way to a system).",
    )

    @property
    def line_total(self) -> Decimal:
        return self.unit_price * self.quantity - self.discount


class Accounts(_Model):
    """Who the order is in our books (set on the way to a system, from the
    mapping tables): the shop's ERP customer, department and settlement
    account, and the warehouse that ships it."""

    customer: ShortText | None = None
    department: ShortText | None = None
    settlement_account: ShortText | None = None
    warehouse: ShortText | None = None


class Shipment(_Model):
    """What the warehouse reported when it sent the order out."""

    carrier: ShortText = Field(description="The carrier's name or code, e.g. SF (顺丰), ZTO, UPS")
    tracking_number: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{4,40}$")]
    shipped_at: AwareDatetime
    carrier_code: ShortText | None = Field(
        default=None, description="The carrier's code in the channel's list, where it has one"
    )


class CanonicalOrder(_Model):
    """One order as orderbus understands it, whatever channel it came from."""

    schema_version: Literal[1] = 1
    order_number: ShortText | None = Field(
        default=None,
        description=(
            "Unified order number assigned by orderbus; absent until the router accepts the order."
        ),
    )
    channel: Slug
    shop: ShortText = "default"
    external_id: ShortText = Field(description="The order's id in its channel.")
    status: OrderStatus
    version: int = Field(
        default=1,
        ge=1,
        description="The channel's revision of this order; a higher one supersedes a lower one.",
    )
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    customer: Customer = Customer()
    shipping_address: Address = Address()
    items: list[LineItem] = Field(min_length=1, max_length=1000)
    shipping_fee: Money = Decimal("0")
    order_discount: Money = Decimal("0")
    tax: Money = Field(
        default=Decimal("0"),
        description="Tax charged on top of the prices (0 where prices include tax).",
    )
    total: Money
    placed_at: AwareDatetime
    updated_at: AwareDatetime | None = None
    note: Text | None = None
    shipment: Shipment | None = Field(
        default=None, description="Set when a warehouse reported the order shipped."
    )
    accounts: Accounts | None = Field(
        default=None,
        description="The shop's ERP customer, department, settlement account and the warehouse "
        "(set on the way to a system from the mapping tables; templates read "
        "{{accounts.customer}}...).",
    )
    mapping_version: int | None = Field(
        default=None,
        description="The version of the mapping tables applied to this copy (set on the way "
        "to a system: the SKUs are then the system's codes).",
    )
    tracking: Tracking | None = Field(
        default=None,
        description="The parcel's way to the door: the carrier's events, newest first, and "
        "where it is (set from the carrier's tracking; delivered closes the order).",
    )
    after_sales: list[AfterSale] = Field(
        default_factory=list,
        max_length=100,
        description="Cancellations, refunds and returns (售后) of the order or of its lines, "
        "as the channel reports them; a status never goes back.",
    )

    @property
    def business_key(self) -> tuple[str, str, str]:
        return (self.channel, self.shop, self.external_id)

    def computed_total(self) -> Decimal:
        items = sum((item.line_total for item in self.items), Decimal("0"))
        return items + self.shipping_fee + self.tax - self.order_discount

    def to_wire(self) -> bytes:
        """JSON bytes for the bus: UTF-8, money as strings, keys sorted."""
        return wire_of(self.model_dump(mode="json"))

    @classmethod
    def from_wire(cls, body: bytes) -> CanonicalOrder:
        return cls.model_validate_json(body)

    def content_hash(self) -> str:
        """Hash of what the channel said, ignoring what orderbus assigned.

        Two arrivals with the same hash are the same fact: the second one is
        an exact duplicate.
        """
        return content_hash_of(self.model_dump(mode="json"))

    def precedence(self) -> tuple[int, int, str]:
        """Order in which revisions of one order supersede each other."""
        stamp = self.updated_at.isoformat() if self.updated_at else ""
        return (self.status.rank, self.version, stamp)


def wire_of(dumped: dict[str, Any]) -> bytes:
    """An order's ``model_dump(mode="json")`` as :meth:`CanonicalOrder.to_wire` sends it."""
    return sorted_compact(dumped)


def content_hash_of(dumped: dict[str, Any]) -> str:
    """:meth:`CanonicalOrder.content_hash` of an order's ``model_dump(mode="json")``
    (the router dumps each order once, for its hash and its body); ``dumped``
    is not changed."""
    data = {k: v for k, v in dumped.items() if k != "order_number"}
    # Fields added later are left out while empty: orders from before them
    # hash as they did then (tax, the masked phone, shipment, after-sales, tracking).
    if not Decimal(data["tax"]):
        del data["tax"]
    if data["customer"].get("masked_phone") is None:
        data["customer"] = {k: v for k, v in data["customer"].items() if k != "masked_phone"}
    for later in ("shipment", "tracking"):
        if data[later] is None:
            del data[later]
    if not data["after_sales"]:
        del data["after_sales"]
    return hashlib.sha256(wire_of(data)).hexdigest()


def json_schema() -> dict[str, Any]:
    schema = CanonicalOrder.model_json_schema(mode="serialization")
    schema["$id"] = f"https://orderbus.invalid/schemas/canonical-order-v{SCHEMA_VERSION}.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
