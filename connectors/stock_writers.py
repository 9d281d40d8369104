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

The platforms' item stock APIs, each through the channel connector's own
signed client (the same access its write-back takes, ``account``), the
absolute quantity (a full update, never an increment: a repeat is harmless).
The listing a mapping table names for the channel is the platform's ids,
``<item id>:<sku id>`` (or the item id alone, for an item without SKUs):

- ``taobao``: ``taobao.item.quantity.update`` (``num_iid``, ``sku_id``,
  ``quantity``, ``type`` 1: full);
- ``pinduoduo``: ``pdd.goods.quantity.update`` (``goods_id``, ``sku_id``,
  ``quantity``, ``update_type`` 1: full);
- ``douyin``: ``sku.syncStock`` (``product_id``, ``sku_id``, ``stock_num``,
  ``incremental`` false);
- ``youzan``: ``youzan.item.quantity.update`` 3.0.0 (``item_id``, ``sku_id``,
  ``quantity``, ``type`` 0: full);
- ``jd``: ``jingdong.stock.write.updateSkuStock`` (``skuId``, ``stockNum``);
  the listing is the JD sku id alone. (JD names ``jingdong.ware.stock.sku.set``
  its successor; the older call is the one whose shape we could check.)

A platform's refusal (a listing it does not have, no permission) is kept
with the listing for a person; busy, rate-limited or down is tried again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from pydantic import ValidationError

from canonical.errors import DeliveryRejected, EndpointUnavailable
from connectors import jd
from connectors import pinduoduo as pdd
from connectors.base import ConnectorError
from connectors.douyin import DoudianApi
from connectors.douyin_writeback import DouyinWriteback
from connectors.jd_writeback import JdWriteback
from connectors.payload import SHANGHAI
from connectors.pinduoduo_writeback import PinduoduoWriteback
from connectors.shopify_writeback import graphql
from connectors.taobao import TopApi
from connectors.taobao_writeback import TaobaoWriteback
from connectors.youzan import YouzanApi
from connectors.youzan_writeback import YouzanWriteback
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


def listing_ids(platform_sku: str, platform: str) -> tuple[str, str | None]:
    """``<item id>:<sku id>`` (or the item id alone) as the two ids."""
    item, _, sku = platform_sku.partition(":")
    if not item.isdigit() or (sku and not sku.isdigit()):
        raise DeliveryRejected(
            f"{platform} listing {platform_sku!r} is not '<item id>:<sku id>' (numbers) or "
            "'<item id>': set the mapping table's listing to the platform's ids",
            status_code=0,
            response_body="",
        )
    return item, sku or None


def platform_call(platform: str, platform_sku: str, call: Callable[[], Any]) -> Any:
    """A connector client's call, its refusal a refusal of this listing."""
    try:
        return call()
    except ConnectorError as exc:
        raise DeliveryRejected(
            f"{platform} refused the stock of {platform_sku}: {exc.detail}",
            status_code=0,
            response_body="",
        ) from exc


class TaobaoStockWriter:
    def __init__(self, options: TaobaoWriteback, client: httpx.Client) -> None:
        self.api = TopApi(
            client, options.app_key, options.app_secret, options.session, options.endpoint
        )

    def send(self, platform_sku: str, quantity: int, as_of: datetime) -> None:
        item, sku = listing_ids(platform_sku, "Taobao")
        params = {"num_iid": item, "quantity": str(quantity), "type": "1"}
        if sku:
            params["sku_id"] = sku
        platform_call(
            "Taobao", platform_sku, lambda: self.api.call("taobao.item.quantity.update", params)
        )


class PinduoduoStockWriter:
    def __init__(
        self, options: PinduoduoWriteback, client: httpx.Client,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.options = options
        self.client = client
        self.clock = clock

    def send(self, platform_sku: str, quantity: int, as_of: datetime) -> None:
        item, sku = listing_ids(platform_sku, "Pinduoduo")
        api = "pdd.goods.quantity.update"
        params = {"goods_id": item, "quantity": str(quantity), "update_type": "1"}
        if sku:
            params["sku_id"] = sku
        o = self.options
        form = pdd.signed_form(
            api, params, o.client_id, o.client_secret, o.access_token, self.clock()
        )
        try:
            answer = self.client.post(o.endpoint, json=form)
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"Pinduoduo {api}: {exc!r}") from exc
        if answer.status_code == 429 or answer.status_code >= 500:
            raise EndpointUnavailable(f"Pinduoduo {api}: HTTP {answer.status_code}")
        said = platform_call(
            "Pinduoduo", platform_sku, lambda: pdd.read_answer(api, answer.content)
        )
        if (said.get("goods_quantity_update_response") or {}).get("is_success") is False:
            raise DeliveryRejected(
                f"Pinduoduo did not take the stock of {platform_sku}: {answer.text[:300]}",
                status_code=answer.status_code,
                response_body=answer.text[:2000],
            )


