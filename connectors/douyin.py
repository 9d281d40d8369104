"""Douyin shop (抖店, Doudian) order messages: a push that names orders, and the
order API that has them.

Doudian's message push, as its official SDKs implement it:

- The body is a JSON array of messages ``{"tag": ..., "msg_id": ..., "data": ...}``,
  ``data`` being the event, itself a JSON text. Trade events name the order
  (``p_id``, the shop order id; ``s_ids``, its sku orders; ``shop_id``) and
  its new state, not its lines or address.
- Header ``event-sign``: ``md5(app_key + body + app_secret)`` in hex, over the
  raw body; checked in constant time against every configured secret. Header
  ``app-id``, when sent, must be the channel's ``app_key``.
- Doudian counts a push as received when the answer is
  ``{"code": 0, "msg": "success"}``, and pushes again otherwise.

So the push is a reference, and each trade message (any message whose data has
a ``p_id``) becomes a fetch request on the queue ``{ns}.fetch.{channel}``,
answered only once the broker confirmed it. The ingest's fetch worker then
calls ``/order/orderDetail`` (``shop_order_id``) with Doudian's API signature:
``hex(HMAC-SHA256(app_secret, app_secret + "app_key" + key + "method" + method
+ "param_json" + json + "timestamp" + ts + "v2" + app_secret))``, ``param_json``
being the parameters as compact JSON with sorted keys, the signature and
``app_key``, ``method``, ``timestamp``, ``v=2``, ``sign_method=hmac-sha256``
and ``access_token`` in the query string, the JSON in the body. The access
token of a self-used app comes from ``/token/create`` (``grant_type``
``authorization_self`` and the ``shop_id``) and is kept until shortly before
it expires; refused as expired, it is renewed once.

Mapping of ``shop_order_detail``: amounts are integer fen, converted exactly
(``4990`` is ``49.90``). ``order_status`` 1 is created; 105 (paid), 2 (being
prepared) and 101 (partly shipped) are paid; 3 shipped; 5 delivered
(completed); 4 cancelled; ``main_status`` 21, 22 and 39 (refund completed)
refunded. Each ``sku_order_list`` line is ``origin_amount`` (the unit price)
x ``item_num``; shipping is ``post_amount``; tax ``tax_amount``; the total is
``pay_amount``, what the buyer paid; the difference is the order's discount
(the promotions). SKU: ``code`` (the merchant's code), else ``out_sku_id``,
else ``douyin-{product_id}-{sku_id}``. Times are Unix seconds. The receiver's
phone is read when Doudian returns it in the clear (``post_tel``); an
encrypted one (``encrypt_post_tel``) needs Doudian's decryption API, which
orderbus does not call: such an order carries Doudian's masked number
(``mask_post_tel``) as the customer's ``masked_phone``.

After-sales (售后): Doudian's refund messages (``doudian_refund_*``) carry the
order's ``p_id`` too, so they fetch the order like a trade message. When a
line of the detail shows an after-sale (``sku_order_list[].after_sale_info``
with a non-zero ``after_sale_status``), the fetch also reads the order's
after-sales with ``/afterSale/List`` (``order_id``), kept with the detail as
``aftersale_list`` (a replay reads both again). Each becomes an after-sale
(:func:`after_sales_of`): ``aftersale_type`` 0 a return, 1 (shipped, money
only) and 6 (price protection) a refund, 2 (not shipped, money only) a
cancel; exchanges and resends (3, 7, 8) are not undone sales and are left
out. ``aftersale_status`` 6 requested; 7 and 11 agreed; 12 completed; 27 and
29 refused; 28 withdrawn. The amount is ``refund_amount`` (fen); the lines
are ``order_info.related_order_info`` (``sku_order_id`` names the line,
``aftersale_item_num`` and ``aftersale_pay_amount`` its units and money).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from canonical.errors import EndpointUnavailable
from canonical.order import CanonicalOrder
from connectors.base import (
    ChannelConfig,
    ConnectorError,
    OrderReference,
    WebhookRequest,
    WebhookResult,
    unauthorized,
    unreadable,
)
from connectors.payload import (
    address,
    canonical_order,
    load_json,
    minor_units,
    phone_fields,
    require_app,
    require_signature,
    timestamp,
    whole_number,
)
from connectors.refunds import after_sale, sale_line
from connectors.refunds import status_of as refund_status
from infra.setting_specs import DouyinSpec
from infra.tokens import TokenCache

SIGN_HEADER = "event-sign"
APP_HEADER = "app-id"
REPLY = {"code": 0, "msg": "success"}
API_ENDPOINT = "https://openapi-fxg.jinritemai.com"
API_SUCCESS = 10000
TOKEN_MARGIN = 300.0  # renew the access token this many seconds before it expires

STATUSES = {1: "created", 105: "paid", 2: "paid", 101: "paid", 3: "shipped", 5: "delivered"}
CANCELLED = 4
REFUNDED_MAIN = frozenset({21, 22, 39})
# What Doudian's error texts say when the request itself can never succeed.
AFTER_SALE_KINDS = {0: "return", 1: "refund", 2: "cancel", 6: "refund"}
AFTER_SALE_STATUSES = {
    6: "requested",
    7: "agreed",
    11: "agreed",
    12: "completed",
    27: "refused",
    29: "refused",
    28: "withdrawn",
}
PERMANENT = re.compile(r"not.?exist|不存在|invalid.?param|参数|no.?permission|无权限", re.I)
TOKEN_TROUBLE = re.compile(r"access.?token|token", re.I)


def event_sign(app_key: str, body: bytes, secret: str) -> str:
    # Doudian's documented scheme; md5 is what the platform signs with.
    return hashlib.md5(app_key.encode() + body + secret.encode()).hexdigest()  # noqa: S324


def param_json(params: dict[str, Any]) -> str:
    """The parameters as Doudian signs them: compact JSON, keys sorted at every
    level, non-ASCII and ``<>&`` as they are."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def api_sign(app_key: str, secret: str, method: str, timestamp: int, params_json: str) -> str:
    pattern = f"app_key{app_key}method{method}param_json{params_json}timestamp{timestamp}v2"
    message = (secret + pattern + secret).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def _messages(body: bytes) -> list[dict[str, Any]]:
    data = load_json(body)
    if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
        raise unreadable("the body must be Doudian's array of {tag, msg_id, data} messages")
    return data


