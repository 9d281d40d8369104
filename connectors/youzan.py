"""Youzan (有赞) push messages for trades.

Youzan's push service POSTs one JSON object per event (documented in Youzan
Cloud's "消息推送" guide; the field list below is the one its SDKs reproduce):

- ``msg``: the event's message object, JSON, URL-encoded (UTF-8). For trade
  events it holds ``full_order_info`` (``order_info``, ``buyer_info``,
  ``address_info``, ``pay_info``, ``orders``), the structure of the
  ``youzan.trade.get`` API.
- ``sign``: ``md5(client_id + msg + client_secret)`` in lower-case hex, where
  ``msg`` is the URL-encoded text exactly as sent. Checked in constant time
  against every configured secret. Only ``client_id`` and ``msg`` are signed,
  so everything orderbus uses is read from ``msg``; ``client_id`` must be the
  channel's ``app_key`` when one is configured.
- ``type``: ``trade_TradeCreate``, ``trade_TradePaid``, ``trade_TradeSellerShip``,
  ``trade_TradeSuccess``, ``trade_TradeClose``... (any ``trade_*`` carrying an
  order is read; other types, refunds, items, members, are answered and recorded
  as ignored).
- ``version``, ``msg_id`` and ``kdt_id``: not signed, so none of them is used.
  A replay of a captured push could set them (a higher version, a new id,
  another shop) to make a copy look like a new revision or a new order. The
  order's version is its ``update_time`` (Unix seconds) from the signed
  ``msg``, the delivery's id a hash of ``msg`` (the same on every resend), and
  the shop the channel's ``shop`` setting.
- A trade event whose ``msg`` has no order lines (a status change only, as
  in Youzan's published ``trade_TradePaid`` sample) names the trade: with the
  channel's ``youzan`` API settings it becomes a fetch request, and the fetch
  worker reads the trade with ``youzan.trade.get`` (:class:`YouzanApi`);
  without them it is recorded as ignored, saying so.
- ``test: true``: Youzan's periodic health check; answered and recorded, never
  read as an order, and accepted without a signature (it can do nothing).
- Youzan counts a push as received when the answer is ``{"code": 0, "msg":
  "success"}`` (and pushes again otherwise): orderbus answers that, with 200,
  once the order is confirmed by the broker (or the push recorded as ignored).

Refunds (售后): a refund message (the old ``trade_refund_*`` types, the new
``youzan_trade_Refund*``) names its trade (``tid`` in ``msg``) and becomes a
fetch request like a status event. A fetched trade whose
``order_info.refund_state`` is not 0 (a refund asked for or done) has its
refunds read too: ``youzan.trade.refund.search`` 3.0.1 by ``tid`` lists their
ids, ``youzan.trade.refund.get`` 3.0.1 gives each one's line (``oid``), money
(``refund_fee``, yuan, postage included) and what the buyer asked
(``demand`` 1 money only, 2 goods back, 3 exchange, which is left out). They
are kept with the trade (``refunds``), so a replay reads them again. Status:
``WAIT_SELLER_AGREE`` requested; ``WAIT_BUYER_RETURN_GOODS``,
``WAIT_SELLER_CONFIRM_GOODS`` agreed; ``SUCCESS`` completed;
``SELLER_REFUSE_BUYER``, ``SELLER_REFUSE_BUYER_RETURN_GOODS`` refused;
``CLOSED`` withdrawn. Youzan names the line and the money, not the units: the
units are the line's in proportion to its money given back (rounded down, at
least one), the rest of the money beyond the line's being the postage.

Mapping: ``order_info.tid`` is the external id; status ``WAIT_BUYER_PAY`` is
created, ``TRADE_PAID``/``WAIT_CONFIRM``/``WAIT_SELLER_SEND_GOODS`` paid,
``WAIT_BUYER_CONFIRM_GOODS`` shipped, ``TRADE_SUCCESS`` delivered,
``TRADE_CLOSED`` cancelled (refunded when ``refund_state`` is 12, fully
refunded). Amounts are yuan strings; each line is ``price`` x ``num`` less
what makes it its apportioned ``payment``; shipping is ``pay_info.post_fee``;
what is left between the lines plus shipping and ``pay_info.payment`` (the
amount paid) is the order discount. SKU: ``outer_sku_id``, else
``outer_item_id``, else ``youzan-{item_id}[-{sku_id}]``. Times are
``YYYY-MM-DD HH:MM:SS`` in Asia/Shanghai. Phone: ``buyer_info.buyer_phone``,
else the receiver's ``address_info.receiver_tel``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import httpx

from canonical.errors import EndpointUnavailable
from canonical.order import CanonicalOrder
from connectors.base import (
    Arrival,
    ChannelConfig,
    ConnectorError,
    OrderReference,
    WebhookRequest,
    WebhookResult,
    unauthorized,
    unreadable,
)
from connectors.payload import (
    SHANGHAI,
    TRY_LATER,
    address,
    amount,
    canonical_order,
    field,
    load_json,
    require_app,
    require_signature,
    signed_delivery_id,
    timestamp,
)
from connectors.refunds import SHIPPED, after_sale, kind_of, sale_line
from connectors.refunds import status_of as refund_status
from infra.setting_specs import YouzanSpec
from infra.tokens import TokenCache

STATUSES = {
    "WAIT_BUYER_PAY": "created",
    "TRADE_PAID": "paid",
    "WAIT_CONFIRM": "paid",
    "WAIT_SELLER_SEND_GOODS": "paid",
    "WAIT_BUYER_CONFIRM_GOODS": "shipped",
    "TRADE_SUCCESS": "delivered",
    "TRADE_CLOSED": "cancelled",
}
FULLY_REFUNDED = 12  # order_info.refund_state
REFUND_TYPES = ("trade_refund_", "youzan_trade_Refund")  # messages about a refund
REFUND_STATUSES = {
    "WAIT_SELLER_AGREE": "requested",
    "WAIT_BUYER_RETURN_GOODS": "agreed",
    "WAIT_SELLER_CONFIRM_GOODS": "agreed",
    "SUCCESS": "completed",
    "SELLER_REFUSE_BUYER": "refused",
    "SELLER_REFUSE_BUYER_RETURN_GOODS": "refused",
    "CLOSED": "withdrawn",
}
MONEY_ONLY, GOODS_BACK = 1, 2  # a refund's demand (3, an exchange, is left out)


def youzan_sign(client_id: str, msg: str, secret: str) -> str:
    # Youzan's documented scheme; md5 is what the platform signs with.
    return hashlib.md5((client_id + msg + secret).encode("utf-8")).hexdigest()  # noqa: S324


def _envelope(body: bytes) -> dict[str, Any]:
    data = load_json(body, exact_numbers=True)
    if not isinstance(data, dict):
        raise unreadable("the body must be a Youzan push message (a JSON object)")
    return data


def _is_test(data: dict[str, Any]) -> bool:
    return data.get("test") is True


class YouzanConnector:
    name = "youzan"
    media_types = frozenset({"application/json"})
    # Youzan counts a push as received on this answer (and pushes again otherwise).
    reply: dict[str, Any] | None = {"code": 0, "msg": "success"}

    def authenticate(self, request: WebhookRequest, channel: ChannelConfig, tolerance: int) -> None:
        data = _envelope(request.body)
        if _is_test(data):
            return  # Youzan's health check: read as nothing whatever it says
        offered, client_id, msg = data.get("sign"), data.get("client_id"), data.get("msg")
        if offered and (not isinstance(client_id, str) or not isinstance(msg, str)):
            raise unauthorized("bad_signature", "client_id and msg must be strings")
        require_app(client_id if isinstance(client_id, str) else None, channel.app_key)
        require_signature(
            channel.secrets,
            offered,
            lambda secret: youzan_sign(str(client_id), str(msg), secret),
            what="sign (md5 of client_id + msg + client_secret)",
            lower=True,
        )

    def read(self, request: WebhookRequest, channel: ChannelConfig) -> WebhookResult:
        data = _envelope(request.body)
        kind = str(data.get("type") or "")
        if _is_test(data):
            return WebhookResult(ignored=f"Youzan test message ({kind or 'no type'})")
        if kind.startswith(REFUND_TYPES):
            return _refund_reference(data, kind, channel)
        if not kind.startswith("trade_"):
            return WebhookResult(ignored=f"message type {kind or '(none)'!r} is not a trade event")
        try:
            message = load_json(
                unquote_plus(str(field(data, "msg")), errors="strict"), exact_numbers=True
            )
        except UnicodeDecodeError as exc:
            raise unreadable(f"msg is not URL-encoded UTF-8: {exc}", "invalid_encoding") from exc
        info = message.get("full_order_info") if isinstance(message, dict) else None
        # Only client_id and msg are signed: the shop comes from configuration,
        # the version and the delivery's id from msg (the envelope's kdt_id,
        # version and msg_id are not signed; a replay could set them).
        shop = channel.shop or "default"
        delivery = signed_delivery_id(str(data.get("msg")))
        order_info = (info or {}).get("order_info") if isinstance(info, dict) else None
        version = signed_version(order_info if isinstance(order_info, dict) else {})
        if not isinstance(info, dict) or not info.get("orders"):
            # A status event without the order's lines: the trade is fetched
            # with youzan.trade.get when the channel has the API settings.
            tid = order_info.get("tid") if isinstance(order_info, dict) else None
            status = data.get("status")
            if not channel.fetch or not tid:
                return WebhookResult(
                    ignored=f"{kind} for trade {tid or data.get('id')} carries no order lines "
                    f"(status {status}); set the channel's youzan API settings to fetch it"
                )
            reference = OrderReference(str(tid), delivery, shop, version)
            return WebhookResult(references=(reference,))
        order = canonical_order(to_canonical(info, channel.name, shop, version))
        return WebhookResult((Arrival(order, delivery),))

    def sign(self, body: bytes, secret: str, now: float) -> tuple[dict[str, str], bytes]:
        data = json.loads(body)
        data["sign"] = youzan_sign(data["client_id"], data["msg"], secret)
        signed = json.dumps(data, ensure_ascii=False).encode("utf-8")
        return {"Content-Type": "application/json"}, signed


def _refund_reference(data: dict[str, Any], kind: str, channel: ChannelConfig) -> WebhookResult:
    """A refund message: its trade (``tid`` in the signed ``msg``) to fetch."""
    try:
        message = load_json(unquote_plus(str(field(data, "msg")), errors="strict"))
    except UnicodeDecodeError as exc:
        raise unreadable(f"msg is not URL-encoded UTF-8: {exc}", "invalid_encoding") from exc
    tid = message.get("tid") if isinstance(message, dict) else None
    if not channel.fetch or not tid:
        return WebhookResult(
            ignored=f"{kind} for trade {tid or '(none)'}: set the channel's youzan API settings "
            "to fetch the trade and its refunds"
        )
    delivery = signed_delivery_id(str(data.get("msg")))
    return WebhookResult(
        references=(OrderReference(str(tid), delivery, channel.shop or "default"),)
    )


def encode_msg(message: dict[str, Any]) -> str:
    """``msg`` as Youzan sends it: the JSON, URL-encoded as a form value (a space
    is ``+``), for fixtures and demos."""
    return quote_plus(json.dumps(message, ensure_ascii=False, separators=(",", ":")))


def _line(line: dict[str, Any], where: str) -> dict[str, Any]:
    quantity = field(line, "num")
    if isinstance(quantity, str) and quantity.isdigit():
        quantity = int(quantity)
    if not isinstance(quantity, int) or isinstance(quantity, bool):
        raise unreadable(f"{where}.num is not an integer: {quantity!r}")
    unit = amount(field(line, "price"), f"{where}.price")
    paid = amount(field(line, "payment"), f"{where}.payment")
    sku = line.get("outer_sku_id") or line.get("outer_item_id")
    if not sku:
        variant = f"-{line['sku_id']}" if line.get("sku_id") else ""
        sku = f"youzan-{field(line, 'item_id')}{variant}"
    return {
        "sku": str(sku),
        "name": line.get("title"),
        "quantity": quantity,
        "unit_price": unit,
        "discount": unit * quantity - paid,
    }


def signed_version(order_info: dict[str, Any]) -> int:
    """ "Higher overrides lower" for one trade, from its ``update_time`` (in the
    signed msg, or the API's answer): Unix seconds; 1 without one."""
    updated = order_info.get("update_time")
    if not updated:
        return 1
    try:
        return max(int(timestamp(updated, "order_info.update_time", SHANGHAI).timestamp()), 1)
    except ConnectorError:
        return 1


def to_canonical(info: dict[str, Any], channel: str, shop: str, version: int) -> dict[str, Any]:
    """The canonical order's fields from a ``full_order_info`` object."""
    order_info = field(info, "order_info")
    status = str(field(order_info, "status"))
    if status not in STATUSES:
        raise unreadable(f"trade status {status!r} is not one orderbus knows")
    canonical_status = STATUSES[status]
    if status == "TRADE_CLOSED" and order_info.get("refund_state") == FULLY_REFUNDED:
        canonical_status = "refunded"
    items = [_line(line, f"orders[{i}]") for i, line in enumerate(field(info, "orders"))]
    pay = field(info, "pay_info")
    shipping_fee = amount(pay.get("post_fee") or "0", "pay_info.post_fee")
    total = amount(field(pay, "payment"), "pay_info.payment")
    lines = sum((i["unit_price"] * i["quantity"] - i["discount"] for i in items), Decimal("0"))
    buyer = info.get("buyer_info") or {}
    where = info.get("address_info") or {}
    updated = order_info.get("update_time")
    return {
        "channel": channel,
        "shop": shop,
        "external_id": str(field(order_info, "tid")),
        "status": canonical_status,
        "version": version,
        "currency": "CNY",
        "customer": {
            "name": where.get("receiver_name") or None,
            "phone": buyer.get("buyer_phone") or where.get("receiver_tel") or None,
        },
        "shipping_address": address(
            country="CN",
            province=where.get("delivery_province"),
            city=where.get("delivery_city"),
            district=where.get("delivery_district"),
            lines=(where.get("delivery_address"),),
            postal_code=where.get("delivery_postal_code"),
        ),
        "items": items,
        "shipping_fee": shipping_fee,
        "order_discount": lines + shipping_fee - total,
        "total": total,
        "placed_at": timestamp(field(order_info, "created"), "order_info.created", SHANGHAI),
        "updated_at": timestamp(updated, "order_info.update_time", SHANGHAI) if updated else None,
        "note": (info.get("remark_info") or {}).get("buyer_message") or None,
    }


YOUZAN_API = "https://open.youzanyun.com"
TOKEN_MARGIN = 300.0  # seconds before it expires that the access token is renewed


class YouzanApi:
    """The Youzan open API for one shop, with a self-used app's token.

    The token: ``POST {endpoint}/auth/token`` with ``client_id``,
    ``client_secret``, ``authorize_type: silent`` and ``grant_id`` (the shop's
    kdt_id); the answer ``{success, code: 200, data: {access_token, expires}}``,
    ``expires`` in milliseconds since the epoch. A trade: ``POST
    {endpoint}/api/youzan.trade.get/4.0.0?access_token=...`` with ``{"tid": ...}``,
    answered ``{success, code: 200, data: {full_order_info}}``. A refusal
    naming the token renews it once; HTTP 5xx/429 and busy or rate-limit
    answers are transient; any other refusal (no such trade, no permission) is
    a ConnectorError with Youzan's code and message.
    """

    def __init__(
        self,
        client: httpx.Client,
        client_id: str,
        client_secret: str,
        grant_id: str,
        endpoint: str = YOUZAN_API,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.client_id = client_id
        self.client_secret = client_secret
        self.grant_id = grant_id
        self.endpoint = endpoint.rstrip("/")
        self.clock = clock
        self.tokens = TokenCache(self._fetch_token, margin=TOKEN_MARGIN, floor=60.0, clock=clock)

    def _post(self, url: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        try:
            response = self.client.post(url, json=body)
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"Youzan {what}: {exc!r}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise EndpointUnavailable(f"Youzan {what}: HTTP {response.status_code}")
        answer = load_json(response.content, exact_numbers=True)
        if not isinstance(answer, dict):
            raise EndpointUnavailable(f"Youzan {what}: the answer is not a JSON object")
        return answer

    @staticmethod
    def _refused(answer: dict[str, Any]) -> bool:
        return answer.get("success") is not True or answer.get("code") not in (200, "200")

    def _failure(self, what: str, answer: dict[str, Any]) -> Exception:
        detail = f"Youzan {what} answered {answer.get('code')}: {answer.get('message')}"
        if TRY_LATER.search(str(answer.get("message") or "")):
            return EndpointUnavailable(detail)
        return ConnectorError(422, "platform_refused", detail)

    def _fetch_token(self) -> tuple[str, float]:
        """A self-used app's token (``auth/token``, ``silent``); Youzan says
        when it expires in milliseconds since the epoch."""
        body = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "authorize_type": "silent",
            "grant_id": self.grant_id,
            "refresh": False,
        }
        answer = self._post(f"{self.endpoint}/auth/token", body, "auth/token")
        data = answer.get("data") or {}
        if self._refused(answer) or not data.get("access_token"):
            raise self._failure("auth/token", answer)
        expires = float(data.get("expires") or 0) / 1000
        lifetime = max(expires - self.clock(), 0.001) if expires else 3600.0
        return str(data["access_token"]), lifetime

    def token(self) -> str:
        return self.tokens.get()

    def call(self, api: str, version: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST {endpoint}/api/{api}/{version}?access_token=``: the answer's
        ``data``, the token renewed once when Youzan refuses it."""
        for attempt in (1, 2):
            url = f"{self.endpoint}/api/{api}/{version}"
            token = self.token()
            try:
                response = self.client.post(url, params={"access_token": token}, json=body)
            except httpx.HTTPError as exc:
                raise EndpointUnavailable(f"Youzan {api}: {exc!r}") from exc
            if response.status_code == 429 or response.status_code >= 500:
                raise EndpointUnavailable(f"Youzan {api}: HTTP {response.status_code}")
            answer = load_json(response.content, exact_numbers=True)
            if not isinstance(answer, dict):
                raise EndpointUnavailable(f"Youzan {api}: the answer is not an object")
            if not self._refused(answer):
                data = answer.get("data")
                return data if isinstance(data, dict) else {"value": data}
            if attempt == 1 and "token" in str(answer.get("message") or "").lower():
                self.tokens.expired(token)  # expired or revoked: renew once
                continue
            raise self._failure(api, answer)
        raise AssertionError("unreachable")

    def refunds(self, tid: str) -> list[dict[str, Any]]:
        """Each refund of the trade, as ``youzan.trade.refund.get`` gives it."""
        found = self.call("youzan.trade.refund.search", "3.0.1", {"tid": tid, "page_size": 100})
        listed = found.get("refunds") or []
        ids = sorted(
            {str(r["refund_id"]) for r in listed if isinstance(r, dict) and r.get("refund_id")}
        )
        return [self.call("youzan.trade.refund.get", "3.0.1", {"refund_id": i}) for i in ids]

    def trade(self, tid: str) -> dict[str, Any]:
        """``data.full_order_info`` of the trade."""
        info = self.call("youzan.trade.get", "4.0.0", {"tid": tid}).get("full_order_info")
        if not isinstance(info, dict):
            raise unreadable("youzan.trade.get answered no data.full_order_info")
        return info


class YouzanOrders:
    """The fetch worker's source for a Youzan channel: a trade by its tid."""

    def __init__(self, api: YouzanApi, channel: ChannelConfig) -> None:
        self.api = api
        self.channel = channel

    def fetch(self, reference: OrderReference) -> CanonicalOrder:
        return self.fetch_raw(reference)[0]

    def fetch_raw(self, reference: OrderReference) -> tuple[CanonicalOrder, Any]:
        """The order, and the platform's answer it was read from (原始单)."""
        info = self.api.trade(reference.external_id)
        if (info.get("order_info") or {}).get("refund_state") not in (None, 0, "0"):
            info = {**info, "refunds": self.api.refunds(reference.external_id)}
        order = self.read_fetched(info)
        if order.external_id != reference.external_id:
            raise unreadable(f"asked for trade {reference.external_id}, got {order.external_id}")
        return order, info

    def read_fetched(self, info: Any) -> CanonicalOrder:
        """An answer (kept: 原始单) read as the order, with no call."""
        if not isinstance(info, dict):
            raise unreadable("the trade answer is not a JSON object")
        shop = self.channel.shop or "default"
        order_info = info.get("order_info")
        version = signed_version(order_info if isinstance(order_info, dict) else {})
        fields = to_canonical(info, self.channel.name, shop, version)
        fields["after_sales"] = after_sales_of(info.get("refunds") or [], info, fields)
        return canonical_order(fields)


def after_sales_of(
    refunds: list[Any], info: dict[str, Any], order: dict[str, Any]
) -> list[dict[str, Any]]:
    """Each refund (``youzan.trade.refund.get``'s data) as an after-sale of its line."""
    lines = {
        str(line.get("oid")): item
        for line, item in zip(field(info, "orders"), order["items"], strict=True)
    }
    shipped = order["status"] in SHIPPED
    found = []
    for index, refund in enumerate(refunds):
        where = f"refunds[{index}]"
        if not isinstance(refund, dict):
            raise unreadable(f"{where} is not an object")
        demand = refund.get("demand")
        demand = int(demand) if isinstance(demand, str) and demand.isdigit() else demand
        if demand not in (MONEY_ONLY, GOODS_BACK):
            continue  # an exchange: no sale is undone
        given_back = amount(field(refund, "refund_fee"), f"{where}.refund_fee")
        paired = lines.get(str(refund.get("oid")))
        sale_lines = [] if paired is None else [_sale_line(paired, given_back)]
        done = refund.get("refund_success_time") or refund.get("modified")
        found.append(
            after_sale(
                field(refund, "refund_id"),
                kind_of(returns_goods=demand == GOODS_BACK, shipped=shipped),
                refund_status(REFUND_STATUSES, refund.get("status"), where),
                given_back,
                lines=sale_lines,
                reason=refund.get("reason_desc") or refund.get("desc"),
                updated_at=timestamp(done, f"{where}.modified", SHANGHAI) if done else None,
            )
        )
    return found


def _sale_line(item: dict[str, Any], given_back: Decimal) -> dict[str, Any]:
    """A refund's line: the money up to what the line was paid, the units in
    proportion to it (Youzan does not say them)."""
    paid = item["unit_price"] * item["quantity"] - item["discount"]
    money = min(given_back, paid)
    units = int(item["quantity"] * money / paid) if paid > 0 else item["quantity"]
    return sale_line(item["sku"], units, money)


def youzan_orders(config: ChannelConfig, spec: YouzanSpec, client: httpx.Client) -> YouzanOrders:
    """The fetch worker's source for a Youzan channel with API settings;
    ValueError naming what is missing."""
    if not config.app_key or not config.secrets:
        raise ValueError(
            f"channel {config.name!r} needs app_key (client_id) and its client secret "
            "in ORDERBUS_CHANNEL_SECRETS"
        )
    api = YouzanApi(client, config.app_key, config.secrets[0], spec.grant_id, spec.endpoint)
    return YouzanOrders(api, config)
