"""Amazon Selling Partner API, Orders v0: a pull connector on the REST poller.

As Amazon documents it (github.com/amzn/selling-partner-api-models,
``models/orders-api-model/ordersV0.json``):

- ``GET /orders/v0/orders?MarketplaceIds=...&LastUpdatedAfter=...`` lists the
  orders changed since a time, under ``payload.Orders``; more pages come with
  ``payload.NextToken``, asked for as ``?NextToken=`` (with the marketplaces);
- ``GET /orders/v0/orders/{orderId}/orderItems`` gives an order's lines, under
  ``payload.OrderItems``, paged the same way;
- each request carries ``x-amz-access-token``, a Login with Amazon access
  token, which lasts an hour and is renewed here from the refresh token.

Mapping: ``OrderStatus`` Pending and PendingAvailability are created;
Unshipped and PartiallyShipped paid; Shipped and InvoiceUnconfirmed shipped;
Canceled and Unfulfillable cancelled. ``ItemPrice`` is the price of the whole
line (price x quantity): the unit price is that divided by the quantity, and
the line's discount (``PromotionDiscount`` plus any rounding) makes the line
total exact. Shipping is ``ShippingPrice`` less ``ShippingDiscount``; tax is
``ItemTax`` plus ``ShippingTax``; the total is ``OrderTotal`` (Amazon omits it
for pending orders: then the lines, shipping and tax). The currency is
``OrderTotal``'s, or the lines'. Times are UTC.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from canonical.errors import EndpointUnavailable
from canonical.money import KNOWN_CURRENCIES
from canonical.order import CanonicalOrder
from connectors.base import ConnectorError, unreadable
from connectors.payload import address, amount, canonical_order, field, timestamp
from connectors.poller import PollSpec, RestPoller
from connectors.pull import PullDeps, WholeOrdersPull

LWA_ENDPOINT = "https://api.amazon.com/auth/o2/token"  # Login with Amazon
STATUSES = {
    "Pending": "created",
    "PendingAvailability": "created",
    "Unshipped": "paid",
    "PartiallyShipped": "paid",
    "Shipped": "shipped",
    "InvoiceUnconfirmed": "shipped",
    "Canceled": "cancelled",
    "Unfulfillable": "cancelled",
}


# Amazon's documented marketplace ids (SP-API "Marketplace IDs") -> country.
MARKETPLACE_COUNTRIES = {
    "ATVPDKIKX0DER": "US",
    "A2EUQ1WTGCTBG2": "CA",
    "A1AM78C64UM0Y8": "MX",
    "A2Q3Y263D00KWC": "BR",
    "A1F83G8C2ARO7P": "GB",
    "A1PA6795UKMFR9": "DE",
    "A13V1IB3VIYZZH": "FR",
    "APJ6JRA9NG5V4": "IT",
    "A1RKKUPIHCS9HS": "ES",
    "A1805IZSGTT6HS": "NL",
    "A1VC38T7YXB528": "JP",
    "A39IBJ37TRP1C6": "AU",
    "A21TJRUUN4KGV": "IN",
    "A19VAU5U5O7RUS": "SG",
}


def orders_spec(endpoint: str, marketplace_ids: list[str], **overrides: Any) -> PollSpec:
    """The poll of ``getOrders`` on a regional endpoint, e.g.
    ``https://sellingpartnerapi-na.amazon.com``. getOrders allows a request a
    minute after a burst of 20, getOrderItems one every 2 s after a burst of
    30: a request every 2 s, and 429s waited out, keeps within both."""
    settings: dict[str, Any] = {
        "url": endpoint.rstrip("/") + "/orders/v0/orders",
        "items": "$.payload.Orders",
        "since_param": "LastUpdatedAfter",
        "page_param": None,
        "next_path": "$.payload.NextToken",
        "next_token_param": "NextToken",
        "params": {"MarketplaceIds": ",".join(marketplace_ids)},
        "min_request_interval": 2.0,
    }
    settings.update(overrides)
    return PollSpec(**settings)


class LwaToken:
    """A Login with Amazon access token, renewed from the refresh token before
    it expires (they last an hour)."""

    def __init__(
        self,
        client: httpx.Client,
        refresh_token: str,
        client_id: str,
        client_secret: str,
        *,
        url: str = LWA_ENDPOINT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
            "client_secret": client_secret,
        }
        self.url = url
        self.clock = clock
        self._token: str | None = None
        self._expires = 0.0

    def __call__(self) -> str:
        if self._token is None or self.clock() >= self._expires:
            try:
                response = self.client.post(self.url, data=self.form)
            except httpx.HTTPError as exc:
                raise EndpointUnavailable(f"Login with Amazon: {exc}") from exc
            if response.status_code >= 500 or response.status_code == 429:
                raise EndpointUnavailable(f"Login with Amazon: {response.status_code}")
            if response.status_code != 200:
                raise ConnectorError(
                    401,
                    "token_refused",
                    f"Login with Amazon refused the refresh token: {response.text[:300]}",
                )
            body = response.json()
            self._token = str(body["access_token"])
            self._expires = self.clock() + float(body.get("expires_in", 3600)) - 60
        return self._token


RDT_PATH = "/tokens/2021-03-01/restrictedDataToken"
ORDERS_PATH = "/orders/v0/orders"
PII = ["buyerInfo", "shippingAddress"]


class RestrictedDataToken:
    """A Restricted Data Token for ``getOrders`` with the buyer's details and
    the shipping address (the Tokens API, ``createRestrictedDataToken``):
    without one, live Orders API answers leave them out, and every order
    would fail ``missing_contact`` / ``incomplete_address``. Asked for with
    the LWA token, kept until a minute before it expires (an hour)."""

    def __init__(
        self,
        client: httpx.Client,
        endpoint: str,
        access_token: Callable[[], str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.url = endpoint.rstrip("/") + RDT_PATH
        self.access_token = access_token
        self.clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self.issued = 0

    def __call__(self) -> str:
        if self._token is not None and self.clock() < self._expires:
            return self._token
        wanted = {
            "restrictedResources": [{"method": "GET", "path": ORDERS_PATH, "dataElements": PII}]
        }
        try:
            response = self.client.post(
                self.url, json=wanted, headers={"x-amz-access-token": self.access_token()}
            )
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"createRestrictedDataToken: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise EndpointUnavailable(f"createRestrictedDataToken: {response.status_code}")
        if response.status_code != 200:
            raise ConnectorError(
                401,
                "token_refused",
                "Amazon refused a Restricted Data Token (does the app have the role for buyer "
                f"and address data?): {response.text[:300]}",
            )
        body = response.json()
        self._token = str(body["restrictedDataToken"])
        self._expires = self.clock() + float(body.get("expiresIn", 3600)) - 60
        self.issued += 1
        return self._token


class AmazonOrdersPoller(RestPoller):
    """getOrders since the cursor (with a Restricted Data Token when given, so
    the answer carries the buyer and the address), and getOrderItems for each
    order listed (with the LWA token)."""

    def __init__(
        self,
        *args: Any,
        token: Callable[[], str],
        restricted: Callable[[], str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.token = token
        self.restricted = restricted
        self.items_url = self.spec.url.rstrip("/") + "/{order_id}/orderItems"
        self._asking: str = ""

    def _request_once(self, url: str, params: dict[str, str] | None) -> Any:
        self._asking = url
        return super()._request_once(url, params)

    def headers(self) -> dict[str, str]:
        listing = self._asking == self.spec.url and self.restricted is not None
        token = self.restricted() if listing and self.restricted else self.token()
        return {**self.spec.headers, "x-amz-access-token": token}

    def order_items(self, order_id: str) -> list[dict[str, Any]]:
        url = self.items_url.format(order_id=order_id)
        lines: list[dict[str, Any]] = []
        params: dict[str, str] | None = None
        for _ in range(100):
            data = self._request(url, params)
            lines += list(field(data, "payload", "OrderItems"))
            token = (data.get("payload") or {}).get("NextToken")
            if not token:
                return lines
            params = {"NextToken": str(token)}
        raise unreadable(f"order {order_id}: more than 100 pages of order items")

    def fields(self, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise unreadable("an order in payload.Orders is not an object")
        order_id = str(field(item, "AmazonOrderId"))
        return to_canonical(item, self.order_items(order_id), self.channel)


def _money(data: dict[str, Any] | None, where: str) -> tuple[Decimal, str | None]:
    if not data:
        return Decimal("0"), None
    return amount(field(data, "Amount"), f"{where}.Amount"), data.get("CurrencyCode")


def to_canonical(
    order: dict[str, Any], lines: list[dict[str, Any]], channel: str
) -> dict[str, Any]:
    """The canonical order's fields from a getOrders order and its getOrderItems lines."""
    status = str(field(order, "OrderStatus"))
    if status not in STATUSES:
        raise unreadable(f"OrderStatus {status!r} is not one orderbus knows")
    total, currency = _money(order.get("OrderTotal"), "OrderTotal")
    items, currency, shipping, tax = _lines(lines, currency)
    if not order.get("OrderTotal"):
        total = sum(
            (i["unit_price"] * i["quantity"] - i["discount"] for i in items), Decimal("0")
        ) + (shipping + tax)
    ship_to = order.get("ShippingAddress") or {}
    buyer = order.get("BuyerInfo") or {}
    return {
        "channel": channel,
        "shop": str(order.get("MarketplaceId") or "default"),
        "external_id": str(field(order, "AmazonOrderId")),
        "status": STATUSES[status],
        "currency": currency,
        "customer": {
            "name": buyer.get("BuyerName") or ship_to.get("Name"),
            "phone": ship_to.get("Phone"),
            "email": buyer.get("BuyerEmail"),
        },
        "shipping_address": _ship_to(ship_to, order.get("MarketplaceId")),
        "items": items,
        "shipping_fee": shipping,
        "tax": tax,
        "total": total,
        "placed_at": timestamp(field(order, "PurchaseDate"), "PurchaseDate"),
        "updated_at": timestamp(order["LastUpdateDate"], "LastUpdateDate")
        if order.get("LastUpdateDate")
        else None,
    }


