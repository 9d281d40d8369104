"""WooCommerce order webhooks (the REST API v3 order object, as webhooks send it).

Documented by WooCommerce (woocommerce-rest-api-docs, "Webhooks: delivery/payload";
"Orders: order properties"):

- ``X-WC-Webhook-Signature``: base64 of HMAC-SHA256 over the raw body, keyed
  with the webhook's secret; checked in constant time against every secret.
- ``X-WC-Webhook-Topic``: ``order.created`` and ``order.updated`` carry the
  order; any other topic is answered 200 and recorded as ignored.
- ``X-WC-Webhook-Delivery-ID`` and ``X-WC-Webhook-Source`` are not signed, so
  neither is used: the message id is a hash of the signed body, the shop the
  channel's ``shop`` setting.
- When a webhook is created, WooCommerce sends an unsigned ping whose body is
  ``webhook_id=N`` (form-encoded): answered 200 and recorded, never read as an order.

Mapping: ``processing`` is paid, ``completed`` is shipped; ``pending``,
``on-hold`` and ``failed`` are created; ``cancelled`` and ``refunded`` as named;
``checkout-draft`` and ``trash`` are not orders yet (or any more) and are ignored.
Line ``total`` is after coupons, ``subtotal`` before, both without tax; taxes
are ``total_tax``; fee lines count as shipping and other charges (a negative fee
as a discount). An empty SKU becomes ``woo-product-{product_id}[-{variation_id}]``.
Dates ``*_gmt`` are UTC.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from canonical.money import KNOWN_CURRENCIES
from connectors.base import (
    Arrival,
    ChannelConfig,
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

SIGNATURE_HEADER = "X-WC-Webhook-Signature"
TOPIC_HEADER = "X-WC-Webhook-Topic"
DELIVERY_HEADER = "X-WC-Webhook-Delivery-ID"
SOURCE_HEADER = "X-WC-Webhook-Source"

ORDER_TOPICS = frozenset({"order.created", "order.updated"})
PING = re.compile(rb"^webhook_id=\d{1,20}$")

STATUSES = {
    "pending": "created",
    "on-hold": "created",
    "failed": "created",
    "processing": "paid",
    "completed": "shipped",
    "cancelled": "cancelled",
    "refunded": "refunded",
}
NOT_ORDERS = frozenset({"checkout-draft", "trash", "auto-draft"})


def is_ping(request: WebhookRequest) -> bool:
    return request.header(SIGNATURE_HEADER) is None and bool(PING.match(request.body.strip()))


class WooCommerceConnector:
    name = "woocommerce"
    # The ping is form-encoded (or sent without a content type).
    media_types = frozenset({"application/json", "application/x-www-form-urlencoded", ""})
    reply: dict[str, Any] | None = None

    def authenticate(self, request: WebhookRequest, channel: ChannelConfig, tolerance: int) -> None:
        if is_ping(request):
            return  # unsigned by design, and read as nothing
        require_hmac_base64(request, channel.secrets, SIGNATURE_HEADER)

    def read(self, request: WebhookRequest, channel: ChannelConfig) -> WebhookResult:
        if is_ping(request):
            return WebhookResult(ignored=f"WooCommerce ping ({request.body.decode().strip()})")
        topic = (request.header(TOPIC_HEADER) or "").strip()
        if topic not in ORDER_TOPICS:
            return WebhookResult(ignored=f"topic {topic or '(none)'!r} is not an order topic")
        data = load_json(request.body, exact_numbers=True)
        if not isinstance(data, dict):
            raise unreadable("the body must be a JSON object (the order)")
        status = str(data.get("status") or "")
        if status in NOT_ORDERS:
            return WebhookResult(ignored=f"order {data.get('id')} has status {status!r}")
        # The signature covers the body only: the shop comes from configuration,
        # the delivery's id from the signed body (the source and delivery
        # headers are not signed; a replay could set them).
        shop = channel.shop or "default"
        order = canonical_order(to_canonical(data, channel.name, shop))
        return WebhookResult((Arrival(order, signed_delivery_id(request.body)),))

    def sign(self, body: bytes, secret: str, now: float) -> tuple[dict[str, str], bytes]:
        return {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: hmac_sha256_base64(secret, body),
            TOPIC_HEADER: "order.created",
            SOURCE_HEADER: "https://example.com/",
            DELIVERY_HEADER: "6d0e6a3b1d3a1e5f0c0b4e2a9f8d7c6b",
        }, body


def _places(currency: str) -> int:
    return KNOWN_CURRENCIES.get(currency, 2)


def _line(line: dict[str, Any], where: str, currency: str) -> dict[str, Any]:
    quantity = field(line, "quantity")
    if not isinstance(quantity, int) or isinstance(quantity, bool):
        raise unreadable(f"{where}.quantity is not an integer: {quantity!r}")
    subtotal = amount(field(line, "subtotal"), f"{where}.subtotal")
    total = amount(field(line, "total"), f"{where}.total")
    if quantity > 0:
        unit = (subtotal / quantity).quantize(Decimal(1).scaleb(-_places(currency)))
    else:
        unit = subtotal
    sku = line.get("sku")
    if not sku:
        variation = f"-{line['variation_id']}" if line.get("variation_id") else ""
        sku = f"woo-product-{field(line, 'product_id')}{variation}"
    # The line's discount makes unit price x quantity - discount equal the
    # line total exactly, whatever rounding the per-unit price needed.
    return {
        "sku": str(sku),
        "name": line.get("name"),
        "quantity": quantity,
        "unit_price": unit,
        "discount": unit * quantity - total,
    }


def refunds_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The order's ``refunds`` (WooCommerce lists each as ``{id, reason,
    total}``, the total negative) as completed refunds of money, no lines."""
    found = []
    for index, refund in enumerate(data.get("refunds") or []):
        where = f"refunds[{index}]"
        if not isinstance(refund, dict):
            raise unreadable(f"{where} is not an object")
        given = amount(str(refund.get("total") or "0"), f"{where}.total")
        found.append(
            {
                "id": str(field(refund, "id")),
                "kind": "refund",
                "status": "completed",
                "amount": abs(given),
                "reason": str(refund.get("reason") or "")[:200] or None,
            }
        )
    return found


