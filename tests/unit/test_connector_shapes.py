"""Shapes the platforms document or their SDK samples show, which orderbus
must read (tolerant of the form, strict about what matters): counts written
as strings, an order update without its lines, an order without its address,
phones with an extension.

Where each shape comes from: the report of issue 16 (public platform samples
fed through the connectors); the Douyin quantity as a string is the shape of
the order detail in some Doudian SDK samples; the rest are our fixtures with
the one field changed, so each test shows exactly what differs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from canonical.validation import violations
from connectors.amazon_sp import to_canonical as amazon_order
from connectors.base import ChannelConfig, ConnectorError, WebhookRequest
from connectors.douyin import to_canonical as douyin_order
from connectors.payload import canonical_order, phone_fields, whole_number
from connectors.shopify import ShopifyConnector

FIXTURES = Path(__file__).parents[2] / "connectors" / "fixtures"


def _fixture(path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / path).read_text("utf-8"))
    return data


def test_a_douyin_quantity_written_as_a_string_is_read_as_the_number() -> None:
    detail = copy.deepcopy(_fixture("douyin/trade-paid.json")["detail"])
    lines = detail["data"]["shop_order_detail"]["sku_order_list"]
    as_numbers = douyin_order(detail["data"]["shop_order_detail"], "douyin", "s")
    for line in lines:
        line["item_num"] = str(line["item_num"])
    as_strings = douyin_order(detail["data"]["shop_order_detail"], "douyin", "s")
    assert as_strings == as_numbers


@pytest.mark.parametrize("value", ["2.5", "-1", "", "\uff12", True, None, 2.0])
def test_what_is_no_whole_number_is_refused(value: Any) -> None:
    with pytest.raises(ConnectorError):
        whole_number(value, "item_num")


def test_a_shopify_update_without_line_items_is_a_status_change_not_a_refusal() -> None:
    body = _fixture("shopify/orders-create.json")
    order = json.loads(body["body_text"]) if "body_text" in body else body["body"]
    order.pop("line_items", None)
    request = WebhookRequest({"x-shopify-topic": "orders/updated"}, json.dumps(order).encode(), 0)
    result = ShopifyConnector().read(request, ChannelConfig(name="shopify", connector="shopify"))
    assert result.arrivals == () and result.ignored is None
    [change] = result.changes  # the ingest applies it to the order orderbus has
    assert (change.external_id, change.status) == (str(order["id"]), "created")  # as it says


def _amazon() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    orders = _fixture("amazon-sp-api/getOrders.json")["response"]["payload"]["Orders"]
    lines = _fixture("amazon-sp-api/getOrderItems.json")["response"]["payload"]["OrderItems"]
    return copy.deepcopy(orders[0]), lines


def test_an_amazon_order_without_its_address_ships_to_its_marketplaces_country() -> None:
    order, lines = _amazon()
    order.pop("ShippingAddress", None)
    order["MarketplaceId"] = "A1PA6795UKMFR9"  # amazon.de
    read = canonical_order(amazon_order(order, lines, "amazon"))
    assert read.shipping_address.country == "DE"


def test_an_amazon_phone_with_an_extension_is_a_phone() -> None:
    order, lines = _amazon()
    order.setdefault("ShippingAddress", {})["Phone"] = "+1 480-386-0930 ext. 73824"
    read = canonical_order(amazon_order(order, lines, "amazon"))
    assert read.customer.phone == "+1 480-386-0930 ext. 73824"
    assert "invalid_phone" not in {v.code for v in violations(read)}


@pytest.mark.parametrize(
    ("given", "phone"),
    [
        ("17012345678-1234", "17012345678-1234"),
        ("17012345678转1234", "17012345678转1234"),
        ("0571-87654321", "0571-87654321"),
        ("138****5678", None),  # masked: kept as masked_phone
        ("~AgAAAAHh7Y1cZ0123456789~", None),  # encrypted by the platform
    ],
)
def test_a_number_in_the_clear_is_the_phone_and_a_hidden_one_is_not(
    given: str, phone: str | None
) -> None:
    fields = phone_fields(given)
    assert fields["phone"] == phone
    assert fields["masked_phone"] == (None if phone else given)