def _lines(
    lines: list[dict[str, Any]], currency: str | None
) -> tuple[list[dict[str, Any]], str | None, Decimal, Decimal]:
    """The line items, the currency (the order's, else the lines'), and the
    shipping and tax the lines carry."""
    items = []
    shipping = tax = Decimal("0")
    for index, line in enumerate(lines):
        where = f"OrderItems[{index}]"
        quantity = field(line, "QuantityOrdered")
        price, line_currency = _money(line.get("ItemPrice"), f"{where}.ItemPrice")
        currency = currency or line_currency
        promotion, _ = _money(line.get("PromotionDiscount"), f"{where}.PromotionDiscount")
        places = KNOWN_CURRENCIES.get(currency or "", 2)
        unit = (price / quantity).quantize(Decimal(1).scaleb(-places)) if quantity else price
        items.append(
            {
                "sku": line.get("SellerSKU") or f"amazon-asin-{field(line, 'ASIN')}",
                "name": line.get("Title"),
                "quantity": quantity,
                "unit_price": unit,
                "discount": unit * quantity - price + promotion,
            }
        )
        shipping += _money(line.get("ShippingPrice"), f"{where}.ShippingPrice")[0]
        shipping -= _money(line.get("ShippingDiscount"), f"{where}.ShippingDiscount")[0]
        tax += _money(line.get("ItemTax"), f"{where}.ItemTax")[0]
        tax += _money(line.get("ShippingTax"), f"{where}.ShippingTax")[0]
    return items, currency, shipping, tax


