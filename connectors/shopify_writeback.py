"""Shopify write-back: the order's open fulfillment orders are fulfilled with
one fulfillment carrying the tracking info (REST Admin API)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from connectors.writeback_common import shipment_of
from infra.transports import Transport, answer_json, http_problem, refused


class ShopifyWriteback(BaseModel):
    """Shopify: the order's open fulfillment orders fulfilled with the tracking info."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(default="shopify", description="this write-back: shopify")
    shop_url: str = Field(description="https://<shop>.myshopify.com")
    access_token: str = Field(min_length=1, description="the Admin API access token")
    api_version: str = Field(default="2025-01", description="the Admin API version")
    notify_customer: bool = Field(default=False, description="let Shopify e-mail the customer too")


class ShopifyFulfillment:
    name = "shopify write-back"

    def __init__(self, options: ShopifyWriteback) -> None:
        self.options = options
        self.base = f"{options.shop_url.rstrip('/')}/admin/api/{options.api_version}"

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        shipment = shipment_of(order)
        headers = {
            "X-Shopify-Access-Token": self.options.access_token,
            "Content-Type": "application/json",
        }
        order_id = quote(str(order["external_id"]), safe="")
        listed = http.get(f"{self.base}/orders/{order_id}/fulfillment_orders.json", headers)
        if listed.status_code >= 300:
            raise http_problem("Shopify", listed, listed.text[:500])
        said = answer_json(listed)
        fulfillment_orders = said.get("fulfillment_orders") if isinstance(said, dict) else None
        if not isinstance(fulfillment_orders, list):
            raise refused("Shopify", "no fulfillment_orders in the answer", listed)
        open_ones = [
            f for f in fulfillment_orders if f.get("status") in ("open", "in_progress", "scheduled")
        ]
        if not open_ones:
            if any(f.get("status") == "closed" for f in fulfillment_orders):
                return 200  # fulfilled already, by an earlier delivery of this shipment
            states = sorted({str(f.get("status")) for f in fulfillment_orders}) or ["none"]
            raise refused("Shopify", f"no open fulfillment order to fulfil ({', '.join(states)})")
        body = {
            "fulfillment": {
                "line_items_by_fulfillment_order": [
                    {"fulfillment_order_id": f["id"]} for f in open_ones
                ],
                "tracking_info": {
                    "company": shipment["carrier"],
                    "number": shipment["tracking_number"],
                },
                "notify_customer": self.options.notify_customer,
            }
        }
        answer = http.post(
            f"{self.base}/fulfillments.json", json.dumps(body).encode("utf-8"), headers
        )
        if answer.status_code >= 300:
            raise http_problem("Shopify", answer, answer.text[:500])
        return answer.status_code
