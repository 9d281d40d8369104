"""Shopify order webhooks (the Admin REST order resource, as webhooks send it).

Documented by Shopify (shopify.dev, "Verify webhook deliveries"; the webhook
topics reference):

- ``X-Shopify-Hmac-SHA256``: base64 of HMAC-SHA256 over the raw body, keyed
  with the app's client secret. Checked against every configured secret (a
  rotated secret takes up to an hour to be used), in constant time.
- ``X-Shopify-Topic``: ``orders/create``, ``orders/updated``, ``orders/paid``,
  ``orders/cancelled`` (and ``orders/fulfilled``, ``orders/partially_fulfilled``)
  carry the whole order; any other topic is answered 200 and recorded as ignored.
- ``X-Shopify-Webhook-Id`` and ``X-Shopify-Shop-Domain`` are not signed, so
  neither is used: a replay of a captured webhook could set them. The message
  id is a hash of the signed body (the same on every retry, so a redelivery
  has no second effect); the shop is the channel's ``shop`` setting.

Mapping: the status comes from the payload, not the topic (a late
``orders/paid`` after ``orders/cancelled`` must not reopen the order):
cancelled (``cancelled_at`` set) or refunded > fulfilled (shipped) > paid
(``paid``, ``partially_refunded``) > created (``pending``, ``authorized``,
``partially_paid``, ``voided``...). The precedence stamp is ``updated_at``
in UTC. Prices are strings in the shop currency; order-level and line
discounts are in ``total_discounts``; taxes are ``total_tax`` unless
``taxes_included``; shipping is the sum of ``shipping_lines``.
"""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal
from typing import Any

from canonical.aftersales import AfterSale, AfterSaleKind, AfterSaleStatus
from connectors.base import (
    AfterSaleChange,
    Arrival,
    ChannelConfig,
    StatusChange,
    WebhookRequest,
    WebhookResult,
    unreadable,
)
from connectors.payload import (
    address,
    amount,
    canonical_order,
    field,
    hmac_sha256_base64,
    load_json,
    require_hmac_base64,
    signed_delivery_id,
    timestamp,
)

HMAC_HEADER = "X-Shopify-Hmac-SHA256"
TOPIC_HEADER = "X-Shopify-Topic"
WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"
SHOP_HEADER = "X-Shopify-Shop-Domain"

ORDER_TOPICS = frozenset(
    {
        "orders/create",
        "orders/updated",
        "orders/paid",
        "orders/cancelled",
        "orders/fulfilled",
        "orders/partially_fulfilled",
    }
)


REFUND_TOPIC = "refunds/create"


def refund_of(request: WebhookRequest, shop: str) -> WebhookResult:
    """A refunds/create push (a Refund object) as an after-sale of its order:
    a return when a line is restocked as returned, else a refund; completed
    once a refund transaction succeeded, agreed before. Each line gives back
    its subtotal and its tax; the after-sale what the transactions paid back
    (its lines' sum when none did yet)."""
    data = load_json(request.body, exact_numbers=True)
    if not isinstance(data, dict):
        raise unreadable("the body must be a JSON object (the refund)")
    lines = []
    restocks = set()
    for index, item in enumerate(data.get("refund_line_items") or []):
        where = f"refund_line_items[{index}]"
        line = item.get("line_item") or {}
        sku = line.get("sku") or (
            f"shopify-variant-{line['variant_id']}" if line.get("variant_id") else None
        )
        if not sku:
            raise unreadable(f"{where}.line_item has neither sku nor variant_id")
        given = amount(item.get("subtotal") or "0", f"{where}.subtotal") + amount(
            item.get("total_tax") or "0", f"{where}.total_tax"
        )
        lines.append({"sku": sku, "quantity": field(item, "quantity"), "amount": given})
        restocks.add(str(item.get("restock_type") or ""))
    paid_back = [
        amount(t.get("amount") or "0", f"transactions[{i}].amount")
        for i, t in enumerate(data.get("transactions") or [])
        if t.get("kind") == "refund" and t.get("status") == "success"
    ]
    lines_total = sum((line["amount"] for line in lines), Decimal("0"))
    created = timestamp(field(data, "created_at"), "created_at").astimezone(UTC)
    sale = AfterSale(
        id=str(field(data, "id")),
        kind=AfterSaleKind.RETURN if "return" in restocks else AfterSaleKind.REFUND,
        status=AfterSaleStatus.COMPLETED if paid_back else AfterSaleStatus.AGREED,
        lines=lines,
        amount=sum(paid_back, Decimal("0")) if paid_back and not lines else lines_total,
        reason=str(data.get("note") or "") or None,
        updated_at=created,
    )
    change = AfterSaleChange(
        str(field(data, "order_id")), shop, sale, created, signed_delivery_id(request.body)
    )
    return WebhookResult(after_sales=(change,))


