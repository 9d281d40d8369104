"""Offline-store file import: encodings, headers, mappings, bad rows, and no
second effect from importing a file again."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from canonical.order import CanonicalOrder
from connectors.file_columns import ColumnMapping, FileImportError, RowError
from connectors.file_import import (
    import_message_id,
    parse_table,
    run_import,
)
from connectors.publishing import order_message
from infra.settings import Settings
from infra.spreadsheets import read_table
from infra.tables import arrivals, outbox
from infra.topology import build_topology
from router.service import RouterService
from tests.factories import delivery_for

HEADER = "订单号,下单时间,手机号,收货人,省份,城市,区县,详细地址,商品编码,商品名称,数量,单价,运费,实付金额,订单状态"
ADDRESS = "浙江省,杭州市,西湖区,文三路 90 号"
GOOD_AND_BAD = [
    HEADER,
    f"POS-1001,2026-11-11 10:00:00,13800138000,张三,{ADDRESS},TEA-LJ-250,西湖龙井 250g,2,168.00,0,336.00,已付款",
    f"POS-1002,2026/11/11 10:05,13900139000,李四,{ADDRESS},CUP-GL-01,玻璃杯,1,39.90,0,39.90,已付款",
    f"POS-1003,2026-11-11 10:09,13700137000,王五,{ADDRESS},TEA-LJ-250,西湖龙井 250g,两,168.00,0,168.00,已付款",
    f"POS-1004,2026-11-11 10:12,13600136000,赵六,{ADDRESS},TEA-BLC-100,碧螺春 100g,1,88.00,0,98.00,已付款",
    f"POS-1004,2026-11-11 10:12,13600136000,赵六,{ADDRESS},CUP-GL-01,玻璃杯,1,10.00,0,98.00,已付款",
    f"POS-1005,2026-11-11 10:20,13500135000,钱七,{ADDRESS},,没有编码的商品,1,20.00,0,20.00,已付款",
    f"POS-1006,2026-11-11 10:31,13400134000,孙八,{ADDRESS},TEA-LJ-250,西湖龙井 250g,1,168.00,12.00,180.00,已发货",
]


def write(tmp_path: Path, lines: list[str], encoding: str, name: str = "pos.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


class Published:
    """Stands in for the broker: what was published, under which ids."""

    def __init__(self) -> None:
        self.orders: list[tuple[str, CanonicalOrder]] = []

    def __call__(self, orders: list[CanonicalOrder], ids: list[str]) -> list[Exception | None]:
        self.orders += list(zip(ids, orders, strict=True))
        return [None] * len(orders)


def test_a_gbk_file_with_chinese_headers_imports_the_good_rows_and_reports_the_bad(
    tmp_path: Path, sqlite_engine: Engine
) -> None:
    path = write(tmp_path, GOOD_AND_BAD, "gbk")
    published, recorded = Published(), []
    report = run_import(path, "store-hz01", published, lambda e, row: recorded.append((e, row)))

    assert report.encoding == "gb18030"
    assert [o.external_id for _, o in published.orders] == [
        "POS-1001",
        "POS-1002",
        "POS-1004",
        "POS-1006",
    ]
    assert [(e.row, e.reason) for e in report.errors] == [
        (4, "invalid_quantity"),
        (7, "missing_sku"),
    ]
    assert "'数量'" in report.errors[0].detail and "'两'" in report.errors[0].detail
    assert [e.row for e, _ in recorded] == [4, 7]
    assert recorded[0][1].startswith("POS-1003,")  # the row itself is kept with the record
    orders = {o.external_id: o for _, o in published.orders}
    assert [(i.sku, i.quantity) for i in orders["POS-1004"].items] == [
        ("TEA-BLC-100", 1),
        ("CUP-GL-01", 1),
    ]
    assert orders["POS-1006"].status.value == "shipped"
    assert orders["POS-1006"].shipping_fee == Decimal("12.00")
    assert orders["POS-1001"].customer.phone == "13800138000"
    assert orders["POS-1001"].shipping_address.city == "杭州市"
    assert orders["POS-1001"].placed_at.isoformat() == "2026-11-11T10:00:00+08:00"
    assert "row 4: invalid_quantity" in report.summary()

    # Importing it again: the same message ids, and through the router no second effect.
    again = Published()
    run_import(path, "store-hz01", again, lambda e, row: None)
    assert [i for i, _ in again.orders] == [i for i, _ in published.orders]

    from infra.database import upgrade

    upgrade(str(sqlite_engine.url))
    router = RouterService(sqlite_engine, build_topology(Settings(namespace="t")))
    for message_id, order in published.orders + again.orders:
        router.handle(delivery_for(order, message_id=message_id))
    with sqlite_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(arrivals)) == 4
        # paid orders go to three systems, the shipped one to finance and notification
        assert conn.scalar(select(func.count()).select_from(outbox)) == 3 * 3 + 2


def test_message_ids_follow_the_content(tmp_path: Path) -> None:
    first, changed = Published(), Published()
    run_import(write(tmp_path, GOOD_AND_BAD, "gbk"), "store-hz01", first, lambda e, r: None)
    edited = [line.replace("39.90,0,39.90", "35.00,0,35.00") for line in GOOD_AND_BAD]
    run_import(write(tmp_path, edited, "gbk", "b.csv"), "store-hz01", changed, lambda e, r: None)
    ids_first = dict((o.external_id, i) for i, o in first.orders)
    ids_changed = dict((o.external_id, i) for i, o in changed.orders)
    assert ids_first["POS-1001"] == ids_changed["POS-1001"]
    assert ids_first["POS-1002"] != ids_changed["POS-1002"]  # a correction is a new revision


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "utf-16"])
def test_encodings_are_detected(tmp_path: Path, encoding: str) -> None:
    lines = [*GOOD_AND_BAD[:2], GOOD_AND_BAD[2].replace("李四", "李𠀀")]  # a GB18030-only name
    table = read_table(write(tmp_path, lines, encoding))
    assert table.encoding == encoding
    assert table.rows[1][1][3] == "李𠀀"


def test_english_headers_and_an_xlsx_workbook(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Order No", "Date", "Mobile", "Province", "City", "District", "Address",
                  "SKU", "Quantity", "Unit price", "Total"])  # fmt: skip
    sheet.append([1001, datetime(2026, 11, 11, 9, 30), "13800138000", "上海市", "上海市",
                  "浦东新区", "世纪大道 100 号", "MUG-01", 3, 25.5, 76.5])  # fmt: skip
    path = tmp_path / "export.xlsx"
    book.save(path)
    parsed = parse_table(read_table(path), ColumnMapping(), "store-sh01")
    assert parsed.errors == []
    [(order, rows)] = parsed.orders
    assert rows == [2]
    assert order.external_id == "1001"  # the spreadsheet's number 1001, not "1001.0"
    assert order.total == Decimal("76.5")
    assert order.items[0].unit_price == Decimal("25.5")
    assert order.placed_at.isoformat() == "2026-11-11T09:30:00+08:00"
    assert order.status.value == "paid"  # a till sale is paid unless the file says otherwise


def test_a_mapping_names_columns_and_fills_what_the_file_lacks(tmp_path: Path) -> None:
    mapping_file = tmp_path / "mapping.json"
    mapping_file.write_text(
        json.dumps(
            {
                "columns": {"external_id": "小票", "sku": "条形码", "unit_price": "金额"},
                "defaults": {
                    "province": "浙江省",
                    "city": "杭州市",
                    "district": "上城区",
                    "street": "湖滨路 1 号(门店自提)",
                    "phone": "13800000000",
                },
            },
            ensure_ascii=False,
        ),
        "utf-8",
    )
    lines = ["小票,条形码,数量,金额,时间", "T-9,6901234567890,2,5.00,2026-11-11 12:00"]
    mapping = ColumnMapping.load(mapping_file)
    parsed = parse_table(read_table(write(tmp_path, lines, "utf-8")), mapping, "store-hz02")
    assert parsed.errors == []
    [(order, _)] = parsed.orders
    assert order.items[0].sku == "6901234567890"
    assert order.total == Decimal("10.00")  # no total column: the lines are the order
    assert order.shipping_address.district == "上城区"


def test_a_file_without_a_required_column_is_refused_with_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, ["订单号,数量,单价", "A,1,2"], "utf-8")
    with pytest.raises(FileImportError, match="no column for sku"):
        parse_table(read_table(path), ColumnMapping(), "store-x")


def test_one_bad_row_keeps_its_whole_order_out(tmp_path: Path) -> None:
    lines = [GOOD_AND_BAD[0], GOOD_AND_BAD[4], GOOD_AND_BAD[5].replace(",10.00,", ",ten,")]
    parsed = parse_table(read_table(write(tmp_path, lines, "utf-8")), ColumnMapping(), "s")
    assert parsed.orders == []
    assert [(e.row, e.reason) for e in parsed.errors] == [
        (2, "order_incomplete"),
        (3, "invalid_amount"),
    ]


def test_business_rules_are_reported_on_the_row(tmp_path: Path) -> None:
    lines = [GOOD_AND_BAD[0], GOOD_AND_BAD[1].replace("13800138000", "12345")]
    parsed = parse_table(read_table(write(tmp_path, lines, "utf-8")), ColumnMapping(), "s")
    assert parsed.orders == []
    assert [(e.row, e.reason) for e in parsed.errors] == [(2, "invalid_phone")]


def test_the_message_is_the_one_the_router_reads() -> None:
    order = CanonicalOrder.model_validate(
        {
            "channel": "store-hz01",
            "external_id": "POS-1",
            "status": "paid",
            "currency": "CNY",
            "items": [{"sku": "A", "quantity": 1, "unit_price": "1.00"}],
            "total": "1.00",
            "placed_at": "2026-11-11T10:00:00+08:00",
        }
    )
    message = order_message(build_topology(Settings(namespace="t")), "store-hz01", order, "x.1")
    assert message.message_id == "x.1"
    assert message.routing_key == "ingest.store-hz01"
    assert import_message_id("store-hz01", order).startswith("store-hz01.import.")


def test_a_bad_channel_name_is_refused_before_reading(tmp_path: Path) -> None:
    with pytest.raises(FileImportError, match="channel 'Store X'"):
        run_import(tmp_path / "absent.csv", "Store X", Published(), lambda e, r: None)


def test_row_errors_read_as_a_person_would_say_them() -> None:
    assert str(RowError(4, "invalid_quantity", "'数量' '两' is not a whole number")) == (
        "row 4: invalid_quantity: '数量' '两' is not a whole number"
    )


def test_an_address_in_one_cell_is_read_into_its_parts(tmp_path: Path) -> None:
    lines = [
        "订单号,下单时间,手机号,收货人,收货地址,商品编码,数量,单价,实付金额",
        "POS-2001,2026-11-11 10:00:00,0571-87654321,张三,浙江省杭州市西湖区文三路90号,TEA,1,10.00,10.00",
    ]
    parsed = parse_table(read_table(write(tmp_path, lines, "gbk")), ColumnMapping(), "store")
    assert parsed.errors == []
    [(order, _)] = parsed.orders
    a = order.shipping_address
    assert (a.province, a.city, a.district, a.street) == (
        "浙江省",
        "杭州市",
        "西湖区",
        "文三路90号",
    )
    assert order.customer.phone == "0571-87654321"  # a landline is a phone


# -- after-sales in the file ------------------------------------------------------

REFUND_HEADER = HEADER + ",售后单号,售后类型,售后状态,退货数量,退款金额"
TWO_LINES = [
    f"POS-2001,2026-11-11 10:12,13600136000,赵六,{ADDRESS},TEA-BLC-100,碧螺春 100g,2,88.00,0,186.00,已完成",
    f"POS-2001,2026-11-11 10:12,13600136000,赵六,{ADDRESS},CUP-GL-01,玻璃杯,1,10.00,0,186.00,已完成",
]  # fmt: skip


def test_refund_columns_become_after_sales_of_their_lines(tmp_path: Path) -> None:
    lines = [
        REFUND_HEADER,
        TWO_LINES[0] + ",TK-9,退货退款,已同意,1,88.00",
        TWO_LINES[1] + ",TK-9,退货退款,已同意,,10.00",  # no units: the whole line
    ]
    parsed = parse_table(read_table(write(tmp_path, lines, "utf-8")), ColumnMapping(), "s")
    assert parsed.errors == []
    [(order, _)] = parsed.orders
    [sale] = order.after_sales
    assert (sale.id, sale.kind.value, sale.status.value, sale.amount) == (
        "TK-9", "return", "agreed", Decimal("98.00"),
    )  # fmt: skip
    assert [(x.sku, x.quantity, x.amount) for x in sale.lines] == [
        ("TEA-BLC-100", 1, Decimal("88.00")), ("CUP-GL-01", 1, Decimal("10.00")),
    ]  # fmt: skip
    # A row without an after-sale id has none; the file without the columns neither.
    plain = parse_table(
        read_table(write(tmp_path, [HEADER, *TWO_LINES], "utf-8", "p.csv")), ColumnMapping(), "s"
    )
    assert plain.orders[0][0].after_sales == []


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        (",TK-1,换货,已同意,1,88.00", "unknown_after_sale_kind"),
        (",TK-1,退款,审核中吧,1,88.00", "unknown_after_sale_status"),
        (",TK-1,退款,已退款,1,八十八", "invalid_amount"),
        (",TK-1,退款,已退款,3,88.00", "more_than_paid"),  # 3 of the 2 units bought
    ],
)
def test_a_bad_after_sale_cell_names_its_row(tmp_path: Path, cells: str, reason: str) -> None:
    lines = [REFUND_HEADER, TWO_LINES[0] + ",,,,,", TWO_LINES[1] + ",,,,,"]
    lines[1] = TWO_LINES[0] + cells
    parsed = parse_table(read_table(write(tmp_path, lines, "utf-8")), ColumnMapping(), "s")
    assert parsed.orders == []
    assert (2, reason) in [(e.row, e.reason) for e in parsed.errors]