class DouyinConnector:
    name = "douyin"
    media_types = frozenset({"application/json"})
    reply: dict[str, Any] | None = REPLY
    example_app_key = "7012345678901234567"  # what the contract tests and demos sign as

    def authenticate(self, request: WebhookRequest, channel: ChannelConfig, tolerance: int) -> None:
        if not channel.secrets or not channel.app_key:
            raise unauthorized("no_secret", "the channel needs its app_key and app_secret")
        app_key = channel.app_key
        require_app(request.header(APP_HEADER), app_key)
        require_signature(
            channel.secrets,
            request.header(SIGN_HEADER),
            lambda secret: event_sign(app_key, request.body, secret),
            what=f"{SIGN_HEADER} header",
            lower=True,
        )

    def read(self, request: WebhookRequest, channel: ChannelConfig) -> WebhookResult:
        references: list[OrderReference] = []
        others: list[str] = []
        for index, message in enumerate(_messages(request.body)):
            tag, msg_id = message.get("tag"), message.get("msg_id")
            raw = message.get("data")
            event = load_json(raw) if isinstance(raw, str) else raw
            if not isinstance(event, dict) or event.get("p_id") in (None, ""):
                others.append(f"tag {tag}")
                continue
            if msg_id in (None, ""):
                raise unreadable(f"message [{index}] (tag {tag}) has no msg_id")
            shop = channel.shop or (str(event["shop_id"]) if event.get("shop_id") else None)
            references.append(OrderReference(str(event["p_id"]), str(msg_id), shop))
        if not references:
            return WebhookResult(ignored=f"no order messages ({', '.join(others) or 'empty'})")
        return WebhookResult(references=tuple(references))

    def sign(self, body: bytes, secret: str, now: float) -> tuple[dict[str, str], bytes]:
        return {
            "Content-Type": "application/json",
            SIGN_HEADER: event_sign(self.example_app_key, body, secret),
        }, body

    def read_detail(
        self, response: Any, reference: OrderReference, channel: ChannelConfig
    ) -> CanonicalOrder:
        """The canonical order from an ``/order/orderDetail`` response."""
        if not isinstance(response, dict):
            raise unreadable("the order detail response is not a JSON object")
        detail = (response.get("data") or {}).get("shop_order_detail")
        if not isinstance(detail, dict):
            raise unreadable("the order detail response has no data.shop_order_detail")
        if str(detail.get("order_id")) != reference.external_id:
            raise unreadable(
                f"asked for order {reference.external_id}, got {detail.get('order_id')}"
            )
        shop = reference.shop or channel.shop or str(detail.get("shop_id") or "default")
        fields = to_canonical(detail, channel.name, shop)
        fields["after_sales"] = after_sales_of(response.get("aftersale_list"), detail)
        return canonical_order(fields)


