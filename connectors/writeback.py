"""Shipment write-back: tell the channel an order was shipped, with its carrier
and tracking number, through the channel's own API (the ``channel`` target).

``ORDERBUS_WRITEBACK`` names, per channel, how:

- ``{"kind": "shopify", "shop_url": "https://acme.myshopify.com",
  "access_token": "shpat_...", "api_version": "2026-10"}``: through the
  GraphQL Admin API, the order's open fulfillment orders
  (``order.fulfillmentOrders``) are fulfilled with one ``fulfillmentCreate``
  carrying the tracking info. When none is open and one is closed, the order
  was fulfilled already (an earlier delivery): nothing is sent again.
- ``{"kind": "woocommerce", "url": "https://shop.example.com", "consumer_key":
  "ck_...", "consumer_secret": "cs_..."}``: the order is updated to
  ``completed`` with the carrier and tracking number in its meta data
  (``POST /wp-json/wc/v3/orders/{id}``, basic auth, as the WooCommerce REST
  docs document "Update an order"); sending it twice changes nothing more.
- ``{"kind": "taobao", "app_key", "app_secret", "session", "endpoint"}``:
  ``taobao.logistics.offline.send`` (tid, out_sid = tracking number,
  company_code = the shipment's ``carrier_code``, else its carrier), through
  the Taobao connector's TOP client (connectors/taobao.py). An answer saying
  the trade was already shipped counts as done.
- ``{"kind": "pinduoduo", "client_id", "client_secret", "access_token"}``:
  ``pdd.logistics.online.send`` (order_sn, logistics_id = the shipment's
  ``carrier_code``, Pinduoduo's numeric id of the carrier, tracking_number),
  signed as the Pinduoduo poller signs (connectors/pinduoduo.py).
- ``{"kind": "jd", "app_key", "app_secret", "access_token"}``:
  ``jingdong.pop.order.shipment`` (orderId, logiCoprId = ``carrier_code``,
  JD's numeric id of the carrier, logiNo), signed as the JD poller signs;
  the answer's ``sopjosshipment_result.success`` as JD's Java SDK reads it.
- ``{"kind": "youzan", "client_id", "client_secret", "grant_id"}``:
  ``youzan.logistics.online.confirm`` 3.0.0 (tid, out_stype = ``carrier_code``,
  Youzan's express company id, out_sid), through the Youzan connector's API
  client and its token (connectors/youzan.py).
- ``{"kind": "douyin", "app_key", "app_secret", "shop_id"}``: Doudian
  ``order.logisticsAdd`` (order_id, company_code = ``carrier_code``,
  logistics_code), through the Douyin connector's signed client and token
  (connectors/douyin.py).

429 and 5xx are tried again with backoff; other refusals are dead letters
with the channel's reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import httpx
from pydantic import BaseModel

from connectors.douyin_writeback import DouyinLogisticsAdd, DouyinWriteback
from connectors.jd_writeback import JdShipment, JdWriteback
from connectors.pinduoduo_writeback import PinduoduoOnlineSend, PinduoduoWriteback
from connectors.shopify_writeback import ShopifyFulfillment, ShopifyWriteback
from connectors.taobao_writeback import TaobaoOfflineSend, TaobaoWriteback
from connectors.woocommerce_writeback import WooCommerceCompletion, WooCommerceWriteback
from connectors.youzan_writeback import YouzanConfirm, YouzanWriteback
from infra.transports import Transport


class ShipmentWriter(Protocol):
    """Tells one channel an order was shipped (a delivery target's adapter)."""

    name: str

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int: ...


# kind -> (its options model, the writer made from them and the HTTP client
# that the platforms whose connector has its own API client (TOP, Youzan,
# Doudian) write back through)
WRITEBACKS: dict[str, tuple[type[BaseModel], Callable[[Any, httpx.Client], ShipmentWriter]]] = {
    "shopify": (ShopifyWriteback, lambda o, _c: ShopifyFulfillment(o)),
    "woocommerce": (WooCommerceWriteback, lambda o, _c: WooCommerceCompletion(o)),
    "taobao": (TaobaoWriteback, TaobaoOfflineSend),
    "pinduoduo": (PinduoduoWriteback, lambda o, _c: PinduoduoOnlineSend(o)),
    "jd": (JdWriteback, lambda o, _c: JdShipment(o)),
    "youzan": (YouzanWriteback, YouzanConfirm),
    "douyin": (DouyinWriteback, DouyinLogisticsAdd),
}


def writers_for(
    per_channel: Mapping[str, dict[str, Any]], client: httpx.Client
) -> dict[str, ShipmentWriter]:
    """Each channel's writer (ORDERBUS_WRITEBACK); ValueError naming the channel
    whose kind is unknown. ``template`` channels are the delivery side's
    (targets/writeback.py) and are left out here."""
    writers: dict[str, ShipmentWriter] = {}
    for channel, options in per_channel.items():
        kind = options.get("kind")
        if kind == "template":
            continue
        if kind not in WRITEBACKS:
            known = ", ".join(sorted([*WRITEBACKS, "template"]))
            raise ValueError(f"channel {channel!r}: no write-back {kind!r} (known: {known})")
        model, make = WRITEBACKS[str(kind)]
        writers[channel] = make(model.model_validate(options), client)
    return writers
