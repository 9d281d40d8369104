"""Holds for approval: big orders and incomplete addresses wait for a person;
above the second threshold two different people must approve; approval sends
the order once; rejection sends nothing."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

from admin_api.app import create_admin_app
from admin_api.auth import KeyAuth
from canonical.order import CanonicalOrder
from infra.messages import parse_delivery
from infra.setting_specs import HoldRulesSpec
from infra.settings import Settings
from infra.tables import outbox
from infra.topology import build_topology
from router.approval import HoldRules
from router.service import RouterService
from tests.factories import delivery_for, order

RULES = HoldRules(
    amount_above={"CNY": Decimal("1000.00")},
    second_approval_above={"CNY": Decimal("5000.00")},
    incomplete_address=True,
)
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}


def priced(total: str, **changes: object) -> dict[str, object]:
    """An order whose one line makes ``total`` (no shipping, no discount)."""
    line = {"sku": "BIG", "name": "big", "quantity": 1, "unit_price": total}
    return {"items": [line], "shipping_fee": "0", "order_discount": "0", "total": total, **changes}


def test_the_rules() -> None:
    assert RULES.check(order(**priced("999.99"))) == ([], 0)
    assert RULES.check(order(**priced("1000.01")))[1] == 1
    reasons, needed = RULES.check(order(**priced("5000.01")))
    assert needed == 2 and "two approvals needed" in reasons[0]
    reasons, needed = RULES.check(order(shipping_address={"city": None, "street": None}))
    assert needed == 1 and reasons == ["shipping address without city, street"]


def test_the_second_threshold_cannot_be_below_the_first() -> None:
    with pytest.raises(ValueError, match="needs an amount_above"):
        HoldRulesSpec(amount_above={"CNY": "100"}, second_approval_above={"CNY": "50"})


@pytest.fixture
def router(sqlite_engine: Engine) -> RouterService:
    topology = build_topology(Settings(namespace="t"))
    return RouterService(sqlite_engine, topology, hold_rules=RULES)


@pytest.fixture
def client(sqlite_engine: Engine) -> Iterator[TestClient]:
    auth = KeyAuth(sqlite_engine, {"alice": "alice-token", "bob": "bob-token"})
    app = create_admin_app(sqlite_engine, auth, build_topology(Settings(namespace="t")))
    with TestClient(app) as c:
        yield c


def route(router: RouterService, o: CanonicalOrder, message_id: str) -> str:
    result = router.route_many([parse_delivery(delivery_for(o, message_id=message_id))])[0]
    assert result.order_number is not None
    return result.order_number


def sent(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(outbox)) or 0)


def hold_of(client: TestClient, number: str) -> dict[str, object]:
    items = client.get("/holds", headers=ALICE).json()["items"]
    found: dict[str, object] = next(h for h in items if h["order_number"] == number)
    return found


def test_small_orders_pass_and_big_ones_wait_for_one_approval(
    router: RouterService, client: TestClient, sqlite_engine: Engine
) -> None:
    router.handle(delivery_for(order(external_id="S-1", **priced("500.00")), message_id="m-s1"))
    assert sent(sqlite_engine) == 3  # warehouse, finance, notification: no hold
    number = route(router, order(external_id="B-1", **priced("2000.00")), "m-b1")
    assert sent(sqlite_engine) == 3  # held: nothing sent
    hold = hold_of(client, number)
    assert (hold["approvals_needed"], hold["suspected_of"]) == (1, None)
    assert "above 1000.00" in str(hold["reason"])
    released = client.post(f"/holds/{hold['id']}/release", json={"note": "ok"}, headers=ALICE)
    assert released.json()["status"] == "released" and len(released.json()["sent"]) == 3
    assert sent(sqlite_engine) == 6
    again = client.post(f"/holds/{hold['id']}/release", json={}, headers=BOB)
    assert again.status_code == 409  # released once, and only once


def test_very_big_orders_need_two_different_people(
    router: RouterService, client: TestClient, sqlite_engine: Engine
) -> None:
    hold = hold_of(client, route(router, order(external_id="V-1", **priced("9000.00")), "m-v1"))
    first = client.post(f"/holds/{hold['id']}/release", json={"note": "checked"}, headers=ALICE)
    assert first.json() == {"id": hold["id"], "status": "awaiting second approval", "sent": []}
    assert sent(sqlite_engine) == 0
    same = client.post(f"/holds/{hold['id']}/release", json={}, headers=ALICE)
    assert same.status_code == 409 and "a second person" in same.json()["detail"]
    second = client.post(f"/holds/{hold['id']}/release", json={}, headers=BOB)
    assert second.json()["status"] == "released" and sent(sqlite_engine) == 3
    audit = [e["action"] for e in client.get("/audit", headers=ALICE).json()["items"]]
    assert audit[:2] == ["hold.release", "hold.approve"]


def test_an_order_without_a_city_is_held_and_a_rejection_only_notifies(
    router: RouterService, client: TestClient, sqlite_engine: Engine
) -> None:
    incomplete = order(external_id="A-1", shipping_address={"city": None})
    hold = hold_of(client, route(router, incomplete, "m-a1"))
    assert hold["reason"] == "shipping address without city"
    rejected = client.post(
        f"/holds/{hold['id']}/reject", json={"note": "no such address"}, headers=ALICE
    )
    assert rejected.status_code == 204
    with sqlite_engine.connect() as conn:
        rows = conn.execute(select(outbox.c.message_id, outbox.c.body)).all()
    assert [r.message_id.rsplit("-", 1)[1] for r in rows] == ["notification"]
    assert '"status":"cancelled"' in rows[0].body


def test_a_first_order_from_a_new_customer_waits_and_the_next_passes(
    sqlite_engine: Engine, client: TestClient
) -> None:
    topology = build_topology(Settings(namespace="t"))
    router = RouterService(sqlite_engine, topology, hold_rules=HoldRules(first_order=True))
    phone = {"customer": {"name": "新客", "phone": "13800001111"}}
    first = route(router, order(external_id="N-1", **phone), "m-n1")
    hold = hold_of(client, first)
    assert hold["reason"] == "first order from a new customer"
    assert sent(sqlite_engine) == 0
    # The same customer again, the phone written another way: known now.
    again = {"customer": {"name": "新客", "phone": "+86 138 0000 1111"}}
    route(router, order(external_id="N-2", **again), "m-n2")
    assert sent(sqlite_engine) == 3
    by_email = {"customer": {"name": "Li", "email": "li@example.com"}}
    assert "first order" in str(
        hold_of(client, route(router, order(external_id="N-3", **by_email), "m-n3"))["reason"]
    )


def test_the_migration_gives_existing_orders_their_customer(tmp_path: Path) -> None:
    from infra.database import make_engine, upgrade
    from infra.tables import orders
    from router.approval import customer_key

    url = f"sqlite:///{tmp_path}/old.db"
    upgrade(url, "0010")
    old = order(external_id="OLD-1")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO orders (order_number, channel, shop, external_id, status, "
                    "status_rank, source_version, source_updated_at, content_hash, version, "
                    "body, created_at, updated_at) VALUES ('OB1', 'web-shop', 'main', 'OLD-1', "
                    "'paid', 1, 1, '', 'h', 1, :body, '2026-01-01', '2026-01-01')"
                ),
                {"body": old.to_wire().decode()},
            )
        upgrade(url)
        with engine.connect() as conn:
            key = conn.scalar(select(orders.c.customer_key))
        assert key == customer_key(old) and key is not None
    finally:
        engine.dispose()


def test_with_customer_notifications_release_and_rejection_tell_the_customer(
    sqlite_engine: Engine,
) -> None:
    from router.fanout import Fanout

    fanout = Fanout.configured(frozenset(), frozenset({"paid", "cancelled"}))
    topology = build_topology(Settings(namespace="t", notify={"events": ["paid", "cancelled"]}))
    router = RouterService(sqlite_engine, topology, hold_rules=RULES, fanout=fanout)
    auth = KeyAuth(sqlite_engine, {"alice": "alice-token"})
    app = create_admin_app(sqlite_engine, auth, topology, fanout=fanout)
    with TestClient(app) as client:
        big = hold_of(client, route(router, order(external_id="C-1", **priced("2000.00")), "m1"))
        released = client.post(f"/holds/{big['id']}/release", json={}, headers=ALICE).json()
        assert [m.rsplit("-", 1)[1] for m in released["sent"]] == [
            "warehouse",
            "finance",
            "notification",
            "customer",
        ]
        bad = order(external_id="C-2", shipping_address={"city": None})
        hold = hold_of(client, route(router, bad, "m2"))
        client.post(f"/holds/{hold['id']}/reject", json={"note": "no address"}, headers=ALICE)
    with sqlite_engine.connect() as conn:
        ids = list(conn.scalars(select(outbox.c.message_id).where(outbox.c.id > 4)))
    assert [m.rsplit("-", 1)[1] for m in ids] == ["notification", "customer"]


def test_a_held_order_shipped_meanwhile_is_written_back_when_released(
    sqlite_engine: Engine,
) -> None:
    from router.fanout import Fanout
    from router.shipments import ShipmentIntake, ShipmentReport
    from tests.factories import FakePublisher, delivery_from_published

    fanout = Fanout.configured(frozenset({"web-shop"}), None)
    settings = Settings(namespace="t", writeback={"web-shop": {"kind": "woocommerce"}})
    topology = build_topology(settings)
    router = RouterService(sqlite_engine, topology, hold_rules=RULES, fanout=fanout)
    number = route(router, order(external_id="H-1", **priced("2000.00")), "m-h1")
    publisher = FakePublisher()
    intake = ShipmentIntake(sqlite_engine, publisher, topology)  # type: ignore[arg-type]
    intake.accept(ShipmentReport(order_number=number, carrier="SF", tracking_number="SF12345"))
    router.handle(delivery_from_published(publisher.published[0]))
    assert sent(sqlite_engine) == 0  # still held
    app = create_admin_app(
        sqlite_engine, KeyAuth(sqlite_engine, {"alice": "alice-token"}), topology, fanout=fanout
    )
    with TestClient(app) as client:
        hold = hold_of(client, number)
        released = client.post(f"/holds/{hold['id']}/release", json={}, headers=ALICE).json()
    assert [m.rsplit("-", 1)[1] for m in released["sent"]] == [
        "finance",
        "notification",
        "channel",
    ]
