"""Fakes of the channels' APIs a shipment is written back to, as httpx
handlers. Shapes, from the channels' own documentation:

- Shopify GraphQL Admin (shopify.dev: the ``order.fulfillmentOrders``
  connection, ``FulfillmentOrderStatus`` OPEN/IN_PROGRESS/SCHEDULED/CLOSED...,
  the ``fulfillmentCreate`` mutation with ``FulfillmentInput``
  ``lineItemsByFulfillmentOrder``/``trackingInfo``/``notifyCustomer`` and its
  ``userErrors``, and a THROTTLED error for the cost limit), all through
  ``POST /admin/api/{version}/graphql.json``. The fake closes the fulfillment
  orders a fulfillment covers.
- WooCommerce REST v3 ("Update an order", woocommerce-rest-api-docs
  ``_orders.md``): ``PUT|POST /wp-json/wc/v3/orders/{id}`` with basic auth ->
  200 and the order.
- Taobao TOP ``taobao.logistics.offline.send`` (tid, out_sid, company_code)
  -> ``{"logistics_offline_send_response": {"shipping": {"is_success": true}}}``;
  the "already shipped" refusal's wording is our assumption.
- Pinduoduo ``pdd.logistics.online.send`` (order_sn, logistics_id,
  tracking_number; JSON body) -> ``{"logistics_online_send_response":
  {"is_success": true}}``, the parameter and answer names as Pinduoduo's
  POP SDKs declare them.
- JD ``jingdong.pop.order.shipment`` (orderId, logiCoprId, logiNo in
  ``360buy_param_json``) -> ``{"jingdong_pop_order_shipment_responce":
  {"sopjosshipment_result": {"success": true}}}`` as JD's Java SDK reads it
  (``PopOrderShipmentResponse``, ``OperatorResult``).

Each checks the request's signature by the platforms' documented rule,
written here again on its own: MD5 over secret + sorted name/value pairs +
secret, upper-case hex.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from urllib.parse import parse_qs

import httpx


class FakeShopify:
    """Shopify's GraphQL Admin API as the write-back calls it: the order's
    fulfillment orders, and fulfillmentCreate (shapes from Shopify's GraphQL
    Admin reference: FulfillmentOrder.status OPEN/CLOSED..., FulfillmentInput,
    userErrors); ``limited`` answers THROTTLED first."""

    def __init__(self, token: str = "shpat-test") -> None:
        self.token = token
        self.fulfillment_orders: dict[str, list[dict[str, Any]]] = {}
        self.fulfillments: list[dict[str, Any]] = []
        self.limited = 0
        self.calls = 0
        self.paths: list[str] = []

    def add_order(self, order_id: str) -> None:
        gid = "gid://shopify/FulfillmentOrder/1046000778"
        self.fulfillment_orders[order_id] = [{"id": gid, "status": "OPEN"}]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.paths.append(request.url.path)
        if request.headers.get("x-shopify-access-token") != self.token:
            return httpx.Response(401, json={"errors": "[API] Invalid API key or access token"})
        assert request.method == "POST" and request.url.path.endswith("/graphql.json")
        if self.limited > 0:
            self.limited -= 1
            throttled = {"message": "Throttled", "extensions": {"code": "THROTTLED"}}
            return httpx.Response(200, json={"errors": [throttled]})
        asked = json.loads(request.content)
        variables = asked["variables"]
        if "fulfillmentOrders" in asked["query"]:
            order_id = variables["id"].rsplit("/", 1)[1]
            if order_id not in self.fulfillment_orders:
                return httpx.Response(200, json={"data": {"order": None}})
            nodes = self.fulfillment_orders[order_id]
            return httpx.Response(
                200, json={"data": {"order": {"fulfillmentOrders": {"nodes": nodes}}}}
            )
        assert "fulfillmentCreate" in asked["query"]
        wanted = {
            x["fulfillmentOrderId"] for x in variables["fulfillment"]["lineItemsByFulfillmentOrder"]
        }
        for orders in self.fulfillment_orders.values():
            for fo in orders:
                if fo["id"] in wanted:
                    if fo["status"] != "OPEN":
                        error = {"field": ["fulfillment"], "message": "already fulfilled"}
                        created = {"fulfillment": None, "userErrors": [error]}
                        return httpx.Response(200, json={"data": {"fulfillmentCreate": created}})
                    fo["status"] = "CLOSED"
        self.fulfillments.append(variables["fulfillment"])
        made = {"fulfillment": {"id": "gid://shopify/Fulfillment/255858046", "status": "SUCCESS"}}
        return httpx.Response(200, json={"data": {"fulfillmentCreate": {**made, "userErrors": []}}})


class FakeWooCommerce:
    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.updates = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        if auth != "Basic " + base64.b64encode(b"ck_test:cs_test").decode():
            return httpx.Response(401, json={"code": "woocommerce_rest_cannot_edit"})
        order_id = request.url.path.rsplit("/", 1)[1]
        if order_id not in self.orders:
            return httpx.Response(
                404,
                json={"code": "woocommerce_rest_shop_order_invalid_id", "message": "Invalid ID."},
            )
        self.updates += 1
        change = json.loads(request.content)
        order = self.orders[order_id]
        order["status"] = change["status"]
        meta = {m["key"]: m["value"] for m in order.get("meta_data", [])}
        meta.update({m["key"]: m["value"] for m in change.get("meta_data", [])})
        order["meta_data"] = [{"key": k, "value": v} for k, v in meta.items()]
        return httpx.Response(200, json=order)


def signed_by(form: dict[str, str], secret: str) -> bool:
    given = form.pop("sign", "")
    text = secret + "".join(k + form[k] for k in sorted(form)) + secret
    return given == hashlib.md5(text.encode()).hexdigest().upper()


class FakeTaobaoLogistics:
    def __init__(self, secret: str = "top-secret") -> None:
        self.secret = secret
        self.sent: dict[str, dict[str, str]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        assert form["method"] == "taobao.logistics.offline.send"
        if not signed_by(dict(form), self.secret):
            error = {"code": 25, "msg": "Invalid signature"}
            return httpx.Response(200, json={"error_response": error})
        if form["tid"] in self.sent:
            error = {
                "code": 15,
                "msg": "Remote service error",
                "sub_code": "isv.logistics-offline-service-error",
                "sub_msg": "该订单已发货",
            }
            return httpx.Response(200, json={"error_response": error})
        self.sent[form["tid"]] = form
        return httpx.Response(
            200, json={"logistics_offline_send_response": {"shipping": {"is_success": True}}}
        )


class FakePinduoduoLogistics:
    def __init__(self, secret: str = "pdd-secret") -> None:
        self.secret = secret
        self.sent: dict[str, dict[str, str]] = {}
        self.busy = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = json.loads(request.content)
        assert form["type"] == "pdd.logistics.online.send"
        if not signed_by(dict(form), self.secret):
            return httpx.Response(
                200, json={"error_response": {"error_code": 10019, "error_msg": "签名错误"}}
            )
        if self.busy > 0:
            self.busy -= 1
            error = {"error_code": 70031, "error_msg": "调用过于频繁,请调整调用频率"}
            return httpx.Response(200, json={"error_response": error})
        if form["order_sn"] in self.sent:
            error = {"error_code": 50000, "error_msg": "业务服务错误", "sub_msg": "订单已发货"}
            return httpx.Response(200, json={"error_response": error})
        self.sent[form["order_sn"]] = form
        return httpx.Response(200, json={"logistics_online_send_response": {"is_success": True}})


class FakeJdShipment:
    def __init__(self, secret: str = "jd-secret") -> None:
        self.secret = secret
        self.sent: dict[str, dict[str, str]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        assert form["method"] == "jingdong.pop.order.shipment"
        if not signed_by(dict(form), self.secret):
            error = {"code": "19", "zh_desc": "签名无效", "en_desc": "Invalid signature"}
            return httpx.Response(200, json={"error_response": error})
        business = json.loads(form["360buy_param_json"])
        if business["orderId"] in self.sent:
            result = {"success": False, "errorCode": "10400001", "chineseErrCode": "订单已出库"}
        else:
            self.sent[business["orderId"]] = business
            result = {"success": True, "errorCode": "", "chineseErrCode": "成功"}
        wrapper = {"code": "0", "sopjosshipment_result": result}
        return httpx.Response(200, json={"jingdong_pop_order_shipment_responce": wrapper})


class FakeYouzanLogistics:
    """Youzan's /auth/token (silent) and youzan.logistics.online.confirm 3.0.0
    (tid, out_stype, out_sid), in the {success, code, message, data} shape
    public integrations read; the codes and the "shipped already" wording are
    ours."""

    def __init__(self) -> None:
        self.valid: set[str] = set()
        self.issued = 0
        self.confirmed: dict[str, dict[str, Any]] = {}

    def expire_tokens(self) -> None:
        self.valid.clear()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/auth/token":
            self.issued += 1
            token = f"yz-{self.issued}"
            self.valid.add(token)
            data = {"access_token": token, "expires": 4_102_444_800_000}
            return httpx.Response(200, json={"success": True, "code": 200, "data": data})
        assert request.url.path == "/api/youzan.logistics.online.confirm/3.0.0"
        if request.url.params.get("access_token") not in self.valid:
            answer = {"success": False, "code": 4203, "message": "access_token 已过期"}
            return httpx.Response(200, json=answer)
        if body["tid"] in self.confirmed:
            answer = {"success": False, "code": 101300011, "message": "订单已发货"}
            return httpx.Response(200, json=answer)
        self.confirmed[body["tid"]] = body
        return httpx.Response(
            200, json={"success": True, "code": 200, "data": {"is_success": True}}
        )