def has_after_sales(detail: dict[str, Any]) -> bool:
    """Whether a line of the order detail shows an after-sale."""
    lines = detail.get("sku_order_list")
    return any(
        _code((line.get("after_sale_info") or {}).get("after_sale_status")) not in (None, 0, "")
        for line in (lines if isinstance(lines, list) else [])
        if isinstance(line, dict)
    )


def after_sales_of(data: Any, detail: dict[str, Any]) -> list[dict[str, Any]]:
    """The after-sales of an ``/afterSale/List`` answer's ``data`` (none: no
    after-sales were read), their lines named by the detail's sku orders."""
    if data is None:
        return []
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise unreadable("aftersale_list has no items list")
    skus = {
        str(line.get("order_id")): _line(line, f"sku_order_list[{i}]")["sku"]
        for i, line in enumerate(detail.get("sku_order_list") or [])
        if isinstance(line, dict)
    }
    found = []
    for index, item in enumerate(items):
        where = f"aftersale_list.items[{index}]"
        info = item.get("aftersale_info") if isinstance(item, dict) else None
        if not isinstance(info, dict):
            raise unreadable(f"{where} has no aftersale_info")
        kind = AFTER_SALE_KINDS.get(_code(info.get("aftersale_type")))
        if kind is None:
            continue  # an exchange, a resend, a repair: no sale is undone
        status = refund_status(AFTER_SALE_STATUSES, _code(info.get("aftersale_status")), where)
        related = (item.get("order_info") or {}).get("related_order_info") or []
        lines = [] if _code(info.get("aftersale_type")) == 6 else _sale_lines(related, skus, where)
        updated = info.get("update_time")
        found.append(
            after_sale(
                info.get("aftersale_id"),
                kind,
                status,
                minor_units(info.get("refund_amount") or 0, f"{where}.refund_amount"),
                lines=lines,
                reason=(item.get("text_part") or {}).get("reason_text"),
                updated_at=_when(updated, f"{where}.update_time") if updated else None,
            )
        )
    return found


def _sale_lines(related: list[Any], skus: dict[str, str], where: str) -> list[dict[str, Any]]:
    lines = []
    for i, part in enumerate(related):
        sku = skus.get(str(part.get("sku_order_id"))) if isinstance(part, dict) else None
        if sku is None:
            raise unreadable(f"{where}.related_order_info[{i}]: no such line in the order")
        given_back = minor_units(part.get("aftersale_pay_amount") or 0, f"{where} line {i}")
        units = whole_number(part.get("aftersale_item_num") or 1, f"{where} line {i} units")
        lines.append(sale_line(sku, units, given_back))
    return lines


def _fen(data: dict[str, Any], name: str, where: str, required: bool = True) -> Decimal:
    value = data.get(name)
    if value is None:
        if required:
            raise unreadable(f"the order detail has no {where}{name}")
        return Decimal("0.00")
    return minor_units(value, f"{where}{name}")


def _name(part: Any) -> str | None:
    return str(part.get("name")) if isinstance(part, dict) and part.get("name") else None