class ShopifyConnector:
    name = "shopify"
    media_types = frozenset({"application/json"})
    reply: dict[str, Any] | None = None

    def authenticate(self, request: WebhookRequest, channel: ChannelConfig, tolerance: int) -> None:
        require_hmac_base64(request, channel.secrets, HMAC_HEADER)

    def read(self, request: WebhookRequest, channel: ChannelConfig) -> WebhookResult:
        topic = (request.header(TOPIC_HEADER) or "").strip()
        if topic == REFUND_TOPIC:
            return refund_of(request, channel.shop or "default")
        if topic not in ORDER_TOPICS:
            return WebhookResult(ignored=f"topic {topic or '(none)'!r} is not an order topic")
        data = load_json(request.body, exact_numbers=True)
        if not isinstance(data, dict):
            raise unreadable("the body must be a JSON object (the order)")
        # The signature covers the body only: the shop comes from configuration,
        # the delivery's id from the signed body (X-Shopify-Shop-Domain and
        # X-Shopify-Webhook-Id are not signed; a replay could set them).
        shop = channel.shop or "default"
        if not data.get("line_items"):
            # orders/updated (and list responses) may leave the lines out. A
            # 4xx would make Shopify retry and, in the end, drop the webhook
            # subscription: its status and amounts go to the order orderbus
            # has (the ingest applies them), or the push is recorded and
            # answered 200.
            if data.get("id") is None:
                return WebhookResult(ignored="an order update without id or line_items")
            updated = data.get("updated_at")
            change = StatusChange(
                str(data["id"]),
                shop,
                status_of(data),
                timestamp(updated, "updated_at").astimezone(UTC) if updated else None,
                signed_delivery_id(request.body),
                amounts_of(data),
                str(data["currency"]) if data.get("currency") else None,
            )
            return WebhookResult(changes=(change,))
        order = canonical_order(to_canonical(data, channel.name, shop))
        return WebhookResult((Arrival(order, signed_delivery_id(request.body)),))

    def sign(self, body: bytes, secret: str, now: float) -> tuple[dict[str, str], bytes]:
        return {
            "Content-Type": "application/json",
            HMAC_HEADER: hmac_sha256_base64(secret, body),
            TOPIC_HEADER: "orders/create",
            SHOP_HEADER: "example.myshopify.com",
            WEBHOOK_ID_HEADER: "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        }, body


def status_of(data: dict[str, Any]) -> str:
    financial = str(data.get("financial_status") or "")
    if financial == "refunded":
        return "refunded"
    if data.get("cancelled_at"):
        return "cancelled"
    if data.get("fulfillment_status") == "fulfilled":
        return "shipped"
    if financial in ("paid", "partially_refunded"):
        return "paid"
    return "created"


def _contact(data: dict[str, Any]) -> dict[str, Any]:
    customer = data.get("customer") or {}
    shipping = data.get("shipping_address") or {}
    billing = data.get("billing_address") or {}
    name = shipping.get("name") or billing.get("name")
    if not name and (customer.get("first_name") or customer.get("last_name")):
        name = " ".join(p for p in (customer.get("first_name"), customer.get("last_name")) if p)
    return {
        "name": name or None,
        "phone": data.get("phone") or customer.get("phone") or shipping.get("phone") or None,
        "email": data.get("email") or data.get("contact_email") or customer.get("email") or None,
    }


def amounts_of(data: dict[str, Any]) -> dict[str, Decimal]:
    """The order-level amounts a Shopify order object carries, by canonical
    field: only those it has (an update without its lines may leave some out)."""
    found: dict[str, Decimal] = {}
    if "shipping_lines" in data:
        found["shipping_fee"] = sum(
            (
                amount(line.get("price", "0"), f"shipping_lines[{i}].price")
                for i, line in enumerate(data.get("shipping_lines") or [])
            ),
            Decimal("0"),
        )
    if "total_discounts" in data:
        found["order_discount"] = amount(data.get("total_discounts") or "0", "total_discounts")
    if "total_tax" in data:
        found["tax"] = (
            Decimal("0")
            if data.get("taxes_included")
            else amount(data.get("total_tax") or "0", "total_tax")
        )
    if data.get("total_price") is not None:
        found["total"] = amount(data["total_price"], "total_price")
    return found


def to_canonical(data: dict[str, Any], channel: str, shop: str) -> dict[str, Any]:
    """The canonical order's fields from a Shopify order object."""
    currency = field(data, "currency")
    items = []
    for index, line in enumerate(field(data, "line_items")):
        where = f"line_items[{index}]"
        sku = line.get("sku") or (
            f"shopify-variant-{line['variant_id']}" if line.get("variant_id") else None
        )
        if not sku:
            raise unreadable(f"{where} has neither sku nor variant_id")
        items.append(
            {
                "sku": sku,
                "name": line.get("name") or line.get("title"),
                "quantity": field(line, "quantity"),
                "unit_price": amount(field(line, "price"), f"{where}.price"),
            }
        )
    amounts = amounts_of(data)
    shipping = data.get("shipping_address") or data.get("billing_address") or {}
    destination = address(
        country=shipping.get("country_code"),
        province=shipping.get("province"),
        city=shipping.get("city"),
        lines=(shipping.get("address1"), shipping.get("address2")),
        postal_code=shipping.get("zip"),
    )
    updated = data.get("updated_at")
    return {
        "channel": channel,
        "shop": shop,
        "external_id": str(field(data, "id")),
        "status": status_of(data),
        "currency": currency,
        "customer": _contact(data),
        "shipping_address": destination,
        "items": items,
        "shipping_fee": amounts.get("shipping_fee", Decimal("0")),
        "order_discount": amounts.get("order_discount", Decimal("0")),
        "tax": amounts.get("tax", Decimal("0")),
        "total": amount(field(data, "total_price"), "total_price"),
        "placed_at": timestamp(field(data, "created_at"), "created_at"),
        "updated_at": timestamp(updated, "updated_at").astimezone(UTC) if updated else None,
        "note": data.get("note") or None,
    }
