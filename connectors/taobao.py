"""Taobao / Tmall: trade messages from TMC, and the trade from ``taobao.trade.fullinfo.get``.

Taobao tells an app about trades through TMC (its message service); an app
can take the messages over HTTP with the TOP API: ``taobao.tmc.messages.consume``
(up to ``quantity`` messages of the app's ``group_name``), then
``taobao.tmc.messages.confirm`` (``s_message_ids``) for those it has dealt
with; TMC gives unconfirmed messages again later. A message is
``{id, topic, content, user_id, user_nick, pub_time, pub_app_key}``, ``content``
a JSON text; trade topics (``taobao_trade_TradeCreate``,
``taobao_trade_TradeBuyerPay``, ``taobao_trade_TradeSellerShip``,
``taobao_trade_TradeSuccess``, ``taobao_trade_TradeClose``...) name the trade
(``tid``) and its new status, not its lines or address.

So, as for Douyin: the TMC puller turns each message naming a ``tid`` into a
fetch request on ``{ns}.fetch.{channel}`` (message id: the TMC message id),
and confirms the messages to TMC only once RabbitMQ confirmed the requests
(messages about something else are confirmed and logged). The fetch worker
then calls ``taobao.trade.fullinfo.get`` for the trade.

TOP requests are signed as Taobao's SDKs sign them (``sign_method=md5``): all
parameters but ``sign``, sorted by name, each name followed by its value,
wrapped in the app secret, MD5, upper-case hex. System parameters:
``method``, ``app_key``, ``session`` (the seller's authorization), ``timestamp``
(``yyyy-MM-dd HH:mm:ss``, Asia/Shanghai), ``format=json``, ``v=2.0``,
``sign_method``. An error is ``{"error_response": {code, msg, sub_code,
sub_msg}}``: code 7 (call limit), code 15 with an ``isp.*`` sub code (Taobao's
side) and HTTP 5xx are transient; the session invalid (codes 26/27) or an
``isv.*`` sub code (the trade does not exist, a bad parameter) can never
succeed as sent, and are dead letters naming Taobao's code and message.
Long ids (``tid``, message ids) are read exactly (they exceed 2^53).

Mapping of a trade: ``TRADE_NO_CREATE_PAY``/``WAIT_BUYER_PAY`` created;
``WAIT_SELLER_SEND_GOODS``, ``SELLER_CONSIGNED_PART``, ``PAID_FORBID_CONSIGN``
paid; ``WAIT_BUYER_CONFIRM_GOODS`` shipped; ``TRADE_BUYER_SIGNED`` and
``TRADE_FINISHED`` delivered; ``TRADE_CLOSED`` (refunded after payment)
refunded; ``TRADE_CLOSED_BY_TAOBAO`` (closed before payment) cancelled.
Amounts are yuan strings: each line (``orders.order``) is ``price`` x ``num``,
shipping ``post_fee``, the total ``payment`` (what the buyer paid), and the
difference is the order discount. SKU: ``outer_sku_id``, else ``outer_iid``,
else ``taobao-{num_iid}[-{sku_id}]``. Times are Asia/Shanghai. The phone is
``receiver_mobile`` when Taobao gives it in the clear; a masked one is kept as
the customer's ``masked_phone``.

Refunds (售后): TMC's refund topics (``taobao_refund_RefundCreated``,
``..._RefundSellerAgreeAgreement``, ``..._RefundSuccess``, ``..._RefundClosed``...)
name the trade (``tid``) too, so they fetch it like a trade message. The
fetch reads, besides the trade, each line's refund (a line with a
``refund_id`` and a ``refund_status`` other than ``NO_REFUND``) with
``taobao.refund.get``; each becomes an after-sale of that line
(:func:`after_sale_of`): ``WAIT_SELLER_AGREE`` requested,
``WAIT_BUYER_RETURN_GOODS``/``WAIT_SELLER_CONFIRM_GOODS`` agreed, ``SUCCESS``
completed, ``SELLER_REFUSE_BUYER`` refused, ``CLOSED`` withdrawn; the amount
``refund_fee``, the units ``num``. The kept answer (原始单) holds the trade
and its refunds, so a replay reads both again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from canonical.errors import EndpointUnavailable, TransientError
from canonical.order import CanonicalOrder
from connectors.base import ConnectorError, OrderReference, unreadable
from connectors.payload import (
    SHANGHAI,
    address,
    amount,
    canonical_order,
    field,
    load_json,
    phone_fields,
    sorted_params_md5,
    timestamp,
)
from connectors.pull import PullDeps
from connectors.refunds import after_sale, kind_of, sale_line, status_of

log = logging.getLogger(__name__)

TOP_ENDPOINT = "https://eco.taobao.com/router/rest"
TRADE_FIELDS = (
    "tid,status,payment,post_fee,total_fee,discount_fee,created,modified,pay_time,"
    "buyer_message,seller_nick,receiver_name,receiver_state,receiver_city,"
    "receiver_district,receiver_town,receiver_address,receiver_zip,receiver_mobile,"
    "orders.oid,orders.num_iid,orders.sku_id,orders.outer_iid,orders.outer_sku_id,"
    "orders.title,orders.price,orders.num,orders.total_fee,orders.payment,"
    "orders.refund_id,orders.refund_status"
)
REFUND_FIELDS = (
    "refund_id,tid,oid,status,order_status,good_status,has_good_return,refund_fee,num,"
    "reason,modified"
)
REFUND_STATUSES = {
    "WAIT_SELLER_AGREE": "requested",
    "WAIT_BUYER_RETURN_GOODS": "agreed",
    "WAIT_SELLER_CONFIRM_GOODS": "agreed",
    "SELLER_REFUSE_BUYER": "refused",
    "CLOSED": "withdrawn",
    "SUCCESS": "completed",
}
NOT_SHIPPED = frozenset(
    {"TRADE_NO_CREATE_PAY", "WAIT_BUYER_PAY", "WAIT_SELLER_SEND_GOODS", "PAID_FORBID_CONSIGN"}
)
STATUSES = {
    "TRADE_NO_CREATE_PAY": "created",
    "WAIT_BUYER_PAY": "created",
    "WAIT_SELLER_SEND_GOODS": "paid",
    "SELLER_CONSIGNED_PART": "paid",
    "PAID_FORBID_CONSIGN": "paid",
    "WAIT_BUYER_CONFIRM_GOODS": "shipped",
    "TRADE_BUYER_SIGNED": "delivered",
    "TRADE_FINISHED": "delivered",
    "TRADE_CLOSED": "refunded",
    "TRADE_CLOSED_BY_TAOBAO": "cancelled",
}
ORDER_TOPICS = ("taobao_trade_", "taobao_refund_")  # each names its trade (tid)
RATE_LIMITED = 7
SESSION_CODES = frozenset({26, 27})


class TopApi:
    """Signed TOP calls for one seller (its ``session``)."""

    def __init__(
        self,
        client: httpx.Client,
        app_key: str,
        app_secret: str,
        session: str,
        endpoint: str = TOP_ENDPOINT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.app_key = app_key
        self.app_secret = app_secret
        self.session = session
        self.endpoint = endpoint
        self.clock = clock

    def call(self, method: str, params: dict[str, str]) -> dict[str, Any]:
        """The ``{method}_response`` object, or EndpointUnavailable / ConnectorError."""
        stamp = datetime.fromtimestamp(self.clock(), SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
        form = {
            "method": method,
            "app_key": self.app_key,
            "session": self.session,
            "timestamp": stamp,
            "format": "json",
            "v": "2.0",
            "sign_method": "md5",
            **params,
        }
        form["sign"] = sorted_params_md5(form, self.app_secret)
        try:
            response = self.client.post(self.endpoint, data=form)
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"Taobao {method}: {exc!r}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise EndpointUnavailable(f"Taobao {method}: HTTP {response.status_code}")
        try:
            answer = json.loads(response.content)  # integers stay exact
        except ValueError as exc:
            raise EndpointUnavailable(f"Taobao {method}: the answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise EndpointUnavailable(f"Taobao {method}: the answer is not a JSON object")
        error = answer.get("error_response")
        if isinstance(error, dict):
            raise self._failure(method, error)
        key = method.removeprefix("taobao.").replace(".", "_") + "_response"
        result = answer.get(key)
        if not isinstance(result, dict):
            raise EndpointUnavailable(f"Taobao {method}: the answer has no {key}")
        return result

    @staticmethod
    def _failure(method: str, error: dict[str, Any]) -> Exception:
        code, sub = error.get("code"), str(error.get("sub_code") or "")
        detail = (
            f"Taobao {method} answered code {code}: {error.get('msg')} "
            f"({sub or '-'}: {error.get('sub_msg') or '-'})"
        )
        if code == RATE_LIMITED or sub.startswith("isp."):
            return EndpointUnavailable(detail)
        if code in SESSION_CODES or sub.startswith("isv."):
            return ConnectorError(422, "platform_refused", detail)
        return EndpointUnavailable(detail)

    def trade(self, tid: str) -> dict[str, Any]:
        return self.call("taobao.trade.fullinfo.get", {"tid": tid, "fields": TRADE_FIELDS})

    def refund(self, refund_id: str) -> dict[str, Any]:
        """``taobao.refund.get``'s ``refund`` object."""
        answer = self.call("taobao.refund.get", {"refund_id": refund_id, "fields": REFUND_FIELDS})
        refund = answer.get("refund")
        if not isinstance(refund, dict):
            raise EndpointUnavailable(f"Taobao taobao.refund.get {refund_id}: no refund object")
        return refund

    def refunds_of(self, response: dict[str, Any]) -> list[dict[str, Any]]:
        """The refund of each line of the trade that has one (its ``refund_id``)."""
        trade = response.get("trade")
        lines = _lines_of(trade) if isinstance(trade, dict) else []
        ids = {
            str(line["refund_id"])
            for line in lines
            if line.get("refund_id") and line.get("refund_status") not in (None, "", "NO_REFUND")
        }
        return [self.refund(refund_id) for refund_id in sorted(ids)]