def _line(line: dict[str, Any], where: str) -> dict[str, Any]:
    quantity = whole_number(line.get("item_num"), f"{where}.item_num")
    sku = line.get("code") or line.get("out_sku_id")
    if not sku:
        sku = f"douyin-{line.get('product_id')}-{line.get('sku_id')}"
    return {
        "sku": str(sku),
        "name": line.get("product_name"),
        "quantity": quantity,
        "unit_price": _fen(line, "origin_amount", f"{where}."),
    }


def _code(value: Any) -> Any:
    """A status code as a number, though it came as a string of digits."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return value


def status_of(detail: dict[str, Any]) -> str:
    if _code(detail.get("main_status")) in REFUNDED_MAIN:
        return "refunded"
    status = _code(detail.get("order_status"))
    if status == CANCELLED:
        return "cancelled"
    if status not in STATUSES:
        raise unreadable(f"order_status {status!r} is not one orderbus knows")
    return STATUSES[status]


def to_canonical(detail: dict[str, Any], channel: str, shop: str) -> dict[str, Any]:
    """The canonical order's fields from a ``shop_order_detail`` object."""
    lines = detail.get("sku_order_list")
    if not isinstance(lines, list) or not lines:
        raise unreadable("the order detail has no sku_order_list")
    items = [_line(line, f"sku_order_list[{i}]") for i, line in enumerate(lines)]
    shipping = _fen(detail, "post_amount", "", required=False)
    tax = _fen(detail, "tax_amount", "", required=False)
    total = _fen(detail, "pay_amount", "")
    goods = sum((i["unit_price"] * i["quantity"] for i in items), Decimal("0"))
    where = detail.get("post_addr") or {}
    phone = str(detail.get("post_tel") or "")
    street = " ".join(p for p in (_name(where.get("street")), where.get("detail")) if p)
    updated = detail.get("update_time")
    return {
        "channel": channel,
        "shop": shop,
        "external_id": str(detail.get("order_id")),
        "status": status_of(detail),
        "currency": "CNY",
        "customer": {
            "name": detail.get("post_receiver") or None,
            **phone_fields(phone, detail.get("mask_post_tel")),
        },
        "shipping_address": address(
            country="CN",
            province=_name(where.get("province")),
            city=_name(where.get("city")),
            district=_name(where.get("town")),
            lines=(street,),
            postal_code=None,
        ),
        "items": items,
        "shipping_fee": shipping,
        "tax": tax,
        "order_discount": goods + shipping + tax - total,
        "total": total,
        "placed_at": _when(detail.get("create_time"), "create_time"),
        "updated_at": _when(updated, "update_time") if updated else None,
        "note": detail.get("buyer_words") or None,
    }


