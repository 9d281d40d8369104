"""Pinduoduo (拼多多): orders pulled with ``pdd.order.number.list.increment.get``.

As Pinduoduo's open platform documents it (its official POP SDKs:
``PddOrderNumberListIncrementGetRequest`` / ``...Response``):

- The list gives whole orders (``order_sn_increment_get_response.order_sn_list``,
  each with its ``item_list``) changed between ``start_updated_at`` and
  ``end_updated_at``, Unix seconds, at most 30 minutes apart, a ``page`` of
  ``page_size`` (at most 100) at a time, with the ``total_count``.
  ``order_status`` 5 and ``refund_status`` 5 ask for every order.
- Every request is a POST to ``https://gw-api.pinduoduo.com/api/router`` with
  ``type`` (the API), ``client_id``, ``access_token``, ``timestamp`` (Unix
  seconds), ``data_type=JSON``, ``version=V1`` and ``sign``: all parameters
  sorted by name, each name followed by its value, wrapped in the client
  secret, MD5, upper-case hex.
- An error is ``{"error_response": {error_code, error_msg, sub_code, sub_msg}}``.

The poller keeps its cursor in ``poll_cursors`` like the REST poller: it reads
30-minute windows from the cursor (less ``overlap``) up to three minutes ago,
every page of each, read from the last page back (Pinduoduo's advice against
missed orders), and
moves the cursor to a window's end only once every order in it was confirmed
by the broker (the list reaches back three months: an older cursor or
``start`` begins there). A failure ends the poll; the next one reads the same window
again, and the content-derived message ids make the re-read harmless.

Mapping: amounts are yuan as JSON numbers, read exactly as written (never
through a float). ``confirm_status`` 2 (cancelled) or ``group_status`` 2 (the
group failed) is cancelled; ``refund_status`` 4 (refunded) refunded;
``order_status`` 1 (to ship) paid, 2 shipped, 3 delivered (signed for). Each
line is ``goods_price`` x ``goods_count``; shipping ``postage``; the total
``pay_amount`` (goods - discount + postage), the difference being the discount.
SKU: ``outer_id``, else ``outer_goods_id``, else ``pdd-{goods_id}-{sku_id}``.
Times are Asia/Shanghai. ``receiver_phone`` is in the clear only while the
order waits to ship; a masked one (``1387677****``) is kept as the
customer's ``masked_phone`` (the buyer is reached through Pinduoduo).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from canonical.errors import EndpointUnavailable
from canonical.order import CanonicalOrder
from connectors.base import ConnectorError, unreadable
from connectors.payload import (
    SHANGHAI,
    TRY_LATER,
    address,
    amount,
    canonical_order,
    field,
    load_json,
    phone_fields,
    sorted_params_md5,
    timestamp,
)
from connectors.poller import PollSpec
from connectors.pull import PullDeps, WholeOrdersPull
from connectors.window_poller import WindowPoller, window_spec

PDD_ENDPOINT = "https://gw-api.pinduoduo.com/api/router"
PDD_ITEMS = "$.order_sn_increment_get_response.order_sn_list"
LIST_API = "pdd.order.number.list.increment.get"
PAGE_SIZE = 100
STATUSES = {1: "paid", 2: "shipped", 3: "delivered"}
# Words of Pinduoduo's error messages that mean "try again later".


def _yuan(value: Any, where: str) -> Decimal:
    result = amount(value, where)
    if result.as_tuple().exponent < -2:  # type: ignore[operator]
        raise unreadable(f"{where} has more than two decimals: {value!r}")
    return result.quantize(Decimal("0.01"))


def status_of(order: dict[str, Any]) -> str:
    if order.get("confirm_status") == 2 or order.get("group_status") == 2:
        return "cancelled"
    if order.get("refund_status") == 4:
        return "refunded"
    status = order.get("order_status")
    if status not in STATUSES:
        raise unreadable(f"order_status {status!r} is not one orderbus knows")
    return STATUSES[status]


def to_canonical(order: dict[str, Any], channel: str, shop: str) -> dict[str, Any]:
    """The canonical order's fields from one ``order_sn_list`` order."""
    lines = order.get("item_list")
    if not isinstance(lines, list) or not lines:
        raise unreadable("the order has no item_list")
    items = []
    for index, line in enumerate(lines):
        where = f"item_list[{index}]"
        quantity = field(line, "goods_count")
        if not isinstance(quantity, int) or isinstance(quantity, bool):
            raise unreadable(f"{where}.goods_count is not an integer: {quantity!r}")
        sku = line.get("outer_id") or line.get("outer_goods_id")
        if not sku:
            sku = f"pdd-{field(line, 'goods_id')}-{line.get('sku_id')}"
        items.append(
            {
                "sku": str(sku),
                "name": line.get("goods_name"),
                "quantity": quantity,
                "unit_price": _yuan(field(line, "goods_price"), f"{where}.goods_price"),
            }
        )
    postage = _yuan(order.get("postage") or 0, "postage")
    total = _yuan(field(order, "pay_amount"), "pay_amount")
    goods = sum((i["unit_price"] * i["quantity"] for i in items), Decimal("0"))
    phone = str(order.get("receiver_phone") or "")
    updated = order.get("updated_at")
    return {
        "channel": channel,
        "shop": shop,
        "external_id": str(field(order, "order_sn")),
        "status": status_of(order),
        "currency": "CNY",
        "customer": {
            "name": order.get("receiver_name") or None,
            **phone_fields(phone),
        },
        "shipping_address": address(
            country="CN",
            province=order.get("province"),
            city=order.get("city"),
            district=order.get("town"),
            lines=(order.get("address"),),
            postal_code=None,
        ),
        "items": items,
        "shipping_fee": postage,
        "order_discount": goods + postage - total,
        "total": total,
        "placed_at": timestamp(field(order, "created_time"), "created_time", SHANGHAI),
        "updated_at": timestamp(updated, "updated_at", SHANGHAI) if updated else None,
        "note": order.get("buyer_memo") or None,
    }