def _ship_to(ship_to: dict[str, Any], marketplace: Any) -> dict[str, Any]:
    """The shipping address; without one (no Restricted Data Token), the
    marketplace's country, never the canonical default of China."""
    return address(
        country=ship_to.get("CountryCode") or MARKETPLACE_COUNTRIES.get(str(marketplace)),
        province=ship_to.get("StateOrRegion"),
        city=ship_to.get("City"),
        district=ship_to.get("District") or ship_to.get("County"),
        lines=(
            ship_to.get("AddressLine1"),
            ship_to.get("AddressLine2"),
            ship_to.get("AddressLine3"),
        ),
        postal_code=ship_to.get("PostalCode"),
    )


class AmazonAccount(BaseModel):
    """A selling partner's account (``ORDERBUS_POLLERS[channel].amazon``)."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(
        default="https://sellingpartnerapi-na.amazon.com",
        description="the SP-API region's endpoint",
    )
    marketplace_ids: list[str] = Field(
        min_length=1, description="the marketplaces whose orders are read"
    )
    refresh_token: str = Field(description="the seller's LWA refresh token")
    client_id: str = Field(description="the LWA app's client id")
    client_secret: str = Field(description="its client secret")
    restricted_data: bool = Field(
        default=True,
        description=(
            "ask for a Restricted Data Token so orders carry the buyer and the shipping address "
            "(the app needs Amazon's role for them); false: orders come without"
        ),
    )


class AmazonPull(WholeOrdersPull):
    name = "amazon-sp-api"
    settings_key = "amazon"
    account = AmazonAccount

    def poller(self, account: AmazonAccount, deps: PullDeps) -> AmazonOrdersPoller:
        token = LwaToken(
            deps.client, account.refresh_token, account.client_id, account.client_secret
        )
        spec = orders_spec(account.endpoint, account.marketplace_ids, **deps.poll_settings())
        restricted = (
            RestrictedDataToken(deps.client, account.endpoint, token)
            if account.restricted_data
            else None
        )
        return AmazonOrdersPoller(*deps.poller_args(spec), token=token, restricted=restricted)

    def fixture_orders(self, fixture: dict[str, Any]) -> list[CanonicalOrder]:
        """A getOrders answer with its orders' lines: the fixture's ``items``
        (a getOrderItems answer), else getOrderItems.json's; and where the
        fixture has an ``address`` (a getOrderAddress answer), its
        ShippingAddress in the order it names, as getOrders brings it with
        a Restricted Data Token."""
        payload = fixture["response"]["payload"]
        if "Orders" not in payload:
            return []  # getOrderItems: read with getOrders
        items = (
            fixture.get("items")
            or json.loads((FIXTURES / "getOrderItems.json").read_text("utf-8"))["response"]
        )
        lines = items["payload"]["OrderItems"]
        address = (fixture.get("address") or {}).get("payload") or {}
        orders = []
        for order in payload["Orders"]:
            if address.get("AmazonOrderId") == order["AmazonOrderId"]:
                order = {**order, "ShippingAddress": address["ShippingAddress"]}
            orders.append(canonical_order(to_canonical(order, lines, "amazon")))
        return orders


FIXTURES = Path(str(resources.files("connectors") / "fixtures" / AmazonPull.name))
