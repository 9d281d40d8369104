"""After-sales in the router (router/aftersales.py), on SQLite: a cancel
before shipment becomes one intercept for the warehouse and one reversal for
finance, instead of the plain revision; a partial refund after delivery one
refund for finance with its line and amount; an after-sale's status never
goes back; replays and later revisions send nothing again; what the order
does not have, or gives back more than was paid, is refused with a reason."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, select

from canonical.errors import ValidationFailed
from canonical.order import CanonicalOrder
from canonical.validation import validate
from infra.messages import parse_delivery
from infra.settings import Settings
from infra.tables import orders, outbox
from infra.topology import build_topology
from router.dedup import Outcome
from router.service import RouterService
from tests.factories import delivery_for, order

H_DOCUMENT = "x-orderbus-document"


def _route(router: RouterService, o: CanonicalOrder) -> Any:
    return router.route(*parse_delivery(delivery_for(o)))


def _sent(engine: Engine, since: int = 0) -> list[tuple[str, str]]:
    """(target, document or "revision") of each outbox row after ``since``."""
    with engine.connect() as conn:
        rows = conn.execute(select(outbox).where(outbox.c.id > since).order_by(outbox.c.id))
        return [
            (r.routing_key.removeprefix("deliver."), r.headers.get(H_DOCUMENT, "revision"))
            for r in rows
        ]


def _last_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(outbox.c.id).order_by(outbox.c.id.desc())) or 0)


def _stored(engine: Engine) -> CanonicalOrder:
    with engine.connect() as conn:
        return CanonicalOrder.from_wire(str(conn.scalar(select(orders.c.body))).encode())


@pytest.fixture
def router(sqlite_engine: Engine) -> RouterService:
    return RouterService(sqlite_engine, build_topology(Settings(namespace="t")))


def test_a_cancel_before_shipment_is_one_intercept_and_one_reversal(
    router: RouterService, sqlite_engine: Engine
) -> None:
    assert _route(router, order(status="paid")).outcome is Outcome.NEW
    mark = _last_id(sqlite_engine)
    cancelled = order(status="cancelled", version=2)
    result = _route(router, cancelled)
    assert result.outcome is Outcome.UPDATE
    assert sorted(_sent(sqlite_engine, mark)) == [
        ("finance", "reversal"), ("notification", "revision"), ("warehouse", "intercept"),
    ]  # fmt: skip
    [sale] = _stored(sqlite_engine).after_sales  # the status says it: an after-sale of it
    assert (sale.id, sale.kind.value, str(sale.amount)) == ("status-cancel", "cancel", "30.50")
    mark = _last_id(sqlite_engine)
    assert _route(router, cancelled).outcome is Outcome.DUPLICATE  # a replay: nothing
    assert _sent(sqlite_engine, mark) == []


def test_a_reported_cancel_takes_effect_when_agreed(
    router: RouterService, sqlite_engine: Engine
) -> None:
    _route(router, order(status="paid"))
    asked = {"id": "RF-1", "kind": "cancel", "status": "requested", "amount": "30.50"}
    mark = _last_id(sqlite_engine)
    _route(router, order(status="paid", version=2, after_sales=[asked]))
    assert ("warehouse", "intercept") not in _sent(sqlite_engine, mark)  # only asked
    mark = _last_id(sqlite_engine)
    agreed = {**asked, "status": "agreed"}
    _route(router, order(status="cancelled", version=3, after_sales=[agreed]))
    assert sorted(_sent(sqlite_engine, mark)) == [
        ("finance", "reversal"), ("notification", "revision"), ("warehouse", "intercept"),
    ]  # fmt: skip
    assert [s.id for s in _stored(sqlite_engine).after_sales] == ["RF-1"]  # no second one


def test_a_partial_refund_after_delivery_is_one_refund_for_its_line(
    router: RouterService, sqlite_engine: Engine
) -> None:
    for version, status in enumerate(("paid", "shipped", "delivered"), start=1):
        _route(router, order(status=status, version=version))
    line = {"sku": "SKU-A", "quantity": 1, "amount": "9.50"}
    refund = {"id": "RF-9", "kind": "refund", "status": "agreed", "lines": [line], "amount": "9.50"}
    mark = _last_id(sqlite_engine)
    _route(router, order(status="delivered", version=4, after_sales=[refund]))
    assert sorted(_sent(sqlite_engine, mark)) == [
        ("finance", "refund"), ("notification", "revision"),
    ]  # fmt: skip
    mark = _last_id(sqlite_engine)
    done = {**refund, "status": "completed"}
    _route(router, order(status="delivered", version=5, after_sales=[done]))
    assert ("finance", "refund") not in _sent(sqlite_engine, mark)  # it took effect already
    back = {**refund, "status": "requested"}  # a late, older report
    _route(router, order(status="delivered", version=6, after_sales=[back]))
    [kept] = _stored(sqlite_engine).after_sales
    assert kept.status.value == "completed"  # never goes back


def test_a_return_brings_the_goods_back_to_the_warehouse(
    router: RouterService, sqlite_engine: Engine
) -> None:
    for version, status in enumerate(("paid", "shipped"), start=1):
        _route(router, order(status=status, version=version))
    line = {"sku": "SKU-B", "quantity": 1, "amount": "5.00"}
    goods = {"id": "RT-1", "kind": "return", "status": "agreed", "lines": [line], "amount": "5.00"}
    mark = _last_id(sqlite_engine)
    _route(router, order(status="shipped", version=3, after_sales=[goods]))
    assert sorted(_sent(sqlite_engine, mark)) == [
        ("finance", "return"), ("notification", "revision"), ("warehouse", "return"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("sale", "code"),
    [
        ({"lines": [{"sku": "NOPE", "quantity": 1, "amount": "1.00"}], "amount": "1.00"},
         "unknown_line"),
        ({"lines": [{"sku": "SKU-B", "quantity": 2, "amount": "5.00"}], "amount": "5.00"},
         "more_than_paid"),
        ({"amount": "99.00"}, "more_than_paid"),
        ({"lines": [{"sku": "SKU-B", "quantity": 1, "amount": "5.00"}], "amount": "4.00"},
         "after_sale_mismatch"),
        ({"lines": [{"sku": "SKU-B", "quantity": 1, "amount": "5.00"}], "amount": "11.01"},
         "after_sale_mismatch"),
        ({"amount": "1.001"}, "too_many_decimals"),
    ],
)  # fmt: skip
def test_an_after_sale_that_does_not_fit_the_order_is_refused_by_name(
    sale: dict[str, Any], code: str
) -> None:
    bad = order(after_sales=[{"id": "X", "kind": "refund", "status": "agreed", **sale}])
    with pytest.raises(ValidationFailed) as refused:
        validate(bad)
    assert code in {v.code for v in refused.value.violations}


def test_an_after_sale_may_give_back_the_shipping_with_its_lines() -> None:
    line = {"sku": "SKU-B", "quantity": 1, "amount": "5.00"}
    with_postage = {"id": "R", "kind": "return", "status": "agreed", "lines": [line]}
    validate(order(after_sales=[{**with_postage, "amount": "11.00"}]))  # 5.00 + 6.00 shipping


def test_the_timeline_shows_each_document(router: RouterService, sqlite_engine: Engine) -> None:
    from fastapi.testclient import TestClient

    from admin_api.app import create_admin_app
    from admin_api.auth import KeyAuth

    number = _route(router, order(status="paid")).order_number
    _route(router, order(status="cancelled", version=2))
    token = "after-sales-root-token-0123456789"
    app = create_admin_app(sqlite_engine, KeyAuth(sqlite_engine, {"root": token}), router.topology)
    with TestClient(app) as api:
        story = api.get(f"/orders/{number}", headers={"Authorization": f"Bearer {token}"}).json()
    papers = sorted(
        (e["event"], e["detail"])
        for e in story["timeline"]
        if "intercept" in e["event"] or "reversal" in e["event"]
    )
    assert papers == [
        ("intercept not yet sent to warehouse", "after-sale status-cancel"),
        ("reversal not yet sent to finance", "after-sale status-cancel"),
    ]


def test_a_partial_money_refund_before_shipment_is_a_refund_not_a_cancel(
    router: RouterService, sqlite_engine: Engine
) -> None:
    _route(router, order(status="paid"))
    money = {"id": "RF-3", "kind": "refund", "status": "completed", "amount": "5.00"}
    mark = _last_id(sqlite_engine)
    _route(router, order(status="paid", version=2, after_sales=[money]))
    assert ("finance", "refund") in _sent(sqlite_engine, mark)
    assert ("warehouse", "intercept") not in _sent(sqlite_engine, mark)


def test_woocommerces_refunds_are_the_orders_after_sales() -> None:
    import json
    from pathlib import Path

    from connectors.woocommerce import to_canonical

    fixture = Path(__file__).parents[2] / "connectors/fixtures/woocommerce/order-created.json"
    data = json.loads(fixture.read_text("utf-8"))
    body = data["body"] if "body" in data else json.loads(data["body_text"])
    body["refunds"] = [
        {"id": 726, "reason": "破损", "total": "-10.00"}
    ]  # as WooCommerce lists them
    [sale] = to_canonical(body, "woo", "main")["after_sales"]
    assert sale == {"id": "726", "kind": "refund", "status": "completed",
                    "amount": Decimal("10.00"), "reason": "破损"}  # fmt: skip
