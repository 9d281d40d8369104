"""Unmapped means held (router/mapping_gate.py), on SQLite: a new order
from a channel that requires mappings, with a SKU nobody mapped, is held
before the warehouse and the ERP hear of it; it cannot be released until the
SKU is mapped; the dry run lists it once per system that takes our codes;
once mapped, "send those that pass" releases it once. An unpaid order is held
when it becomes paid; an order the systems already have is not held again
(a new unmapped SKU in a later revision stops as a dead letter instead)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from admin_api.app import create_admin_app
from admin_api.auth import KeyAuth
from canonical.envelope import Envelope
from canonical.order import CanonicalOrder
from infra.mappings import MappingCache
from infra.messages import parse_delivery
from infra.settings import Settings
from infra.tables import holds, orders, outbox
from infra.topology import Topology, build_topology
from router.approval import HoldRules
from router.dedup import Outcome
from router.fanout import Fanout
from router.mapping_gate import MappingGate
from router.service import RouterService
from tests.factories import delivery_for, order

ROOT = {"Authorization": "Bearer unmapped-root-token-0123456789"}
LINES = [
    {"sku": "DY-MAPPED", "name": "已映射", "quantity": 1, "unit_price": "20.00"},
    {"sku": "DY-NEW-HAT", "name": "新帽子", "quantity": 1, "unit_price": "10.00"},
]


def _router(engine: Engine, topology: Topology, **rules: Any) -> RouterService:
    gate = MappingGate.configured(
        MappingCache(engine, {"douyin"}, interval=0), {"douyin"}, {"warehouse", "finance"}, Fanout()
    )
    return RouterService(engine, topology, hold_rules=HoldRules(**rules), mapping_gate=gate)


def _api(engine: Engine, topology: Topology) -> TestClient:
    auth = KeyAuth(engine, {"root": ROOT["Authorization"].split()[1]})
    return TestClient(
        create_admin_app(
            engine, auth, topology, fanout=Fanout(), mapping_required=frozenset({"douyin"})
        )
    )


def _targets(engine: Engine, number: str) -> list[str]:
    """The systems the outbox sends ``number`` to (each test has one order)."""
    with engine.connect() as conn:
        rows = conn.execute(select(outbox.c.routing_key, outbox.c.body)).all()
    assert all(number in r.body for r in rows)
    return sorted(r.routing_key.removeprefix("deliver.") for r in rows)


def _dy(
    external_id: str, status: str = "paid", items: list[dict[str, Any]] = LINES
) -> CanonicalOrder:
    return order(
        channel="douyin", external_id=external_id, status=status, items=items, total="35.50"
    )


def test_an_unmapped_order_waits_for_its_mapping_and_then_goes_once(sqlite_engine: Engine) -> None:
    topology = build_topology(Settings(namespace="t"))
    router = _router(sqlite_engine, topology)
    with _api(sqlite_engine, topology) as api:
        mapped = {"channel": "douyin", "platform_sku": "DY-MAPPED", "components": [{"sku": "A"}]}
        assert api.put("/mappings/products", json=mapped, headers=ROOT).is_success
        result = router.route(*_parts(_dy("DY-1")))
        assert result.outcome is Outcome.HELD
        number = str(result.order_number)
        assert _targets(sqlite_engine, number) == []  # nobody heard of it, not even its customer
        hold = api.get("/holds", headers=ROOT).json()["items"][0]
        assert (hold["cause"], hold["reason"]) == ("sku_not_mapped", "SKU not mapped: DY-NEW-HAT")

        refused = api.post(f"/holds/{hold['id']}/release", json={}, headers=ROOT)
        assert refused.status_code == 409 and "DY-NEW-HAT" in refused.json()["detail"]
        stuck = api.post("/mappings/dry-run", json={}, headers=ROOT).json()
        assert sorted((p["hold_id"], p["target"], p["passes"]) for p in stuck) == [
            (hold["id"], "finance", False), (hold["id"], "warehouse", False),
        ]  # fmt: skip
        assert all(p["order_number"] == number and "DY-NEW-HAT" in p["why"] for p in stuck)

        hat = {"platform_sku": "DY-NEW-HAT", "components": [{"sku": "HAT", "quantity": 2}]}
        assert api.put("/mappings/products", json=hat, headers=ROOT).is_success
        now = api.post("/mappings/dry-run", json={}, headers=ROOT).json()
        assert all(p["passes"] for p in now) and len(now) == 2
        assert [(x["sku"], x["quantity"]) for x in now[0]["lines"]] == [("A", 1), ("HAT", 2)]
        done = api.post("/mappings/retry-passing", headers=ROOT).json()
        assert done == {"released": [hold["id"]], "retried": []}
        again = api.post("/mappings/retry-passing", headers=ROOT).json()
        assert again == {"released": [], "retried": []}
        assert api.post("/mappings/dry-run", json={}, headers=ROOT).json() == []
        timeline = api.get(f"/orders/{number}", headers=ROOT).json()["timeline"]
        events = [(e["event"], e["detail"]) for e in timeline if e["event"] in ("held", "released")]
        assert events == [
            ("held", "SKU not mapped: DY-NEW-HAT"), ("released", "mapping added"),
        ]  # fmt: skip
    assert _targets(sqlite_engine, number) == ["finance", "notification", "warehouse"]


def test_an_unpaid_order_is_held_when_it_becomes_paid(sqlite_engine: Engine) -> None:
    topology = build_topology(Settings(namespace="t"))
    router = _router(sqlite_engine, topology)
    created = router.route(*_parts(_dy("DY-2", "created")))
    assert created.outcome is Outcome.NEW and created.targets == ("notification",)
    paid = _dy("DY-2", "paid").model_copy(update={"version": 2})
    assert router.route(*_parts(paid)).outcome is Outcome.HELD
    with sqlite_engine.connect() as conn:
        assert conn.scalar(select(holds.c.cause)) == "sku_not_mapped"
        assert conn.scalar(select(orders.c.hold_status)) == "open"
    assert _targets(sqlite_engine, str(created.order_number)) == ["notification"]


def test_an_order_the_systems_have_is_not_held_for_a_new_sku(sqlite_engine: Engine) -> None:
    topology = build_topology(Settings(namespace="t"))
    router = _router(sqlite_engine, topology)
    mapped_only = [LINES[0]]
    first = router.route(*_parts(_dy("DY-3", items=mapped_only)))
    assert first.outcome is Outcome.HELD  # DY-MAPPED has no mapping in this test either
    with sqlite_engine.begin() as conn:
        hold_id = conn.scalar(select(holds.c.id))
    # mapped and released, then a later revision brings a SKU nobody mapped
    with _api(sqlite_engine, topology) as api:
        everything = {"platform_sku": "DY-MAPPED", "components": [{"sku": "A"}]}
        assert api.put("/mappings/products", json=everything, headers=ROOT).is_success
        assert api.post(f"/holds/{hold_id}/release", json={}, headers=ROOT).is_success
    shipped = _dy("DY-3", "shipped").model_copy(update={"version": 2})
    result = router.route(*_parts(shipped))
    assert result.outcome is Outcome.UPDATE and "finance" in result.targets  # not held again


def test_an_order_held_for_approval_also_names_its_unmapped_sku(sqlite_engine: Engine) -> None:
    topology = build_topology(Settings(namespace="t"))
    router = _router(sqlite_engine, topology, amount_above={"CNY": 10})
    assert router.route(*_parts(_dy("DY-4"))).outcome is Outcome.HELD
    with sqlite_engine.connect() as conn:
        row = conn.execute(select(holds.c.cause, holds.c.reason)).one()
    assert row.cause is None  # an approver decides first
    assert row.reason == "total 35.50 CNY above 10; SKU not mapped: DY-MAPPED, DY-NEW-HAT"


def _parts(o: CanonicalOrder) -> tuple[Envelope, CanonicalOrder]:
    return parse_delivery(delivery_for(o))