def _when(value: Any, where: str) -> datetime:
    """Unix seconds, as a number or a string of digits."""
    value = _code(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise unreadable(f"{where} is not Unix seconds: {value!r}")
    return timestamp(value, where)


class DoudianApi:
    """Signed calls to Doudian's open API, with the shop's access token.

    HTTP 429/5xx, timeouts and busy or rate-limit answers are
    :class:`~canonical.errors.EndpointUnavailable` (the fetch worker's bus
    retries them with backoff, then dead-letters); an answer that can never
    succeed (the order does not exist, a bad parameter, no permission) is a
    ConnectorError naming Doudian's code and message.
    """

    def __init__(
        self,
        client: httpx.Client,
        app_key: str,
        app_secret: str,
        shop_id: str,
        endpoint: str = API_ENDPOINT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.app_key = app_key
        self.app_secret = app_secret
        self.shop_id = shop_id
        self.endpoint = endpoint.rstrip("/")
        self.clock = clock
        self.tokens = TokenCache(self._fetch_token, margin=TOKEN_MARGIN, floor=60.0, clock=clock)

    def _post(self, method: str, params: dict[str, Any], token: str | None) -> dict[str, Any]:
        body = param_json(params)
        stamp = int(self.clock())
        query = {
            "app_key": self.app_key,
            "method": method,
            "timestamp": str(stamp),
            "v": "2",
            "sign_method": "hmac-sha256",
            "sign": api_sign(self.app_key, self.app_secret, method, stamp, body),
        }
        if token is not None:
            query["access_token"] = token
        url = f"{self.endpoint}/{method.replace('.', '/')}"
        try:
            response = self.client.post(
                url,
                params=query,
                content=body.encode("utf-8"),
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"Doudian {method}: {exc!r}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise EndpointUnavailable(f"Doudian {method}: HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError as exc:
            raise EndpointUnavailable(f"Doudian {method}: the answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise EndpointUnavailable(f"Doudian {method}: the answer is not a JSON object")
        return answer

    def _failure(self, method: str, answer: dict[str, Any]) -> Exception:
        text = f"{answer.get('sub_code') or ''} {answer.get('sub_msg') or ''} {answer.get('msg')}"
        detail = (
            f"Doudian {method} answered code {answer.get('code')}: "
            f"{answer.get('msg')} ({answer.get('sub_code')}: {answer.get('sub_msg')})"
        )
        if PERMANENT.search(text):
            return ConnectorError(422, "platform_refused", detail)
        return EndpointUnavailable(detail)

    def _fetch_token(self) -> tuple[str, float]:
        """A self-used app's token (``token.create``, ``authorization_self``)."""
        params = {"code": "", "grant_type": "authorization_self", "shop_id": self.shop_id}
        answer = self._post("token.create", params, None)
        data = answer.get("data") or {}
        if answer.get("code") != API_SUCCESS or not data.get("access_token"):
            raise self._failure("token.create", answer)
        return str(data["access_token"]), float(data.get("expires_in") or 3600)

    def token(self) -> str:
        return self.tokens.get()

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The answer to ``method`` (code 10000), the token renewed once if refused."""
        token = self.token()
        answer = self._post(method, params, token)
        if answer.get("code") != API_SUCCESS and TOKEN_TROUBLE.search(
            f"{answer.get('sub_code') or ''} {answer.get('sub_msg') or ''}"
        ):
            self.tokens.expired(token)  # renewed once
            answer = self._post(method, params, self.token())
        if answer.get("code") != API_SUCCESS:
            raise self._failure(method, answer)
        return answer

    def order_detail(self, shop_order_id: str) -> dict[str, Any]:
        return self.call("order.orderDetail", {"shop_order_id": shop_order_id})

    def after_sales(self, order_id: str) -> Any:
        """``data`` of ``/afterSale/List`` for one order (up to 100 after-sales)."""
        answer = self.call("afterSale.List", {"order_id": order_id, "page": 0, "size": 100})
        return answer.get("data")


class DouyinOrders:
    """The fetch worker's source for a Douyin channel: an order by its id."""

    def __init__(self, api: DoudianApi, channel: ChannelConfig) -> None:
        self.api = api
        self.channel = channel

    def fetch(self, reference: OrderReference) -> CanonicalOrder:
        return self.fetch_raw(reference)[0]

    def fetch_raw(self, reference: OrderReference) -> tuple[CanonicalOrder, Any]:
        """The order, and the platform's answer it was read from (原始单)."""
        response = self.api.order_detail(reference.external_id)
        detail = (response.get("data") or {}).get("shop_order_detail")
        if isinstance(detail, dict) and has_after_sales(detail):
            response = {**response, "aftersale_list": self.api.after_sales(reference.external_id)}
        return DouyinConnector().read_detail(response, reference, self.channel), response

    def read_fetched(self, response: Any) -> CanonicalOrder:
        """A kept answer (原始单) read again, with no call: the replay's dry run."""
        detail = (response.get("data") or {}) if isinstance(response, dict) else {}
        order_id = (detail.get("shop_order_detail") or {}).get("order_id")
        reference = OrderReference(str(order_id), "replay")
        return DouyinConnector().read_detail(response, reference, self.channel)


def douyin_orders(
    config: ChannelConfig, spec: DouyinSpec | None, client: httpx.Client
) -> DouyinOrders:
    """The fetch worker's source for a Douyin channel; ValueError naming what
    is missing."""
    if spec is None or not config.app_key or not config.secrets:
        raise ValueError(
            f"channel {config.name!r} needs app_key, douyin.shop_id and its app_secret "
            "in ORDERBUS_CHANNEL_SECRETS"
        )
    api = DoudianApi(client, config.app_key, config.secrets[0], spec.shop_id, spec.endpoint)
    return DouyinOrders(api, config)
