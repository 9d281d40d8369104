"""Shipments reported by the warehouse (router/shipments.py): the order's next
revision, through the router like any other; never backwards, once per
report, refused with a reason for an unknown or closed order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from canonical.errors import MalformedMessage, OrderClosed, UnknownOrder
from canonical.order import CanonicalOrder
from connectors.ingest_app import IngestDeps, create_ingest_app
from infra.messages import OutgoingMessage
from infra.setting_specs import NotifySpec
from infra.settings import Settings
from infra.tables import arrivals, orders, outbox, rejected_requests
from infra.topology import build_topology
from router.fanout import Fanout
from router.service import RouterService
from router.shipments import ShipmentIntake, ShipmentReport, read_report
from tests.factories import (
    FakePublisher,
    delivery_for,
    delivery_from_published,
    order,
    signed_headers,
)

SECRET = "wms-signing-secret-1"
SETTINGS = Settings(
    namespace="t",
    writeback={
        "web-shop": {
            "kind": "woocommerce",
            "url": "https://w",
            "consumer_key": "k",
            "consumer_secret": "s",
        }
    },
    notify=NotifySpec(),
    shipment_secrets=[SECRET],
)


class Pipeline:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        topology = build_topology(SETTINGS)
        fanout = Fanout.configured(frozenset(SETTINGS.writeback), frozenset(NotifySpec().events))
        self.router = RouterService(engine, topology, fanout=fanout)
        self.publisher = FakePublisher()
        self.intake = ShipmentIntake(engine, self.publisher, topology)  # type: ignore[arg-type]

    def place(self, **changes: Any) -> str:
        self.router.handle(delivery_for(order(**changes), message_id=f"m-{changes}"))
        with self.engine.connect() as conn:
            return str(conn.scalar(select(orders.c.order_number).order_by(orders.c.id.desc())))

    def ship(self, **report: Any) -> None:
        self.intake.accept(ShipmentReport(carrier="SF", tracking_number="SF1234567890", **report))
        self.router.handle(delivery_from_published(self.publisher.published[-1]))

    def targets(self, number: str) -> list[str]:
        with self.engine.connect() as conn:
            ids = conn.scalars(
                select(outbox.c.message_id)
                .where(outbox.c.message_id.like(f"{number}-%"))
                .order_by(outbox.c.id)
            )
            return list(ids)

    def order(self, number: str) -> CanonicalOrder:
        with self.engine.connect() as conn:
            body = conn.scalar(select(orders.c.body).where(orders.c.order_number == number))
        return CanonicalOrder.model_validate_json(str(body))


@pytest.fixture
def pipeline(sqlite_engine: Engine) -> Pipeline:
    return Pipeline(sqlite_engine)


def test_a_shipment_makes_the_order_shipped_and_fans_out(pipeline: Pipeline) -> None:
    number = pipeline.place(external_id="W-1")
    assert pipeline.targets(number) == [
        f"{number}-v1-warehouse",
        f"{number}-v1-finance",
        f"{number}-v1-notification",
        f"{number}-v1-customer",
    ]
    pipeline.ship(order_number=number, shipped_at="2026-11-12T10:00:00+08:00")
    shipped = pipeline.order(number)
    assert shipped.status == "shipped"
    assert shipped.shipment is not None and shipped.shipment.tracking_number == "SF1234567890"
    assert pipeline.targets(number)[4:] == [
        f"{number}-v2-finance",
        f"{number}-v2-notification",
        f"{number}-v2-channel",  # web-shop has write-back
        f"{number}-v2-customer",
    ]


def test_the_same_report_twice_has_one_effect(pipeline: Pipeline) -> None:
    number = pipeline.place(external_id="W-2")
    for _ in range(2):
        pipeline.ship(order_number=number, event_id="wms-77")
    assert len(pipeline.targets(number)) == 8
    with pipeline.engine.connect() as conn:
        outcomes = list(conn.scalars(select(arrivals.c.outcome).order_by(arrivals.c.processed_at)))
    assert outcomes.count("update") == 1


def test_a_channel_without_write_back_is_not_sent_one(pipeline: Pipeline) -> None:
    number = pipeline.place(external_id="M-1", channel="mini-program")
    pipeline.ship(channel="mini-program", external_id="M-1")
    assert not any(t.endswith("-channel") for t in pipeline.targets(number))
    assert pipeline.order(number).status == "shipped"


def test_the_status_never_goes_backwards(pipeline: Pipeline) -> None:
    number = pipeline.place(external_id="W-3", status="delivered")
    pipeline.ship(order_number=number)
    assert pipeline.order(number).status == "delivered"
    # a paid revision from the channel after the shipment does not undo it
    number = pipeline.place(external_id="W-4")
    pipeline.ship(order_number=number)
    pipeline.place(external_id="W-4", version=2, note="gift wrap")
    assert pipeline.order(number).status == "shipped"


def test_unknown_and_closed_orders_are_refused_with_a_reason(pipeline: Pipeline) -> None:
    with pytest.raises(UnknownOrder, match="no order OBNOPE is known"):
        pipeline.ship(order_number="OBNOPE")
    number = pipeline.place(external_id="W-5", status="cancelled")
    with pytest.raises(OrderClosed, match="cancelled"):
        pipeline.ship(order_number=number)
    with pytest.raises(MalformedMessage, match="tracking_number"):
        read_report(b'{"order_number": "OB1", "carrier": "SF", "tracking_number": "no spaces"}')
    with pytest.raises(MalformedMessage, match="name the order"):
        read_report(b'{"carrier": "SF", "tracking_number": "SF123456"}')


def test_the_queue_dead_letters_what_it_cannot_take(pipeline: Pipeline) -> None:
    number = pipeline.place(external_id="W-6")
    good = json.dumps({"order_number": number, "carrier": "SF", "tracking_number": "SF9999"})
    messages = [
        delivery_from_published(
            OutgoingMessage("x", "shipment.report", good.encode(), "s-1", {}, None)
        ),
        delivery_from_published(OutgoingMessage("x", "shipment.report", b"{", "s-2", {}, None)),
    ]
    results = pipeline.intake.handle_batch(messages)
    assert results[0] is None and isinstance(results[1], MalformedMessage)
    assert len(pipeline.publisher.published) == 1


@pytest.fixture
def client(sqlite_engine: Engine) -> Iterator[tuple[TestClient, FakePublisher]]:
    publisher = FakePublisher()
    topology = build_topology(SETTINGS)
    intake = ShipmentIntake(sqlite_engine, publisher, topology)  # type: ignore[arg-type]
    deps = IngestDeps(SETTINGS, sqlite_engine, publisher, topology, intake.accept_body)  # type: ignore[arg-type]
    with TestClient(create_ingest_app(deps)) as c:
        yield c, publisher


def test_the_shipment_api(
    client: tuple[TestClient, FakePublisher], pipeline: Pipeline, sqlite_engine: Engine
) -> None:
    http, publisher = client
    number = pipeline.place(external_id="W-7")
    body = json.dumps({"order_number": number, "carrier": "ZTO", "tracking_number": "ZT12345"})
    answer = http.post("/shipments", content=body, headers=signed_headers(SECRET, body.encode()))
    assert answer.status_code == 202, answer.text
    assert answer.json()["message_id"] == publisher.published[0].message_id
    shipped = CanonicalOrder.from_wire(publisher.published[0].body)
    assert shipped.status == "shipped" and shipped.shipment and shipped.shipment.carrier == "ZTO"

    forged = http.post("/shipments", content=body, headers=signed_headers("guess", body.encode()))
    unknown = body.replace(number, "OBNOPE")
    missing = http.post(
        "/shipments", content=unknown, headers=signed_headers(SECRET, unknown.encode())
    )
    assert (forged.status_code, missing.status_code) == (401, 404)
    assert "OBNOPE" in missing.json()["detail"]
    with sqlite_engine.connect() as conn:
        recorded = conn.execute(
            select(rejected_requests.c.status_code, rejected_requests.c.reason)
        ).all()
    assert [tuple(r) for r in recorded] == [(401, "bad_signature"), (404, "unknown_order")]
    assert len(publisher.published) == 1


def test_event_ids_repeated_across_orders_ship_each_order(pipeline: Pipeline) -> None:
    first = pipeline.place(external_id="W-8")
    second = pipeline.place(external_id="W-9")
    pipeline.ship(order_number=first, event_id="1")  # a warehouse counting per day
    pipeline.ship(order_number=second, event_id="1")
    assert pipeline.order(first).status == "shipped"
    assert pipeline.order(second).status == "shipped"


def test_an_intercept_too_late_turns_into_the_goods_coming_back(
    pipeline: Pipeline, sqlite_url: str, sqlite_engine: Engine
) -> None:
    """A cancel before shipment sends the warehouse an intercept; it answers
    409 "already shipped" (recorded, no dead letter), then reports the
    shipment: the order keeps its status, gets the shipment and a return
    with no money, and the warehouse (only) is told the goods come back."""
    import httpx

    from infra.tables import inbox
    from tests.factories import delivery_from_outbox
    from tests.outbox_messages import quick_app

    number = pipeline.place(external_id="W-LATE", status="paid")
    pipeline.router.handle(
        delivery_for(order(external_id="W-LATE", status="cancelled", version=2), message_id="c")
    )
    with sqlite_engine.connect() as conn:
        row = dict(
            conn.execute(select(outbox).where(outbox.c.message_id.like("%-intercept-%")))
            .mappings()
            .one()
        )

    def warehouse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"error": "already_shipped"})

    consumer = quick_app(sqlite_url, warehouse_url="http://wms.test/orders").delivery_consumer(
        "warehouse", transport=httpx.MockTransport(warehouse)
    )
    consumer.handle(delivery_from_outbox(row, "t.warehouse"))  # no exception: not a dead letter
    with sqlite_engine.connect() as conn:
        assert conn.scalar(select(inbox.c.outcome)) == "too_late"
    pipeline.ship(order_number=number, event_id="late-1")
    late = pipeline.order(number)
    assert late.status.value == "cancelled" and late.shipment is not None
    [back] = [s for s in late.after_sales if s.kind.value == "return"]
    assert (back.id, str(back.amount)) == ("status-cancel-return", "0")
    returns = [t for t in pipeline.targets(number) if "-return-" in t]
    assert len(returns) == 1 and returns[0].endswith("-warehouse")
    with pytest.raises(OrderClosed):  # a second shipment of it is a person's matter again
        pipeline.intake.accept(
            ShipmentReport(
                order_number=number, carrier="SF", tracking_number="SF9999999999", event_id="x"
            )
        )
