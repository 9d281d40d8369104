"""The Amazon SP-API Orders pull connector, against Amazon's own response
examples (connectors/fixtures/amazon-sp-api, from the official API models)."""

from __future__ import annotations

import json
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from canonical.order import CanonicalOrder
from canonical.validation import violations
from connectors.amazon_sp import (
    AmazonOrdersPoller,
    LwaToken,
    RestrictedDataToken,
    orders_spec,
    to_canonical,
)
from connectors.payload import canonical_order
from infra.database import upgrade

FIXTURES = Path(str(resources.files("connectors") / "fixtures" / "amazon-sp-api"))
ENDPOINT = "https://sellingpartnerapi-na.amazon.com"


def example(name: str) -> dict[str, Any]:
    fixture = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    assert fixture["source"].startswith("Amazon's Selling Partner API models")
    response: dict[str, Any] = fixture["response"]
    return response


RDT = "Atz.sprdt|IQEBLjAsAhRmHjNgHpi0U-Dme37rR6CuUpSR-example"
LWA = "Atza|IwEB-example"


def without_pii(answer: dict[str, Any]) -> dict[str, Any]:
    """getOrders as Amazon answers it without a Restricted Data Token: no
    buyer details, and of the address only what is not personal."""
    stripped: dict[str, Any] = json.loads(json.dumps(answer))
    for order in stripped["payload"]["Orders"]:
        order.pop("BuyerInfo", None)
        address = order.get("ShippingAddress") or {}
        kept = ("City", "StateOrRegion", "PostalCode", "CountryCode")
        order["ShippingAddress"] = {k: v for k, v in address.items() if k in kept}
    return stripped