class TaobaoOrders:
    """The fetch worker's source for a Taobao channel: a trade by its tid."""

    def __init__(self, api: TopApi, channel: str, shop: str | None = None) -> None:
        self.api = api
        self.channel = channel
        self.shop = shop

    def fetch(self, reference: OrderReference) -> CanonicalOrder:
        return self.fetch_raw(reference)[0]

    def fetch_raw(self, reference: OrderReference) -> tuple[CanonicalOrder, Any]:
        """The order, and the platform's answer it was read from (原始单)."""
        response = self.api.trade(reference.external_id)
        kept = {**response, "refunds": self.api.refunds_of(response)}
        return read_trade(kept, reference, self.channel, self.shop), kept

    def read_fetched(self, response: Any) -> CanonicalOrder:
        """A kept answer (原始单) read again, with no call: the replay's dry run."""
        trade = response.get("trade") if isinstance(response, dict) else None
        tid = trade.get("tid") if isinstance(trade, dict) else None
        return read_trade(response, OrderReference(str(tid), "replay"), self.channel, self.shop)


def read_trade(
    response: dict[str, Any], reference: OrderReference, channel: str, shop: str | None = None
) -> CanonicalOrder:
    """The canonical order from a ``trade_fullinfo_get_response`` object."""
    trade = response.get("trade")
    if not isinstance(trade, dict):
        raise unreadable("the answer has no trade")
    if str(trade.get("tid")) != reference.external_id:
        raise unreadable(f"asked for trade {reference.external_id}, got {trade.get('tid')}")
    owner = shop or reference.shop or str(trade.get("seller_nick") or "default")
    fields = to_canonical(trade, channel, owner)
    refunds = response.get("refunds") or []
    if not isinstance(refunds, list):
        raise unreadable("refunds is not a list")
    fields["after_sales"] = [
        after_sale_of(refund, trade, f"refunds[{i}]") for i, refund in enumerate(refunds)
    ]
    return canonical_order(fields)


