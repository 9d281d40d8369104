"""Shopify write-back: the order's open fulfillment orders are fulfilled with
one fulfillment carrying the tracking info, through the GraphQL Admin API.

Shopify's REST Admin API is legacy and each API version is supported for
about a year, so the version is a setting (``api_version``, default
2026-10) and the calls are GraphQL: the order's ``fulfillmentOrders``
(``order(id: "gid://shopify/Order/<id>")``), then ``fulfillmentCreate`` with
``lineItemsByFulfillmentOrder`` and ``trackingInfo``. A throttled answer
(HTTP 429, or ``errors[].extensions.code == "THROTTLED"`` with 200) is tried
again later; ``userErrors`` are a refusal a person reads.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from canonical.errors import EndpointUnavailable
from connectors.writeback_common import shipment_of
from infra.transports import Transport, answer_json, http_problem, refused

FULFILLMENT_ORDERS = """
query FulfillmentOrders($id: ID!) {
  order(id: $id) { fulfillmentOrders(first: 50) { nodes { id status } } }
}
"""
FULFILL = """
mutation Fulfil($fulfillment: FulfillmentInput!) {
  fulfillmentCreate(fulfillment: $fulfillment) {
    fulfillment { id status }
    userErrors { field message }
  }
}
"""
OPEN = frozenset({"OPEN", "IN_PROGRESS", "SCHEDULED"})


class ShopifyWriteback(BaseModel):
    """Shopify: the order's open fulfillment orders fulfilled with the tracking info."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(default="shopify", description="this write-back: shopify")
    shop_url: str = Field(description="https://<shop>.myshopify.com")
    access_token: str = Field(min_length=1, description="the Admin API access token")
    api_version: str = Field(
        default="2026-10",
        pattern=r"^\d{4}-(01|04|07|10)$",
        description="the GraphQL Admin API version (Shopify supports each about a year)",
    )
    notify_customer: bool = Field(default=False, description="let Shopify e-mail the customer too")


class ShopifyFulfillment:
    name = "shopify write-back"

    def __init__(self, options: ShopifyWriteback) -> None:
        self.options = options
        self.url = f"{options.shop_url.rstrip('/')}/admin/api/{options.api_version}/graphql.json"

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        shipment = shipment_of(order)
        found = self._ask(
            http, FULFILLMENT_ORDERS, {"id": f"gid://shopify/Order/{order['external_id']}"}
        )
        shop_order = found.get("order")
        if not isinstance(shop_order, dict):
            raise refused("Shopify", f"Shopify has no order {order['external_id']}")
        nodes = (shop_order.get("fulfillmentOrders") or {}).get("nodes") or []
        open_ones = [n for n in nodes if n.get("status") in OPEN]
        if not open_ones:
            if any(n.get("status") == "CLOSED" for n in nodes):
                return 200  # fulfilled already, by an earlier delivery of this shipment
            states = sorted({str(n.get("status")) for n in nodes}) or ["none"]
            raise refused("Shopify", f"no open fulfillment order to fulfil ({', '.join(states)})")
        fulfillment = {
            "lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": n["id"]} for n in open_ones],
            "trackingInfo": {
                "company": shipment["carrier"],
                "number": shipment["tracking_number"],
            },
            "notifyCustomer": self.options.notify_customer,
        }
        made = self._ask(http, FULFILL, {"fulfillment": fulfillment}).get("fulfillmentCreate")
        errors = (made or {}).get("userErrors") or []
        if errors or not (made or {}).get("fulfillment"):
            said = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors)
            raise refused("Shopify", f"fulfillmentCreate refused: {said or made}")
        return 200

    def _ask(self, http: Transport, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        return graphql(http, self.url, self.options.access_token, query, variables)


def graphql(
    http: Transport, url: str, token: str, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    """One GraphQL Admin API call: its ``data``; EndpointUnavailable when
    Shopify is down or throttles (cost limit), a refusal for the rest."""
    headers = {"X-Shopify-Access-Token": token, "Content-Type": "application/json"}
    body = json.dumps({"query": query, "variables": variables}).encode("utf-8")
    answer = http.post(url, body, headers)
    if answer.status_code == 429 or answer.status_code >= 500:
        raise http_problem("Shopify", answer, answer.text[:500])
    if answer.status_code >= 300:
        raise refused("Shopify", f"HTTP {answer.status_code}: {answer.text[:300]}", answer)
    said = answer_json(answer)
    if not isinstance(said, dict):
        raise EndpointUnavailable("Shopify answered something that is not JSON")
    problems = said.get("errors") or []
    if any((p.get("extensions") or {}).get("code") == "THROTTLED" for p in problems):
        raise EndpointUnavailable("Shopify: throttled (GraphQL cost limit)")
    if problems:
        raise refused("Shopify", f"GraphQL errors: {problems}"[:500], answer)
    data = said.get("data")
    return data if isinstance(data, dict) else {}
