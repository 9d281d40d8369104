"""WooCommerce write-back: the order is updated to ``completed`` with the
carrier and tracking number in its meta data (REST API v3)."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from connectors.writeback_common import shipment_of
from infra.transports import Transport, answer_json, http_problem


class WooCommerceWriteback(BaseModel):
    """WooCommerce: the order updated to completed, carrier and tracking in its meta data."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(default="woocommerce", description="this write-back: woocommerce")
    url: str = Field(description="the shop's base URL")
    consumer_key: str = Field(min_length=1, description="REST API consumer key")
    consumer_secret: str = Field(min_length=1, description="REST API consumer secret")
    status: str = Field(default="completed", description="the status it is set to")


class WooCommerceCompletion:
    name = "woocommerce write-back"

    def __init__(self, options: WooCommerceWriteback) -> None:
        self.options = options
        pair = f"{options.consumer_key}:{options.consumer_secret}".encode()
        self.auth = "Basic " + base64.b64encode(pair).decode("ascii")

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        shipment = shipment_of(order)
        order_id = quote(str(order["external_id"]), safe="")
        body = {
            "status": self.options.status,
            "meta_data": [
                {"key": "_orderbus_carrier", "value": shipment["carrier"]},
                {"key": "_orderbus_tracking_number", "value": shipment["tracking_number"]},
                {"key": "_orderbus_shipped_at", "value": shipment["shipped_at"]},
            ],
        }
        answer = http.post(
            f"{self.options.url.rstrip('/')}/wp-json/wc/v3/orders/{order_id}",
            json.dumps(body, ensure_ascii=False).encode("utf-8"),
            {"Authorization": self.auth, "Content-Type": "application/json"},
        )
        if answer.status_code >= 300:
            said = answer_json(answer)
            detail = said.get("message") if isinstance(said, dict) else answer.text[:500]
            raise http_problem("WooCommerce", answer, str(detail))
        return answer.status_code