def _lines_of(trade: dict[str, Any]) -> list[dict[str, Any]]:
    lines = (trade.get("orders") or {}).get("order")
    if isinstance(lines, dict):
        lines = [lines]  # some answers give a single order as an object
    return [line for line in lines if isinstance(line, dict)] if isinstance(lines, list) else []


def after_sale_of(refund: Any, trade: dict[str, Any], where: str) -> dict[str, Any]:
    """A ``taobao.refund.get`` refund (one line's: ``oid``) as an after-sale:
    goods sent back (``has_good_return``) a return; money only while the
    trade had not shipped (its ``order_status``) a cancel of that line, after
    it a refund."""
    if not isinstance(refund, dict):
        raise unreadable(f"{where} is not an object")
    oid = str(field(refund, "oid"))
    line = next((x for x in _lines_of(trade) if str(x.get("oid")) == oid), None)
    if line is None:
        raise unreadable(f"{where}: the trade has no line (oid) {oid}")
    item = _line(line, where)
    given_back = amount(field(refund, "refund_fee"), f"{where}.refund_fee")
    number = refund.get("num")
    quantity = number if isinstance(number, int) and 0 < number <= item["quantity"] else None
    modified = refund.get("modified")
    return after_sale(
        field(refund, "refund_id"),
        kind_of(
            returns_goods=refund.get("has_good_return") in (True, "true"),
            shipped=str(refund.get("order_status") or "") not in NOT_SHIPPED,
        ),
        status_of(REFUND_STATUSES, refund.get("status"), where),
        given_back,
        lines=[sale_line(item["sku"], quantity or item["quantity"], given_back)],
        reason=refund.get("reason"),
        updated_at=timestamp(modified, f"{where}.modified", SHANGHAI) if modified else None,
    )


