"""Test data and fakes (no mocks)."""

from __future__ import annotations

import copy
import json
import time
from decimal import Decimal
from typing import Any

from canonical.envelope import H_ATTEMPT, H_DETAIL, H_REASON, H_SOURCE_QUEUE, Envelope
from canonical.errors import BrokerUnavailable
from canonical.order import CanonicalOrder
from connectors.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from infra.messages import (
    H_CORRELATION,
    H_ORIGINAL_EXCHANGE,
    H_ORIGINAL_ROUTING_KEY,
    Delivery,
    OutgoingMessage,
)

BASE_ORDER: dict[str, Any] = {
    "channel": "web-shop",
    "shop": "main",
    "external_id": "WS-1",
    "status": "paid",
    "version": 1,
    "currency": "CNY",
    "customer": {"name": "李四", "phone": "13912345678", "email": "lisi@example.com"},
    "shipping_address": {
        "country": "CN",
        "province": "广东省",
        "city": "深圳市",
        "district": "南山区",
        "street": "科技园南路 1 号",
        "postal_code": "518057",
    },
    "items": [
        {"sku": "SKU-A", "name": "A", "quantity": 2, "unit_price": "10.50", "discount": "1.00"},
        {"sku": "SKU-B", "name": "B", "quantity": 1, "unit_price": "5.00"},
    ],
    "shipping_fee": "6.00",
    "order_discount": "0.50",
    "total": "30.50",
    "placed_at": "2026-11-11T00:00:01+08:00",
}


def order_dict(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE_ORDER)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = data[key] | value
        else:
            data[key] = value
    return data


def order(**changes: Any) -> CanonicalOrder:
    return CanonicalOrder.model_validate(order_dict(**changes))


def delivery_for(
    o: CanonicalOrder,
    *,
    queue: str = "t.router",
    message_id: str | None = None,
    body: bytes | None = None,
    headers: dict[str, Any] | None = None,
) -> Delivery:
    env = Envelope.new(o.channel, message_id)
    return Delivery(
        queue=queue,
        body=o.to_wire() if body is None else body,
        message_id=env.message_id,
        correlation_id=env.correlation_id,
        headers=env.headers() if headers is None else headers,
        exchange="t.orders",
        routing_key=f"ingest.{o.channel}",
        redelivered=False,
        content_type="application/json",
        deliveries=1,
    )


def signed_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: sign(secret, ts, body),
    }


def body_of(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


def failure_delivery(body: bytes = b'{"x": 1}', message_id: str = "m-1") -> Delivery:
    return Delivery(
        queue="t.warehouse.dlq",
        body=body,
        message_id=message_id,
        correlation_id=message_id,
        headers={
            "x-orderbus-channel": "web-shop",
            H_ATTEMPT: 1,
            H_REASON: "delivery_rejected",
            H_DETAIL: "warehouse endpoint rejected the order with 422",
            H_SOURCE_QUEUE: "t.warehouse",
            H_ORIGINAL_EXCHANGE: "t.orders",
            H_ORIGINAL_ROUTING_KEY: "deliver.warehouse",
            H_CORRELATION: "corr-1",
        },
        exchange="t.dlx",
        routing_key="t.warehouse",
        redelivered=False,
        content_type="application/json",
        deliveries=1,
    )


class FakePublisher:
    """Records what would have been published; can be told the broker is down."""

    def __init__(self) -> None:
        self.published: list[OutgoingMessage] = []
        self.down = False

    def connect(self) -> None:
        if self.down:
            raise BrokerUnavailable("broker unavailable: connection refused")

    def publish(self, message: OutgoingMessage) -> None:
        if self.down:
            raise BrokerUnavailable("broker unavailable: connection refused")
        self.published.append(message)

    def publish_many(self, messages: list[OutgoingMessage]) -> list[Exception | None]:
        results: list[Exception | None] = []
        for message in messages:
            try:
                self.publish(message)
                results.append(None)
            except Exception as exc:
                results.append(exc)
        return results

    def close(self) -> None:
        pass


__all__ = ["Decimal"]


def delivery_from_published(message: OutgoingMessage, queue: str = "t.router") -> Delivery:
    """A message the ingest published, as the router receives it."""
    return Delivery(
        queue=queue,
        body=message.body,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        headers=message.headers,
        exchange=message.exchange,
        routing_key=message.routing_key,
        redelivered=False,
        content_type="application/json",
        deliveries=1,
    )


def delivery_from_outbox(
    row: dict[str, Any], queue: str, extra: dict[str, Any] | None = None
) -> Delivery:
    """An outbox row as the consumer (or, with dead-letter headers in
    ``extra``, the dead-letter recorder) receives it from ``queue``."""
    return Delivery(
        queue=queue,
        body=row["body"].encode(),
        message_id=row["message_id"],
        correlation_id=row["correlation_id"],
        headers={**row["headers"], **(extra or {})},
        exchange="t.orders",
        routing_key=row["routing_key"],
        redelivered=False,
        content_type="application/json",
        deliveries=1,
    )