def to_canonical(data: dict[str, Any], channel: str, shop: str) -> dict[str, Any]:
    """The canonical order's fields from a WooCommerce order object."""
    currency = field(data, "currency")
    status = str(field(data, "status"))
    if status not in STATUSES:
        raise unreadable(f"order status {status!r} is not one orderbus knows")
    items = [
        _line(line, f"line_items[{i}]", currency)
        for i, line in enumerate(field(data, "line_items"))
    ]
    fees = [
        amount(fee.get("total", "0"), f"fee_lines[{i}].total")
        for i, fee in enumerate(data.get("fee_lines") or [])
    ]
    shipping_fee = amount(data.get("shipping_total") or "0", "shipping_total") + sum(
        (f for f in fees if f > 0), Decimal("0")
    )
    discount = -sum((f for f in fees if f < 0), Decimal("0"))
    billing = data.get("billing") or {}
    shipping = data.get("shipping") or {}
    if not any(shipping.get(k) for k in ("address_1", "city", "country")):
        shipping = billing
    name = " ".join(p for p in (shipping.get("first_name"), shipping.get("last_name")) if p)
    destination = address(
        country=shipping.get("country"),
        province=shipping.get("state"),
        city=shipping.get("city"),
        lines=(shipping.get("address_1"), shipping.get("address_2")),
        postal_code=shipping.get("postcode"),
    )
    modified = data.get("date_modified_gmt")
    return {
        "channel": channel,
        "shop": shop,
        "external_id": str(field(data, "id")),
        "status": STATUSES[status],
        "currency": currency,
        "customer": {
            "name": name or None,
            "phone": billing.get("phone") or shipping.get("phone") or None,
            "email": billing.get("email") or None,
        },
        "shipping_address": destination,
        "items": items,
        "shipping_fee": shipping_fee,
        "order_discount": discount,
        "tax": amount(data.get("total_tax") or "0", "total_tax"),
        "total": amount(field(data, "total"), "total"),
        "placed_at": timestamp(field(data, "date_created_gmt"), "date_created_gmt"),
        "updated_at": timestamp(modified, "date_modified_gmt") if modified else None,
        "note": data.get("customer_note") or None,
        "after_sales": refunds_of(data),
    }