def _line(line: dict[str, Any], where: str) -> dict[str, Any]:
    quantity = field(line, "num")
    if not isinstance(quantity, int) or isinstance(quantity, bool):
        raise unreadable(f"{where}.num is not an integer: {quantity!r}")
    sku = line.get("outer_sku_id") or line.get("outer_iid")
    if not sku:
        variant = f"-{line['sku_id']}" if line.get("sku_id") else ""
        sku = f"taobao-{field(line, 'num_iid')}{variant}"
    return {
        "sku": str(sku),
        "name": line.get("title"),
        "quantity": quantity,
        "unit_price": amount(field(line, "price"), f"{where}.price"),
    }


def to_canonical(trade: dict[str, Any], channel: str, shop: str) -> dict[str, Any]:
    """The canonical order's fields from a TOP ``Trade`` object."""
    status = str(field(trade, "status"))
    if status not in STATUSES:
        raise unreadable(f"trade status {status!r} is not one orderbus knows")
    lines = (trade.get("orders") or {}).get("order")
    if isinstance(lines, dict):
        lines = [lines]  # some answers give a single order as an object
    if not isinstance(lines, list) or not lines:
        raise unreadable("the trade has no orders.order")
    items = [_line(line, f"orders.order[{i}]") for i, line in enumerate(lines)]
    shipping = amount(trade.get("post_fee") or "0", "post_fee")
    total = amount(field(trade, "payment"), "payment")
    goods = sum((i["unit_price"] * i["quantity"] for i in items), Decimal("0"))
    mobile = str(trade.get("receiver_mobile") or "")
    modified = trade.get("modified")
    return {
        "channel": channel,
        "shop": shop,
        "external_id": str(field(trade, "tid")),
        "status": STATUSES[status],
        "currency": "CNY",
        "customer": {
            "name": trade.get("receiver_name") or None,
            **phone_fields(mobile),
        },
        "shipping_address": address(
            country="CN",
            province=trade.get("receiver_state"),
            city=trade.get("receiver_city"),
            district=trade.get("receiver_district"),
            lines=(trade.get("receiver_town"), str(trade.get("receiver_address") or "").strip()),
            postal_code=str(trade.get("receiver_zip") or "").strip() or None,
        ),
        "items": items,
        "shipping_fee": shipping,
        "order_discount": goods + shipping - total,
        "total": total,
        "placed_at": timestamp(field(trade, "created"), "created", SHANGHAI),
        "updated_at": timestamp(modified, "modified", SHANGHAI) if modified else None,
        "note": trade.get("buyer_message") or None,
    }


PublishFetches = Callable[[list[OrderReference]], list[Exception | None]]


