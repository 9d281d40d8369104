"""Shipment write-back: tell the channel an order was shipped, with its carrier
and tracking number, through the channel's own API (the ``channel`` target).

``ORDERBUS_WRITEBACK`` names, per channel, how:

- ``{"kind": "shopify", "shop_url": "https://acme.myshopify.com",
  "access_token": "shpat_...", "api_version": "2025-01"}``: the order's open
  fulfillment orders (``GET /admin/api/{v}/orders/{id}/fulfillment_orders.json``)
  are fulfilled with one fulfillment carrying the tracking info (``POST
  /admin/api/{v}/fulfillments.json``, ``X-Shopify-Access-Token``), as Shopify's
  REST Admin reference documents. When none is open and one is closed, the
  order was fulfilled already (an earlier delivery): nothing is sent again.
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
- ``{"kind": "template", "url": ..., "template": ...}``: any other channel, by a
  JSON template (targets/adapters/template.py), e.g. to a bridge of your own.

429 and 5xx are tried again with backoff; other refusals are dead letters
with the channel's reason.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import httpx
from pydantic import BaseModel, ConfigDict, Field

from canonical.errors import DeliveryRejected, EndpointUnavailable
from connectors import jd
from connectors import pinduoduo as pdd
from connectors.base import ConnectorError
from connectors.douyin import API_ENDPOINT as DOUDIAN_ENDPOINT
from connectors.douyin import DoudianApi
from connectors.taobao import TOP_ENDPOINT, TopApi
from connectors.youzan import YOUZAN_API, YouzanApi
from targets.adapters.base import TargetAdapter, answer_json, http_problem, refused
from targets.adapters.template import TemplateAdapter, TemplateOptions
from targets.delivery import Transport

SHANGHAI = ZoneInfo("Asia/Shanghai")


class ShopifyWriteback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = "shopify"
    shop_url: str
    access_token: str = Field(min_length=1)
    api_version: str = "2025-01"
    notify_customer: bool = False


class WooCommerceWriteback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = "woocommerce"
    url: str
    consumer_key: str = Field(min_length=1)
    consumer_secret: str = Field(min_length=1)
    status: str = "completed"


class TaobaoWriteback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = "taobao"
    app_key: str = Field(min_length=1)
    app_secret: str = Field(min_length=1)
    session: str = Field(min_length=1)
    endpoint: str = TOP_ENDPOINT


def _shipment(order: dict[str, Any]) -> dict[str, Any]:
    shipment = order.get("shipment")
    if not isinstance(shipment, dict):
        raise DeliveryRejected(
            "no shipment on this revision: nothing to write back", status_code=0, response_body=""
        )
    return shipment


class ShopifyFulfillment:
    name = "shopify write-back"

    def __init__(self, options: ShopifyWriteback) -> None:
        self.options = options
        self.base = f"{options.shop_url.rstrip('/')}/admin/api/{options.api_version}"

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        shipment = _shipment(order)
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


class WooCommerceCompletion:
    name = "woocommerce write-back"

    def __init__(self, options: WooCommerceWriteback) -> None:
        self.options = options
        pair = f"{options.consumer_key}:{options.consumer_secret}".encode()
        self.auth = "Basic " + base64.b64encode(pair).decode("ascii")

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        shipment = _shipment(order)
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


class TaobaoOfflineSend:
    """Through the Taobao connector's TOP client (connectors/taobao.py), which
    signs the call and sorts TOP's errors into try-again and refused."""

    name = "taobao write-back"

    def __init__(self, options: TaobaoWriteback) -> None:
        self.bridge, client = _bridged()
        self.api = TopApi(
            client, options.app_key, options.app_secret, options.session, options.endpoint
        )

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        shipment = _shipment(order)
        self.bridge.http = http
        params = {
            "tid": str(order["external_id"]),
            "out_sid": shipment["tracking_number"],
            "company_code": shipment.get("carrier_code") or shipment["carrier"],
        }
        result = _through_connector(
            "Taobao", lambda: self.api.call("taobao.logistics.offline.send", params)
        )
        if result is None:
            return 200  # shipped already: an earlier delivery of this shipment
        if (result.get("shipping") or {}).get("is_success") is not True:
            raise DeliveryRejected(
                f"Taobao did not confirm the shipment: {result}", status_code=0, response_body=""
            )
        return 200


class PinduoduoWriteback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = "pinduoduo"
    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    access_token: str = Field(min_length=1)
    endpoint: str = pdd.PDD_ENDPOINT