class SellingPartnerApi:
    """Login with Amazon, the Tokens API and the Orders API, answering with
    Amazon's examples; getOrders withholds the buyer's data without an RDT."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.tokens_issued = 0
        self.rdts_issued = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "api.amazon.com":
            self.tokens_issued += 1
            return httpx.Response(200, json={"access_token": LWA, "expires_in": 3600})
        path, params = request.url.path, request.url.params
        token = request.headers["x-amz-access-token"]
        if path == "/tokens/2021-03-01/restrictedDataToken":
            assert token == LWA
            asked = json.loads(request.content)["restrictedResources"]
            assert asked == [
                {
                    "method": "GET",
                    "path": "/orders/v0/orders",
                    "dataElements": ["buyerInfo", "shippingAddress"],
                }
            ]
            self.rdts_issued += 1
            return httpx.Response(200, json={"restrictedDataToken": RDT, "expiresIn": 3600})
        if path == "/orders/v0/orders":
            assert token in (LWA, RDT)
            if "NextToken" in params:
                return httpx.Response(200, json={"payload": {"Orders": []}})
            full = example("getOrders")
            return httpx.Response(200, json=full if token == RDT else without_pii(full))
        assert token == LWA
        if path.endswith("/orderItems"):
            if "NextToken" in params:
                return httpx.Response(200, json={"payload": {"OrderItems": []}})
            return httpx.Response(200, json=example("getOrderItems"))
        return httpx.Response(404)


@pytest.fixture
def engine(sqlite_engine: Engine) -> Engine:
    upgrade(str(sqlite_engine.url))
    return sqlite_engine


def test_a_poll_lists_changed_orders_fetches_their_lines_and_maps_them(engine: Engine) -> None:
    api = SellingPartnerApi()
    client = httpx.Client(transport=httpx.MockTransport(api))
    published: list[CanonicalOrder] = []

    def publish(orders: list[CanonicalOrder], ids: list[str]) -> list[Exception | None]:
        published.extend(orders)
        return [None] * len(orders)

    poller = AmazonOrdersPoller(
        "amazon-us",
        orders_spec(ENDPOINT, ["ATVPDKIKX0DER"], start="2017-01-01T00:00:00+00:00"),
        None,
        engine,
        client,
        publish,
        lambda reason, detail, item: pytest.fail(f"{reason}: {detail}"),
        sleep=lambda s: None,
        token=(lwa := LwaToken(client, "Atzr|refresh", "amzn1.application-oa2-client.x", "secret")),
        restricted=RestrictedDataToken(client, ENDPOINT, lwa),
    )
    report = poller.poll_once()
    [order] = published
    assert order.external_id == "902-3159896-1390916"
    assert order.status.value == "created"  # OrderStatus Pending
    assert order.shop == "ATVPDKIKX0DER"
    assert order.customer.email == "user@example.com"
    assert (order.shipping_address.city, order.shipping_address.country) == ("Canton", "US")
    assert [(i.sku, i.quantity) for i in order.items] == [("CBA_OTF_1", 1), ("CBA_OTF_5", 2)]
    # Amazon's example prices its lines in JPY with cents; ItemPrice is per line.
    assert order.currency == "JPY"
    assert [i.line_total for i in order.items] == [Decimal("25.99"), Decimal("17.95")]
    assert order.shipping_fee == Decimal("1.26")
    assert order.total == Decimal("45.20")  # no OrderTotal for a pending order: the lines
    # ...which the router's validation refuses, naming the reason, as it should.
    assert "too_many_decimals" in {v.code for v in violations(order)}
    assert report.cursor == "2017-01-20T19:49:35+00:00"

    first, second = [r for r in api.requests if r.url.path == "/orders/v0/orders"]
    assert first.url.params["MarketplaceIds"] == "ATVPDKIKX0DER"
    assert first.url.params["LastUpdatedAfter"] == "2016-12-31T23:55:00Z"
    assert second.url.params["NextToken"] == "2YgYW55IGNhcm5hbCBwbGVhc3VyZS4"
    assert api.tokens_issued == 1  # one access token for the whole poll
    assert api.rdts_issued == 1  # and one restricted data token for the order lists


def test_an_unshipped_order_with_its_total_maps_and_passes_validation() -> None:
    """An order of orderbus's making, shaped as the examples above, in USD."""
    order = {
        "AmazonOrderId": "113-0000000-0000001",
        "PurchaseDate": "2026-11-11T03:00:00Z",
        "LastUpdateDate": "2026-11-11T03:05:00Z",
        "OrderStatus": "Unshipped",
        "MarketplaceId": "ATVPDKIKX0DER",
        "OrderTotal": {"CurrencyCode": "USD", "Amount": "52.47"},
        "ShippingAddress": {
            "Name": "Jane Roe",
            "AddressLine1": "1 Cross St.",
            "City": "Canton",
            "StateOrRegion": "MI",
            "PostalCode": "48817",
            "CountryCode": "US",
            "Phone": "+1 734-555-0100",
        },
        "BuyerInfo": {"BuyerEmail": "buyer@marketplace.amazon.com"},
    }
    lines = [
        {
            "ASIN": "B00EXAMPLE",
            "SellerSKU": "MUG-01",
            "QuantityOrdered": 3,
            "ItemPrice": {"CurrencyCode": "USD", "Amount": "45.00"},
            "PromotionDiscount": {"CurrencyCode": "USD", "Amount": "5.00"},
            "ItemTax": {"CurrencyCode": "USD", "Amount": "2.48"},
            "ShippingPrice": {"CurrencyCode": "USD", "Amount": "9.99"},
        }
    ]
    canonical = canonical_order(to_canonical(order, lines, "amazon-us"))
    assert canonical.status.value == "paid"
    assert canonical.items[0].unit_price == Decimal("15.00")
    assert canonical.items[0].line_total == Decimal("40.00")
    assert (canonical.shipping_fee, canonical.tax, canonical.total) == (
        Decimal("9.99"),
        Decimal("2.48"),
        Decimal("52.47"),
    )
    assert violations(canonical) == []


def test_without_a_restricted_data_token_the_orders_come_without_the_buyer(engine: Engine) -> None:
    """What a live account answers without an RDT: no buyer, no street, so
    the order cannot reach the systems (validation says why)."""
    api = SellingPartnerApi()
    client = httpx.Client(transport=httpx.MockTransport(api))
    published: list[CanonicalOrder] = []

    def publish(orders: list[CanonicalOrder], ids: list[str]) -> list[Exception | None]:
        published.extend(orders)
        return [None] * len(orders)

    poller = AmazonOrdersPoller(
        "amazon-us",
        orders_spec(ENDPOINT, ["ATVPDKIKX0DER"], start="2017-01-01T00:00:00+00:00"),
        None,
        engine,
        client,
        publish,
        lambda reason, detail, item: pytest.fail(f"{reason}: {detail}"),
        sleep=lambda s: None,
        token=LwaToken(client, "Atzr|refresh", "amzn1.application-oa2-client.x", "secret"),
    )
    poller.poll_once()
    assert api.rdts_issued == 0
    [order] = published
    assert order.customer.email is None and order.shipping_address.street is None
    assert "incomplete_address" in {v.code for v in violations(order)}