class TmcPuller:
    """Takes a channel's TMC messages and queues a fetch request for each trade.

    A round: ``taobao.tmc.messages.consume``; each message naming a ``tid``
    becomes a fetch request, published with confirms; then every message
    whose request was confirmed, and every message about something else, is
    confirmed to TMC. A message whose request was not confirmed is left to
    TMC, which gives it again. An empty answer waits ``interval`` seconds;
    Taobao unavailable waits with backoff (capped at a minute).
    """

    def __init__(
        self,
        channel: str,
        api: TopApi,
        publish: PublishFetches,
        *,
        group_name: str = "default",
        quantity: int = 100,
        interval: float = 1.0,
        shop: str | None = None,
    ) -> None:
        self.channel = channel
        self.api = api
        self.publish = publish
        self.group_name = group_name
        self.quantity = quantity
        self.interval = interval
        self.shop = shop

    def references(self, messages: list[dict[str, Any]]) -> list[tuple[str, OrderReference | None]]:
        """Each message's id and the trade it names (None: not about a trade)."""
        found: list[tuple[str, OrderReference | None]] = []
        for message in messages:
            message_id = str(message.get("id"))
            try:
                content = json.loads(str(message.get("content") or "{}"))
            except ValueError:
                content = None
            tid = content.get("tid") if isinstance(content, dict) else None
            if not str(message.get("topic") or "").startswith(ORDER_TOPICS) or tid is None:
                log.info(
                    "tmc %s: message %s (%s) is not about a trade",
                    self.channel,
                    message_id,
                    message.get("topic"),
                )
                found.append((message_id, None))
                continue
            shop = self.shop or (str(message["user_nick"]) if message.get("user_nick") else None)
            found.append((message_id, OrderReference(str(tid), f"tmc-{message_id}", shop)))
        return found

    def poll_once(self) -> int:
        """One round; the number of fetch requests confirmed."""
        params = {"group_name": self.group_name, "quantity": str(self.quantity)}
        answer = self.api.call("taobao.tmc.messages.consume", params)
        messages = (answer.get("messages") or {}).get("tmc_message") or []
        if not messages:
            return 0
        found = self.references(messages)
        wanted = [(mid, ref) for mid, ref in found if ref is not None]
        results = self.publish([ref for _, ref in wanted]) if wanted else []
        done = [mid for mid, ref in found if ref is None]
        done += [mid for (mid, _), error in zip(wanted, results, strict=True) if error is None]
        if done:
            confirm = {"group_name": self.group_name, "s_message_ids": ",".join(done)}
            self.api.call("taobao.tmc.messages.confirm", confirm)
        failed = len(wanted) - sum(error is None for error in results)
        if failed:
            log.warning(
                "tmc %s: %d fetch request(s) not confirmed; TMC gives them again",
                self.channel,
                failed,
            )
        return len(wanted) - failed

    def run(self, stop: threading.Event) -> None:
        wait = self.interval
        while not stop.is_set():
            try:
                queued = self.poll_once()
                wait = self.interval
                if queued:
                    continue  # more may be waiting
            except (TransientError, ConnectorError) as exc:
                log.warning("tmc %s: %s; waiting %.0fs", self.channel, exc, wait)
                wait = min(max(wait * 2, 1.0), 60.0)
            stop.wait(wait)


class TaobaoAccount(BaseModel):
    """A seller's TOP access (``ORDERBUS_POLLERS[channel].taobao``)."""

    model_config = ConfigDict(extra="forbid")

    app_key: str = Field(min_length=1, description="the app's key")
    app_secret: str = Field(min_length=1, description="its secret")
    session: str = Field(min_length=1, description="the seller's authorization (sessionKey)")
    group_name: str = Field(default="default", description="the TMC message group")
    quantity: int = Field(default=100, ge=1, le=200, description="messages taken a call")
    endpoint: str = Field(default=TOP_ENDPOINT, description="the TOP gateway")


class TaobaoPull:
    name = "taobao-tmc"
    settings_key = "taobao"
    account = TaobaoAccount
    fetches = True

    @staticmethod
    def api(account: TaobaoAccount, client: httpx.Client) -> TopApi:
        return TopApi(
            client, account.app_key, account.app_secret, account.session, account.endpoint
        )

    def poller(self, account: TaobaoAccount, deps: PullDeps) -> TmcPuller:
        return TmcPuller(
            deps.channel,
            self.api(account, deps.client),
            deps.publish_fetches,
            group_name=account.group_name,
            quantity=account.quantity,
            interval=deps.interval,
        )

    def order_source(
        self, account: TaobaoAccount, channel: str, client: httpx.Client
    ) -> TaobaoOrders:
        return TaobaoOrders(self.api(account, client), channel)

    def fixture_orders(self, fixture: dict[str, Any]) -> list[CanonicalOrder]:
        if "response_text" not in fixture:
            return []  # TMC messages and refunds: they name trades, they are not orders
        answer = load_json(fixture["response_text"], exact_numbers=True)
        trade = answer["trade_fullinfo_get_response"]
        reference = OrderReference(str(trade["trade"]["tid"]), "tmc-fixture")
        return [read_trade(trade, reference, "taobao")]
