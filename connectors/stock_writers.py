"""Writers of a channel's available quantities (targets/stock_push.py).

``http``: ``POST {url}`` with ``{"sku", "quantity", "as_of"}`` as JSON (and
``Authorization: Bearer`` when a token is set): a shop's own stock API, or a
middleware's. 2xx is done; 429 and 5xx are tried again next round; another
4xx is a refusal, kept with the listing.

``shopify``: the GraphQL Admin API (shopify.dev's reference for the version
set, 2026-10 by default): the listing's inventory item found once by its SKU
(``productVariants(query: "sku:…")`` → ``inventoryItem.id``, kept), then
``inventorySetQuantities`` with ``name: "available"`` at ``location_id``,
the absolute quantity with ``changeFromQuantity: null`` (the documented way
to opt out of compare-and-set: orderbus's level is the truth); a
``userErrors`` answer is a refusal, throttling is tried again.

The other platforms' stock APIs (Taobao/Tmall, JD, Pinduoduo, Douyin,
Youzan) are not built yet.
"""

from __future__ import annotations

import json
from datetime import datetime

import httpx

from canonical.errors import DeliveryRejected, EndpointUnavailable
from connectors.shopify_writeback import graphql
from infra.setting_specs import StockChannelSpec
from infra.transports import HttpxTransport


class HttpStockWriter:
    def __init__(self, spec: StockChannelSpec, client: httpx.Client) -> None:
        assert spec.url, "an http stock channel has its url (the settings check it)"
        self.spec = spec
        self.url = spec.url
        self.client = client

    def send(self, platform_sku: str, quantity: int, as_of: datetime) -> None:
        body = json.dumps({"sku": platform_sku, "quantity": quantity, "as_of": as_of.isoformat()})
        headers = {"Content-Type": "application/json"}
        if self.spec.token:
            headers["Authorization"] = f"Bearer {self.spec.token}"
        try:
            answer = self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"stock endpoint {exc}") from exc
        if answer.status_code == 429 or answer.status_code >= 500:
            raise EndpointUnavailable(f"stock endpoint answered {answer.status_code}")
        if answer.status_code >= 400:
            raise DeliveryRejected(
                f"stock endpoint refused {platform_sku}: {answer.status_code} {answer.text[:500]}",
                status_code=answer.status_code,
                response_body=answer.text[:2000],
            )


VARIANT_BY_SKU = """
query VariantBySku($query: String!) {
  productVariants(first: 2, query: $query) { nodes { sku inventoryItem { id } } }
}"""
SET_AVAILABLE = """
mutation SetAvailable($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) {
    inventoryAdjustmentGroup { id }
    userErrors { code field message }
  }
}"""


class ShopifyStockWriter:
    def __init__(self, spec: StockChannelSpec, client: httpx.Client) -> None:
        assert spec.shop_url and spec.access_token and spec.location_id
        self.spec = spec
        self.http = HttpxTransport(client)
        self.url = f"{spec.shop_url.rstrip('/')}/admin/api/{spec.api_version}/graphql.json"
        self.token = spec.access_token
        self.items: dict[str, str] = {}  # SKU -> inventory item id

    def _item(self, platform_sku: str) -> str:
        if platform_sku not in self.items:
            quoted = platform_sku.replace("\\", "\\\\").replace('"', '\\"')
            found = graphql(
                self.http, self.url, self.token, VARIANT_BY_SKU, {"query": f'sku:"{quoted}"'}
            )
            nodes = [
                n for n in ((found.get("productVariants") or {}).get("nodes") or [])
                if n.get("sku") == platform_sku
            ]  # fmt: skip
            if len(nodes) != 1:
                raise DeliveryRejected(
                    f"Shopify has {len(nodes)} variants with SKU {platform_sku}",
                    status_code=0,
                    response_body="",
                )
            self.items[platform_sku] = str(nodes[0]["inventoryItem"]["id"])
        return self.items[platform_sku]

    def send(self, platform_sku: str, quantity: int, as_of: datetime) -> None:
        wanted = {
            "name": "available",
            "reason": "correction",
            "quantities": [
                {
                    "inventoryItemId": self._item(platform_sku),
                    "locationId": self.spec.location_id,
                    "quantity": quantity,
                    "changeFromQuantity": None,
                }
            ],
        }
        done = graphql(self.http, self.url, self.token, SET_AVAILABLE, {"input": wanted})
        errors = (done.get("inventorySetQuantities") or {}).get("userErrors") or []
        if errors:
            said = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors)
            raise DeliveryRejected(
                f"Shopify refused {platform_sku} = {quantity}: {said}",
                status_code=0,
                response_body=json.dumps(errors)[:2000],
            )


StockWriter = HttpStockWriter | ShopifyStockWriter


def stock_writers(
    channels: dict[str, StockChannelSpec], client: httpx.Client
) -> dict[str, StockWriter]:
    return {
        name: ShopifyStockWriter(spec, client)
        if spec.kind == "shopify"
        else HttpStockWriter(spec, client)
        for name, spec in channels.items()
    }