def signed_form(
    api: str,
    params: dict[str, str],
    client_id: str,
    client_secret: str,
    access_token: str,
    now: float,
) -> dict[str, str]:
    """A Pinduoduo API call's body: the system parameters, ``params``, and
    the TOP-style signature over all of them."""
    form = {
        "type": api,
        "client_id": client_id,
        "access_token": access_token,
        "timestamp": str(int(now)),
        "data_type": "JSON",
        "version": "V1",
        **params,
    }
    form["sign"] = sorted_params_md5(form, client_secret)
    return form


def read_answer(api: str, content: bytes) -> dict[str, Any]:
    """The answer as a dict; a busy or rate-limit refusal is EndpointUnavailable,
    any other ConnectorError naming Pinduoduo's code and message."""
    answer = load_json(content, exact_numbers=True)
    if not isinstance(answer, dict):
        raise EndpointUnavailable(f"Pinduoduo {api}: the answer is not a JSON object")
    error = answer.get("error_response")
    if isinstance(error, dict):
        detail = (
            f"Pinduoduo {api} answered {error.get('error_code')}: {error.get('error_msg')} "
            f"({error.get('sub_code') or '-'}: {error.get('sub_msg') or '-'})"
        )
        words = f"{error.get('error_msg')} {error.get('sub_msg')} {error.get('sub_code')}"
        if TRY_LATER.search(words):
            raise EndpointUnavailable(detail)
        raise ConnectorError(422, "platform_refused", detail)
    return answer


class PinduoduoPoller(WindowPoller):
    """The order increment list in 30-minute windows since the cursor."""

    def __init__(
        self,
        *args: Any,
        client_id: str,
        client_secret: str,
        access_token: str,
        shop: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_token = access_token
        self.shop = shop

    def call(self, api: str, params: dict[str, str]) -> dict[str, Any]:
        form = signed_form(
            api, params, self.client_id, self.client_secret, self.access_token, self.now()
        )
        return self.post_signed("Pinduoduo", api, read_answer, json=form)

    def fields(self, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise unreadable("an order in order_sn_list is not an object")
        return to_canonical(item, self.channel, self.shop)

    def page(self, start: datetime, end: datetime, number: int) -> tuple[list[Any], int]:
        params = {
            "start_updated_at": str(int(start.timestamp())),
            "end_updated_at": str(int(end.timestamp())),
            "order_status": "5",
            "refund_status": "5",
            "is_lucky_flag": "0",
            "page": str(number),
            "page_size": str(PAGE_SIZE),
        }
        data = field(self.call(LIST_API, params), "order_sn_increment_get_response")
        total = int(data.get("total_count") or 0)
        return list(data.get("order_sn_list") or []), -(-total // PAGE_SIZE)


def pdd_spec(endpoint: str = PDD_ENDPOINT, **overrides: Any) -> PollSpec:
    return window_spec(endpoint, PDD_ITEMS, **overrides)


class PinduoduoAccount(BaseModel):
    """A Pinduoduo shop's API access (``ORDERBUS_POLLERS[channel].pinduoduo``)."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1, description="the app's client_id")
    client_secret: str = Field(min_length=1, description="its client_secret")
    access_token: str = Field(min_length=1, description="the shop's access token")
    shop: str = Field(min_length=1, max_length=200, description="the mall id, the orders' shop")
    endpoint: str = Field(default=PDD_ENDPOINT, description="the API gateway")


class PinduoduoPull(WholeOrdersPull):
    name = "pinduoduo"
    settings_key = "pinduoduo"
    account = PinduoduoAccount

    def poller(self, account: PinduoduoAccount, deps: PullDeps) -> PinduoduoPoller:
        spec = pdd_spec(account.endpoint, **deps.poll_settings())
        return PinduoduoPoller(
            *deps.poller_args(spec),
            client_id=account.client_id,
            client_secret=account.client_secret,
            access_token=account.access_token,
            shop=account.shop,
        )

    def fixture_orders(self, fixture: dict[str, Any]) -> list[CanonicalOrder]:
        answer = load_json(fixture["response_text"], exact_numbers=True)
        orders = answer["order_sn_increment_get_response"]["order_sn_list"]
        return [canonical_order(to_canonical(o, "pinduoduo", "mall")) for o in orders]