class JdWriteback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = "jd"
    app_key: str = Field(min_length=1)
    app_secret: str = Field(min_length=1)
    access_token: str = Field(min_length=1)
    endpoint: str = jd.JD_ENDPOINT


ALREADY_SHIPPED = ("已发货", "已经发货", "不能重复发货", "已出库")


def _carrier_id(shipment: dict[str, Any], platform: str) -> str:
    code = str(shipment.get("carrier_code") or "")
    if not code.isdigit():
        raise DeliveryRejected(
            f"shipment.carrier_code must be {platform}'s numeric id of the carrier "
            f"({shipment.get('carrier')!r} came with {code or 'none'})",
            status_code=0,
            response_body="",
        )
    return code


class PinduoduoOnlineSend:
    """Signed and read as the Pinduoduo poller signs and reads (connectors/pinduoduo.py)."""

    name = "pinduoduo write-back"

    def __init__(self, options: PinduoduoWriteback, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.clock = clock

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        shipment = _shipment(order)
        o = self.options
        api = "pdd.logistics.online.send"
        params = {
            "order_sn": str(order["external_id"]),
            "logistics_id": _carrier_id(shipment, "Pinduoduo"),
            "tracking_number": shipment["tracking_number"],
        }
        form = pdd.signed_form(
            api, params, o.client_id, o.client_secret, o.access_token, self.clock()
        )
        answer = http.post(
            o.endpoint, json.dumps(form).encode("utf-8"), {"Content-Type": "application/json"}
        )
        if answer.status_code == 429 or answer.status_code >= 500:
            raise http_problem("Pinduoduo", answer, answer.text[:300])
        said = _through_connector("Pinduoduo", lambda: pdd.read_answer(api, answer.text.encode()))
        if said is None:
            return 200  # shipped already: an earlier delivery of this shipment
        if (said.get("logistics_online_send_response") or {}).get("is_success") is not True:
            raise refused("Pinduoduo", f"not confirmed: {answer.text[:300]}", answer)
        return answer.status_code


class JdShipment:
    """Signed and read as the JD poller signs and reads (connectors/jd.py)."""

    name = "jd write-back"

    def __init__(self, options: JdWriteback, clock: Callable[[], datetime] | None = None) -> None:
        self.options = options
        self.clock = clock or (lambda: datetime.now(SHANGHAI))

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        shipment = _shipment(order)
        o = self.options
        method = "jingdong.pop.order.shipment"
        business = {
            "orderId": str(order["external_id"]),
            "logiCoprId": _carrier_id(shipment, "JD"),
            "logiNo": shipment["tracking_number"],
        }
        form = jd.signed_form(
            method, business, o.app_key, o.app_secret, o.access_token, self.clock()
        )
        answer = http.post(
            o.endpoint,
            urlencode(form).encode("utf-8"),
            {"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
        )
        if answer.status_code == 429 or answer.status_code >= 500:
            raise http_problem("JD", answer, answer.text[:300])
        said = _through_connector("JD", lambda: jd.read_answer(method, answer.text.encode()))
        if said is None:
            return 200  # shipped already: an earlier delivery of this shipment
        wrapper = said.get("jingdong_pop_order_shipment_responce") or {}
        result = wrapper.get("sopjosshipment_result") or {}
        if result.get("success") is True:
            return answer.status_code
        problem = _as_delivery_error(
            "JD",
            jd.failure(f"JD {method}: {result.get('errorCode')} {result.get('chineseErrCode')}"),
        )
        if problem is None:
            return 200  # shipped already: an earlier delivery of this shipment
        raise problem


class _Bridge(httpx.BaseTransport):
    """Our delivery transport as an httpx transport, so the connectors' API
    clients (Youzan, Doudian) write back through the consumer's transport."""

    def __init__(self) -> None:
        self.http: Transport | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert self.http is not None
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        if request.method == "GET":
            answer = self.http.get(str(request.url), headers)
        else:
            answer = self.http.post(str(request.url), request.read(), headers)
        return httpx.Response(answer.status_code, content=answer.text.encode("utf-8"))


def _bridged() -> tuple[_Bridge, httpx.Client]:
    """An httpx client for a connector's API client, sending through the
    consumer's transport once :meth:`_Bridge.http` is set."""
    bridge = _Bridge()
    return bridge, httpx.Client(transport=bridge, timeout=30)


def _as_delivery_error(
    platform: str, exc: ConnectorError | EndpointUnavailable
) -> Exception | None:
    """A connector's error as the consumer's: None when it says shipped already;
    a transient one as it is (tried again); a refusal as a dead letter."""
    if any(w in exc.detail for w in ALREADY_SHIPPED):
        return None
    if isinstance(exc, EndpointUnavailable):
        return exc
    return DeliveryRejected(f"{platform} refused: {exc.detail}", status_code=0, response_body="")


def _through_connector(platform: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """A connector client's call; None when the platform says the order was
    shipped already (an earlier delivery of this shipment: done)."""
    try:
        return call()
    except (ConnectorError, EndpointUnavailable) as exc:
        problem = _as_delivery_error(platform, exc)
        if problem is None:
            return None
        if problem is exc:
            raise  # transient: tried again
        raise problem from exc


class YouzanWriteback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = "youzan"
    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    grant_id: str = Field(min_length=1, description="the shop's kdt_id")
    endpoint: str = YOUZAN_API


class YouzanConfirm:
    name = "youzan write-back"

    def __init__(self, options: YouzanWriteback) -> None:
        self.bridge, client = _bridged()
        self.api = YouzanApi(
            client, options.client_id, options.client_secret, options.grant_id, options.endpoint
        )

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        shipment = _shipment(order)
        self.bridge.http = http
        body = {
            "tid": str(order["external_id"]),
            "out_stype": _carrier_id(shipment, "Youzan"),
            "out_sid": shipment["tracking_number"],
            "is_no_express": 0,
        }
        data = _through_connector(
            "Youzan", lambda: self.api.call("youzan.logistics.online.confirm", "3.0.0", body)
        )
        if data is not None and data.get("is_success") is False:
            raise DeliveryRejected(
                f"Youzan did not confirm the shipment: {data}", status_code=0, response_body=""
            )
        return 200


class DouyinWriteback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = "douyin"
    app_key: str = Field(min_length=1)
    app_secret: str = Field(min_length=1)
    shop_id: str = Field(min_length=1)
    endpoint: str = DOUDIAN_ENDPOINT


class DouyinLogisticsAdd:
    name = "douyin write-back"

    def __init__(self, options: DouyinWriteback) -> None:
        self.bridge, client = _bridged()
        self.api = DoudianApi(
            client, options.app_key, options.app_secret, options.shop_id, options.endpoint
        )

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        shipment = _shipment(order)
        self.bridge.http = http
        params = {
            "order_id": str(order["external_id"]),
            "company_code": shipment.get("carrier_code") or shipment["carrier"],
            "logistics_code": shipment["tracking_number"],
        }
        _through_connector("Doudian", lambda: self.api.call("order.logisticsAdd", params))
        return 200


WRITEBACKS: dict[str, Callable[[dict[str, Any]], TargetAdapter]] = {
    "shopify": lambda o: ShopifyFulfillment(ShopifyWriteback.model_validate(o)),
    "woocommerce": lambda o: WooCommerceCompletion(WooCommerceWriteback.model_validate(o)),
    "taobao": lambda o: TaobaoOfflineSend(TaobaoWriteback.model_validate(o)),
    "pinduoduo": lambda o: PinduoduoOnlineSend(PinduoduoWriteback.model_validate(o)),
    "jd": lambda o: JdShipment(JdWriteback.model_validate(o)),
    "youzan": lambda o: YouzanConfirm(YouzanWriteback.model_validate(o)),
    "douyin": lambda o: DouyinLogisticsAdd(DouyinWriteback.model_validate(o)),
    "template": lambda o: TemplateAdapter(
        TemplateOptions.model_validate({**{k: v for k, v in o.items() if k != "kind"}})
    ),
}


class ChannelWriteback:
    """The ``channel`` target's adapter: the write-back of the order's channel."""

    name = "channel write-back"

    def __init__(self, per_channel: dict[str, dict[str, Any]]) -> None:
        self.adapters: dict[str, TargetAdapter] = {}
        for channel, options in per_channel.items():
            kind = options.get("kind")
            if kind not in WRITEBACKS:
                raise ValueError(
                    f"channel {channel!r}: no write-back {kind!r} "
                    f"(known: {', '.join(sorted(WRITEBACKS))})"
                )
            self.adapters[channel] = WRITEBACKS[str(kind)](options)

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        adapter = self.adapters.get(str(order.get("channel")))
        if adapter is None:
            raise DeliveryRejected(
                f"channel {order.get('channel')!r} has no write-back configured "
                "(ORDERBUS_WRITEBACK)",
                status_code=0,
                response_body="",
            )
        return adapter.deliver(order, message_id, http)
