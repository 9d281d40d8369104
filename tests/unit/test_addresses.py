"""A one-line Chinese address comes apart into province, city and district
only where the text names them; a district alone never decides a province."""

from __future__ import annotations

import pytest

from canonical.validation import violations
from connectors.addresses import AddressParts, split_address
from tests.factories import order


@pytest.mark.parametrize(
    ("line", "parts"),
    [
        ("浙江省杭州市西湖区文三路90号3幢501", ("浙江省", "杭州市", "西湖区", "文三路90号3幢501")),
        (
            "杭州市西湖区文三路90号",
            ("浙江省", "杭州市", "西湖区", "文三路90号"),
        ),  # the city's province
        ("北京朝阳区建国路88号", ("北京市", "北京市", "朝阳区", "建国路88号")),  # a municipality
        (
            "新疆乌鲁木齐市天山区解放北路1号",
            ("新疆维吾尔自治区", "乌鲁木齐市", "天山区", "解放北路1号"),
        ),
        ("广东深圳南山科技园南路1号", ("广东省", "深圳市", None, "南山科技园南路1号")),  # no 区
        ("西湖区文三路90号", (None, None, None, "西湖区文三路90号")),  # Hangzhou's, or Nanchang's?
        ("Flat 1, 10 Downing St", (None, None, None, "Flat 1, 10 Downing St")),
    ],
)
def test_the_parts_the_text_names(line: str, parts: tuple[str | None, ...]) -> None:
    assert split_address(line) == AddressParts(*parts)


def test_what_is_missing_is_named_exactly() -> None:
    parts = split_address("广东深圳南山科技园南路1号")
    address = {
        "province": parts.province, "city": parts.city,
        "district": parts.district, "street": parts.street,
    }  # fmt: skip
    found = {v.field for v in violations(order(shipping_address=address))}
    assert "shipping_address.district" in found
    assert not {"shipping_address.province", "shipping_address.city"} & found


def test_a_long_line_is_cut_not_a_crash() -> None:
    assert split_address("浙江省" + "文" * 10_000).province == "浙江省"