class DouyinStockWriter:
    def __init__(self, options: DouyinWriteback, client: httpx.Client) -> None:
        self.api = DoudianApi(
            client, options.app_key, options.app_secret, options.shop_id, options.endpoint
        )

    def send(self, platform_sku: str, quantity: int, as_of: datetime) -> None:
        item, sku = listing_ids(platform_sku, "Douyin")
        params: dict[str, Any] = {
            "product_id": int(item),
            "stock_num": quantity,
            "incremental": False,
            "idempotent_id": f"{platform_sku}-{as_of.timestamp():.0f}-{quantity}",
        }
        if sku:
            params["sku_id"] = int(sku)
        platform_call("Douyin", platform_sku, lambda: self.api.call("sku.syncStock", params))


class YouzanStockWriter:
    def __init__(self, options: YouzanWriteback, client: httpx.Client) -> None:
        self.api = YouzanApi(
            client, options.client_id, options.client_secret, options.grant_id, options.endpoint
        )

    def send(self, platform_sku: str, quantity: int, as_of: datetime) -> None:
        item, sku = listing_ids(platform_sku, "Youzan")
        body: dict[str, Any] = {"item_id": int(item), "quantity": quantity, "type": 0}
        if sku:
            body["sku_id"] = int(sku)
        platform_call(
            "Youzan",
            platform_sku,
            lambda: self.api.call("youzan.item.quantity.update", "3.0.0", body),
        )


class JdStockWriter:
    def __init__(
        self, options: JdWriteback, client: httpx.Client,
        clock: Callable[[], datetime] | None = None,
    ) -> None:  # fmt: skip
        self.options = options
        self.client = client
        self.clock = clock or (lambda: datetime.now(SHANGHAI))

    def send(self, platform_sku: str, quantity: int, as_of: datetime) -> None:
        if not platform_sku.isdigit():
            raise DeliveryRejected(
                f"JD listing {platform_sku!r} is not a JD sku id: set the mapping table's "
                "listing to it",
                status_code=0,
                response_body="",
            )
        method = "jingdong.stock.write.updateSkuStock"
        o = self.options
        business = {"skuId": platform_sku, "stockNum": quantity}
        form = jd.signed_form(
            method, business, o.app_key, o.app_secret, o.access_token, self.clock()
        )
        try:
            answer = self.client.post(o.endpoint, data=form)
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"JD {method}: {exc!r}") from exc
        if answer.status_code == 429 or answer.status_code >= 500:
            raise EndpointUnavailable(f"JD {method}: HTTP {answer.status_code}")
        said = platform_call("JD", platform_sku, lambda: jd.read_answer(method, answer.content))
        wrapper = said.get("jingdong_stock_write_updateSkuStock_responce") or {}
        if wrapper.get("success") is False:
            raise DeliveryRejected(
                f"JD did not take the stock of {platform_sku}: {answer.text[:300]}",
                status_code=answer.status_code,
                response_body=answer.text[:2000],
            )


StockWriter = (
    HttpStockWriter
    | ShopifyStockWriter
    | TaobaoStockWriter
    | PinduoduoStockWriter
    | DouyinStockWriter
    | YouzanStockWriter
    | JdStockWriter
)


def stock_writer(name: str, spec: StockChannelSpec, client: httpx.Client) -> StockWriter:
    """The writer of one stock channel; ValueError naming what its account lacks."""
    if spec.kind == "shopify":
        return ShopifyStockWriter(spec, client)
    if spec.kind == "http":
        return HttpStockWriter(spec, client)
    account = {**(spec.account or {}), "kind": spec.kind}
    try:
        if spec.kind == "taobao":
            return TaobaoStockWriter(TaobaoWriteback.model_validate(account), client)
        if spec.kind == "pinduoduo":
            return PinduoduoStockWriter(PinduoduoWriteback.model_validate(account), client)
        if spec.kind == "douyin":
            return DouyinStockWriter(DouyinWriteback.model_validate(account), client)
        if spec.kind == "youzan":
            return YouzanStockWriter(YouzanWriteback.model_validate(account), client)
        return JdStockWriter(JdWriteback.model_validate(account), client)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"stock channel {name!r} ({spec.kind}) account: {problems}") from None


def stock_writers(
    channels: dict[str, StockChannelSpec], client: httpx.Client
) -> dict[str, StockWriter]:
    return {name: stock_writer(name, spec, client) for name, spec in channels.items()}
