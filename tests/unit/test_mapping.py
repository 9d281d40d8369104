"""The configurable field mapping (connectors/mapping.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from connectors.base import ConnectorError
from connectors.mapping import FieldMapping, MappingError
from connectors.payload import canonical_order

ERP_MAPPING: dict[str, Any] = {
    "external_id": "$.orderNo",
    "status": {"path": "$.state", "values": {"10": "created", "20": "paid", "40": "shipped"}},
    "currency": {"value": "CNY"},
    "customer.name": "$.buyer.name",
    "customer.phone": "$.buyer['mobile no']",
    "shipping_address.province": "$.receiver.province",
    "shipping_address.city": "$.receiver.city",
    "shipping_address.district": "$.receiver.district",
    "shipping_address.street": "$.receiver.detail",
    "items": {
        "path": "$.lines[*]",
        "fields": {
            "sku": "$.code",
            "name": "$.title",
            "quantity": "$.qty",
            "unit_price": {"path": "$.priceFen", "minor_units": True},
        },
    },
    "shipping_fee": {"path": "$.freightFen", "minor_units": True, "default": 0},
    "total": {"path": "$.payFen", "minor_units": True},
    "placed_at": "$.createTime",
    "updated_at": "$.modifyTimeMs",
}

ERP_ORDER: dict[str, Any] = {
    "orderNo": "SO-2026-000123",
    "state": 20,
    "buyer": {"name": "周九", "mobile no": "13800138000"},
    "receiver": {
        "province": "江苏省",
        "city": "苏州市",
        "district": "工业园区",
        "detail": "星湖街 328 号",
    },
    "lines": [
        {"code": "RICE-5KG", "title": "大米 5kg", "qty": 2, "priceFen": 4990},
        {"code": "OIL-1L", "title": "花生油 1L", "qty": "1", "priceFen": "3550"},
    ],
    "payFen": 14030,
    "createTime": "2026-11-11 08:00:00",
    "modifyTimeMs": 1762819260000,
}


def test_an_erp_order_maps_onto_the_canonical_order() -> None:
    order = canonical_order(FieldMapping(ERP_MAPPING).apply(ERP_ORDER, "erp"))
    assert order.external_id == "SO-2026-000123"
    assert order.status.value == "paid"
    assert order.customer.phone == "13800138000"
    assert order.shipping_address.city == "苏州市"
    assert [(i.sku, i.quantity, i.unit_price) for i in order.items] == [
        ("RICE-5KG", 2, Decimal("49.90")),
        ("OIL-1L", 1, Decimal("35.50")),
    ]
    assert order.total == Decimal("140.30")  # fen to yuan, exactly
    assert order.shipping_fee == Decimal("0")
    assert order.placed_at.isoformat() == "2026-11-11T08:00:00+08:00"
    assert order.updated_at is not None and order.updated_at.utcoffset() is not None
    assert order.updated_at.timestamp() == 1762819260


def test_a_missing_required_value_names_the_field_and_the_path() -> None:
    data = {**ERP_ORDER}
    del data["payFen"]
    with pytest.raises(ConnectorError, match=r"total: nothing at \$\.payFen"):
        FieldMapping(ERP_MAPPING).apply(data, "erp")


def test_a_code_outside_the_values_table_is_named() -> None:
    with pytest.raises(ConnectorError, match="status: 99"):
        FieldMapping(ERP_MAPPING).apply({**ERP_ORDER, "state": 99}, "erp")


def test_a_float_amount_in_minor_units_is_refused() -> None:
    lines = [{"code": "A", "qty": 1, "priceFen": 12.5}]
    with pytest.raises(ConnectorError, match="fen/cents"):
        FieldMapping(ERP_MAPPING).apply({**ERP_ORDER, "lines": lines}, "erp")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "$.c"}, "unknown fields"),
        ({"total": "orderNo"}, "must start with"),
        ({"external_id": "$.a[*]"}, "only for items"),
        ({"items": {"path": "$.lines", "fields": {}}}, "must end with"),
        ({"total": {"path": "$.x", "value": 1}}, "path, or an object"),
    ],
)
def test_a_wrong_mapping_is_refused_when_loaded(change: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError, match=message):
        FieldMapping({**ERP_MAPPING, **change})
