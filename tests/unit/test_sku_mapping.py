"""SKU mapping, end to end on SQLite: an order with a bundle and a pack of
six from a channel that requires mappings is stopped at the ERP's door as
``sku_not_mapped`` naming its SKUs; the dry run shows it would pass with a
proposed mapping; the mapping and a material code are saved through the API;
the passing dead letter is retried; the ERP gets our codes and quantities,
with the line prices split to the fen and the total unchanged."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from admin_api.app import create_admin_app
from admin_api.auth import KeyAuth
from admin_api.deadletters import DeadLetterRecorder
from canonical.envelope import H_ATTEMPT, H_DETAIL, H_REASON, H_SOURCE_QUEUE
from canonical.errors import SkuNotMapped
from canonical.mapping import Component, MappingSet, map_order, split_exactly
from infra.mappings import MappingCache
from infra.messages import H_ORIGINAL_EXCHANGE, H_ORIGINAL_ROUTING_KEY
from infra.settings import Settings
from infra.tables import dead_letters, inbox, outbox
from infra.topology import build_topology
from infra.transports import HttpxTransport
from router.service import RouterService
from targets.consumers import DeliveryConsumer
from targets.delivery import HttpDelivery, RetryPolicy
from tests.factories import delivery_for, delivery_from_outbox, order

ROOT = {"Authorization": "Bearer mapping-root-token-0123456789"}
BUNDLE_LINE = {"sku": "DY-BUNDLE-3", "name": "茶具三件套", "quantity": 2, "unit_price": "33.33"}
LINES = [
    {**BUNDLE_LINE, "discount": "0.01"},
    {"sku": "DY-WATER-6", "name": "矿泉水 6 瓶装", "quantity": 1, "unit_price": "10.00"},
]
BUNDLE = {
    "channel": "douyin",
    "platform_sku": "DY-BUNDLE-3",
    "components": [{"sku": "TEA", "quantity": 1, "share": 3}, {"sku": "CUP", "quantity": 2}],
}


class Erp:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(json.loads(request.content))
        return httpx.Response(201)


def test_split_exactly_adds_up_to_the_fen() -> None:
    assert split_exactly(Decimal("10.00"), [1, 1, 1], 2) == [
        Decimal("3.34"), Decimal("3.33"), Decimal("3.33"),
    ]  # fmt: skip
    assert sum(split_exactly(Decimal("66.65"), [3, 2], 2)) == Decimal("66.65")
    with pytest.raises(ValueError):
        split_exactly(Decimal("1"), [0, 0], 2)


def test_a_required_channel_refuses_an_unmapped_sku_by_name() -> None:
    tables = MappingSet(1, {("", "", "A"): (Component("X"),)}, required=frozenset({"douyin"}))
    with pytest.raises(SkuNotMapped, match="DY-WATER-6"):
        map_order(order(channel="douyin", items=LINES, total="82.15"), tables, "finance")
    # elsewhere an unmapped SKU goes through as it is
    passed = map_order(order(channel="jd", items=LINES, total="82.15"), tables, "finance")
    assert [i.sku for i in passed.items] == ["DY-BUNDLE-3", "DY-WATER-6"]


def test_an_unmapped_order_is_stuck_then_mapped_and_delivered_once(sqlite_engine: Engine) -> None:
    topology = build_topology(Settings(namespace="t"))
    RouterService(sqlite_engine, topology).handle(
        delivery_for(order(channel="douyin", items=LINES, total="82.15"), message_id="dy.1")
    )
    erp = Erp()
    finance = DeliveryConsumer(
        "finance",
        sqlite_engine,
        HttpDelivery(
            "finance", "http://erp.test/orders",
            HttpxTransport(httpx.Client(transport=httpx.MockTransport(erp))), RetryPolicy(1, 0, 0),
        ),
        MappingCache(sqlite_engine, {"douyin"}, interval=0),
    )  # fmt: skip
    with sqlite_engine.connect() as conn:
        row = dict(
            conn.execute(select(outbox).where(outbox.c.message_id.like("%-finance")))
            .mappings()
            .one()
        )
    with pytest.raises(SkuNotMapped) as stuck:
        finance.handle(delivery_from_outbox(row, "t.finance"))
    assert erp.received == []  # nothing reached the ERP
    DeadLetterRecorder(sqlite_engine).handle(
        delivery_from_outbox(
            row,
            "t.finance.dlq",
            {
                H_ATTEMPT: 1, H_REASON: stuck.value.reason, H_DETAIL: stuck.value.detail,
                H_SOURCE_QUEUE: "t.finance", H_ORIGINAL_EXCHANGE: "t.orders",
                H_ORIGINAL_ROUTING_KEY: "deliver.finance",
            },
        )
    )  # fmt: skip

    app = create_admin_app(
        sqlite_engine,
        KeyAuth(sqlite_engine, {"root": ROOT["Authorization"].split()[1]}),
        topology,
        mapping_required=frozenset({"douyin"}),
    )
    with TestClient(app) as api:
        before = api.post("/mappings/dry-run", json={}, headers=ROOT).json()
        assert [(p["passes"], p["target"]) for p in before] == [(False, "finance")]
        assert "DY-BUNDLE-3" in before[0]["why"] and "DY-WATER-6" in before[0]["why"]
        proposal = {"proposal": {**BUNDLE, "platform_sku": "DY-WATER-6", "channel": ""}}
        assert (
            api.post("/mappings/dry-run", json=proposal, headers=ROOT).json()[0]["passes"] is False
        )
        assert api.put("/mappings/products", json=BUNDLE, headers=ROOT).status_code == 200
        six = {"platform_sku": "DY-WATER-6", "components": [{"sku": "WATER", "quantity": 6}]}
        assert api.put("/mappings/products", json=six, headers=ROOT).status_code == 200
        code = {"internal_sku": "TEA", "target": "finance", "code": "MAT-0001"}
        version = api.put("/mappings/codes", json=code, headers=ROOT).json()["version"]
        after = api.post("/mappings/dry-run", json={}, headers=ROOT).json()
        assert after[0]["passes"] is True
        assert [(line["sku"], line["quantity"]) for line in after[0]["lines"]] == [
            ("MAT-0001", 2), ("CUP", 4), ("WATER", 6),
        ]  # fmt: skip
        assert api.post("/mappings/retry-passing", headers=ROOT).json()["retried"] == [1]
        audit = api.get("/audit", headers=ROOT).json()["items"]
        assert {"mapping.product.put", "mapping.code.put"} <= {a["action"] for a in audit}

    with sqlite_engine.connect() as conn:
        assert conn.scalar(select(dead_letters.c.status)) == "retried"
        resent = dict(
            conn.execute(
                select(outbox)
                .where(outbox.c.message_id == row["message_id"])
                .order_by(outbox.c.id.desc())
            )
            .mappings()
            .first()
            or {}
        )
    finance.handle(delivery_from_outbox(resent, "t.finance"))
    finance.handle(delivery_from_outbox(resent, "t.finance"))  # a redelivery: no second effect
    assert len(erp.received) == 1
    sent = erp.received[0]
    assert [(i["sku"], i["quantity"], i["platform_sku"]) for i in sent["items"]] == [
        ("MAT-0001", 2, "DY-BUNDLE-3"), ("CUP", 4, "DY-BUNDLE-3"), ("WATER", 6, "DY-WATER-6"),
    ]  # fmt: skip
    lines = sum(
        Decimal(i["unit_price"]) * i["quantity"] - Decimal(i["discount"]) for i in sent["items"]
    )
    assert lines == Decimal("76.65") and sent["total"] == "82.15"  # + shipping 6.00 - 0.50
    assert sent["mapping_version"] == version
    with sqlite_engine.connect() as conn:
        assert conn.scalar(select(inbox.c.mapping_version)) == version


def test_a_hostile_sku_still_exports_as_a_workbook_a_spreadsheet_opens() -> None:
    """Found by the fuzzing of the admin API: a control character in an
    imported SKU made the XLSX export fail; it is left out of the cell, and
    a formula stays text."""
    import io

    from openpyxl import load_workbook

    from infra.spreadsheets import xlsx_bytes

    book = load_workbook(io.BytesIO(xlsx_bytes(["sku"], [["A\x01B"], ["=HYPERLINK(1)"]])))
    sheet = book.active
    assert sheet is not None
    assert [c.value for c in sheet["A"]] == ["sku", "AB", "'=HYPERLINK(1)"]


def test_a_mapping_added_a_moment_ago_is_seen_before_a_sku_is_refused(
    sqlite_engine: Engine,
) -> None:
    """The consumer reads the tables' version at most once a second; a SKU
    it finds unmapped makes it look again at once, so a retry sent right
    after the mapping was saved does not fail on the old tables."""
    from admin_api import mappings

    cache = MappingCache(sqlite_engine, {"douyin"}, interval=3600)
    first = cache.current()
    assert first.components("douyin", "s", "DY-WATER-6") is None
    with sqlite_engine.begin() as conn:
        mappings.put_product(
            conn, channel="", shop="", platform_sku="DY-WATER-6",
            components=[{"sku": "WATER", "quantity": 6}], note=None, by="t",
        )  # fmt: skip
    assert cache.current() is first  # within its interval: not read again
    fresh = cache.current(fresh=True)
    assert fresh.version > first.version
    assert fresh.components("douyin", "s", "DY-WATER-6") == (Component("WATER", 6),)


def test_a_shops_accounts_and_the_first_matching_warehouse_rule_go_with_the_order(
    sqlite_engine: Engine,
) -> None:
    topology = build_topology(Settings(namespace="t"))
    app = create_admin_app(
        sqlite_engine, KeyAuth(sqlite_engine, {"root": ROOT["Authorization"].split()[1]}), topology
    )
    with TestClient(app) as api:
        shop = {
            "channel": "douyin",
            "customer": "KH-DY",
            "department": "BM-EC",
            "warehouse": "WH-HZ",
        }
        assert api.put("/mappings/shops", json=shop, headers=ROOT).is_success
        rule = {"warehouse": "WH-SZ", "province": "广东", "priority": 10}
        assert api.post("/mappings/warehouse-rules", json=rule, headers=ROOT).is_success
        assert [
            r["warehouse"] for r in api.get("/mappings/warehouse-rules", headers=ROOT).json()
        ] == ["WH-SZ"]
    tables = MappingCache(sqlite_engine, interval=0).current()
    cantonese = order(channel="douyin", items=LINES, total="82.15")  # ships to 广东省 深圳市
    mapped = map_order(cantonese, tables, "finance")
    assert mapped.accounts is not None
    assert (mapped.accounts.customer, mapped.accounts.department, mapped.accounts.warehouse) == (
        "KH-DY", "BM-EC", "WH-SZ",
    )  # fmt: skip
    zhejiang = order(
        channel="douyin", items=LINES, total="82.15",
        shipping_address={"province": "浙江省", "city": "杭州市"},
    )  # fmt: skip
    assert map_order(zhejiang, tables, "finance").accounts.warehouse == "WH-HZ"  # type: ignore[union-attr]
    elsewhere = order(channel="jd", shipping_address={"province": "浙江省", "city": "杭州市"})
    assert map_order(elsewhere, tables, "finance").accounts is None  # no shop row, no rule


def test_a_carrier_is_sent_as_each_system_knows_it(sqlite_engine: Engine) -> None:
    """顺丰 is JD's logistics id 467 on its write-back, and SF01 in the ERP;
    the write-back target gets no SKU mapping, only the carrier's code."""
    from admin_api import mappings

    with sqlite_engine.begin() as conn:
        mappings.put_carrier(conn, "顺丰速运", "jd", "467", "t")
        mappings.put_carrier(conn, "顺丰速运", "finance", "SF01", "t")
        mappings.put_product(
            conn, channel="", shop="", platform_sku="SKU-A",
            components=[{"sku": "TEA"}], note=None, by="t",
        )  # fmt: skip
    shipped = order(
        channel="jd",
        status="shipped",
        shipment={"carrier": "顺丰速运", "tracking_number": "SF1234567890",
                  "shipped_at": "2026-11-12T10:00:00+08:00"},
    )  # fmt: skip
    tables = MappingCache(sqlite_engine, interval=0).current()
    assert map_order(shipped, tables, "finance").shipment.carrier_code == "SF01"  # type: ignore[union-attr]

    sent: list[dict[str, Any]] = []

    def channel_api(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200)

    writeback = DeliveryConsumer(
        "channel",
        sqlite_engine,
        HttpDelivery(
            "channel", "http://jd.test/ship",
            HttpxTransport(httpx.Client(transport=httpx.MockTransport(channel_api))),
            RetryPolicy(1, 0, 0),
        ),
        MappingCache(sqlite_engine, interval=0),
        map_skus=False,
    )  # fmt: skip
    body, version = writeback._mapped(shipped.to_wire())
    read = json.loads(body)
    assert read["shipment"]["carrier_code"] == "467" and version is not None
    assert [i["sku"] for i in read["items"]] == ["SKU-A", "SKU-B"]  # the channel's own SKUs


def test_a_sheet_imported_comes_back_out_the_same(sqlite_engine: Engine) -> None:
    topology = build_topology(Settings(namespace="t"))
    app = create_admin_app(
        sqlite_engine, KeyAuth(sqlite_engine, {"root": ROOT["Authorization"].split()[1]}), topology
    )
    sheet = (
        "渠道,店铺,平台SKU,内部SKU,数量,价格权重,ERP物料编码\n"
        "douyin,,DY-BUNDLE-3,TEA,1,3,MAT-T\n"
        "douyin,,DY-BUNDLE-3,CUP,2,1,\n"
    ).encode("gbk")
    with TestClient(app) as api:
        done = api.post("/mappings/import", content=sheet, headers=ROOT).json()
        assert (done["mappings"], done["codes"]) == (1, 1)
        out = api.get("/mappings/export", headers=ROOT)
        bad = api.post("/mappings/import", content=b"sku\nA\n", headers=ROOT)
    lines = out.text.lstrip("\ufeff").splitlines()
    assert lines[1:] == ["douyin,,DY-BUNDLE-3,TEA,1,3,MAT-T,", "douyin,,DY-BUNDLE-3,CUP,2,1,,"]
    assert bad.status_code == 422 and "platform_sku" in bad.json()["detail"]
