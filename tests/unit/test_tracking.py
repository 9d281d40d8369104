"""A parcel to the door (router/tracking.py, connectors/kuaidi100.py,
targets/notify/parcels.py), on SQLite: 快递100's signed push and its query
(a fake of each) bring the carrier's events; the order shows where the
parcel is, a change of tracking alone goes to no system, the first exception
tells the customer once, delivered makes the order delivered; a parcel the
carrier says nothing of for too long tells the customer once too."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from canonical.errors import UnknownOrder
from canonical.order import CanonicalOrder
from canonical.tracking import ParcelState, TrackingEvent, TrackingReport
from connectors.ingest_app import IngestDeps, create_ingest_app
from connectors.kuaidi100 import Kuaidi100Poll, push_sign, query_sign
from infra.messages import Delivery, parse_delivery
from infra.setting_specs import Kuaidi100Spec
from infra.settings import Settings
from infra.tables import orders, outbox, rejected_requests
from infra.topology import build_topology
from router.fanout import Fanout
from router.service import RouterService
from router.tracking import TrackingIntake
from targets.notify.notifier import event_of
from targets.notify.parcels import ParcelWatch
from tests.factories import FakePublisher, delivery_for, order

SALT = "kuaidi100-push-salt"
NUMBER = "SF1234567890"
SHIPMENT = {"carrier": "顺丰速运", "carrier_code": "shunfeng", "tracking_number": NUMBER,
            "shipped_at": "2026-11-12T09:30:00+08:00"}  # fmt: skip
SETTINGS = Settings(namespace="t", tracking={"kuaidi100": {"salt": SALT}})


class Pipeline:
    """The router (customers told of parcels) and the tracking intake."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        fanout = Fanout.configured(frozenset(), frozenset({"shipped", "parcel_problem"}))
        self.router = RouterService(engine, build_topology(SETTINGS), fanout=fanout)
        self.publisher = FakePublisher()
        self.intake = TrackingIntake(engine, self.publisher, build_topology(SETTINGS))  # type: ignore[arg-type]

    def ship(self) -> str:
        self.router.route(*parse_delivery(delivery_for(order(status="paid"))))
        shipped = order(status="shipped", version=2, shipment=SHIPMENT)
        return str(self.router.route(*parse_delivery(delivery_for(shipped))).order_number)

    def apply(self, report: TrackingReport) -> tuple[str, ...]:
        self.intake.accept(report)
        message = self.publisher.published[-1]
        delivery = Delivery(
            queue="t.router", body=message.body, message_id=message.message_id,
            correlation_id=message.correlation_id, headers=message.headers,
            exchange=message.exchange, routing_key=message.routing_key, redelivered=False,
            content_type="application/json", deliveries=1,
        )  # fmt: skip
        return self.router.route(*parse_delivery(delivery)).targets

    def stored(self) -> CanonicalOrder:
        with self.engine.connect() as conn:
            return CanonicalOrder.from_wire(str(conn.scalar(select(orders.c.body))).encode())


def _event(hour: int, text: str) -> TrackingEvent:
    return TrackingEvent(at=datetime(2026, 11, 13, hour, tzinfo=UTC), description=text)


def _report(state: ParcelState, *events: TrackingEvent) -> TrackingReport:
    return TrackingReport(tracking_number=NUMBER, state=state, events=list(events))


def _parcel_messages(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        ids = conn.scalars(select(outbox.c.message_id).where(outbox.c.message_id.like("%parcel%")))
        return list(ids)


def test_a_parcel_goes_to_the_door_and_its_problem_is_told_once(sqlite_engine: Engine) -> None:
    line = Pipeline(sqlite_engine)
    number = line.ship()
    moving = _report(ParcelState.IN_TRANSIT, _event(1, "【深圳】已揽收"))
    assert line.apply(moving) == ()  # tracking alone: no system hears of it
    assert line.stored().tracking is not None
    assert line.stored().tracking.state is ParcelState.IN_TRANSIT  # type: ignore[union-attr]
    stuck = _report(ParcelState.EXCEPTION, _event(3, "【武汉】快件异常，联系不上收件人"))
    assert line.apply(stuck) == ("customer:parcel",)
    again = _report(ParcelState.EXCEPTION, _event(5, "【武汉】再次派送失败"))
    assert line.apply(again) == ()  # told once
    assert _parcel_messages(sqlite_engine) == [f"{number}-parcel-customer"]
    done = _report(ParcelState.DELIVERED, _event(9, "【武汉】已签收"))
    assert "finance" in line.apply(done)
    final = line.stored()
    assert final.status.value == "delivered" and final.tracking is not None
    assert [e.description for e in final.tracking.events][:2] == [
        "【武汉】已签收",
        "【武汉】再次派送失败",
    ]
    late = _report(ParcelState.IN_TRANSIT, _event(10, "【武汉】派件中"))  # a late, odd push
    line.apply(late)
    assert line.stored().tracking.state is ParcelState.DELIVERED  # type: ignore[union-attr]


def test_a_parcel_no_order_shipped_with_is_refused_by_name(sqlite_engine: Engine) -> None:
    line = Pipeline(sqlite_engine)
    with pytest.raises(UnknownOrder, match="SF0000"):
        line.intake.accept(
            TrackingReport(tracking_number="SF0000", state=ParcelState.IN_TRANSIT, events=[])
        )


def _push(result: dict[str, Any], salt: str = SALT) -> dict[str, str]:
    param = json.dumps({"status": "polling", "message": "", "lastResult": result})
    return {"param": param, "sign": push_sign(param, salt)}


LAST_RESULT = {
    "state": "2", "ischeck": "0", "com": "shunfeng", "nu": NUMBER,
    "data": [{"context": "【武汉】快件异常", "time": "2026-11-13 11:00:00",
              "ftime": "2026-11-13 11:00:00"}],
}  # fmt: skip


def test_kuaidi100s_signed_push_reaches_the_intake(sqlite_engine: Engine) -> None:
    got: list[TrackingReport] = []

    def accept(report: TrackingReport) -> str:
        got.append(report)
        if report.tracking_number == "NOPE1":
            raise UnknownOrder("no order shipped with tracking number NOPE1")
        return "m"

    deps = IngestDeps(SETTINGS, sqlite_engine, FakePublisher(), build_topology(SETTINGS),  # type: ignore[arg-type]
                      accept_tracking=accept)  # fmt: skip
    with TestClient(create_ingest_app(deps)) as api:
        ok = api.post("/tracking/kuaidi100", data=_push(LAST_RESULT))
        assert ok.json() == {"result": True, "returnCode": "200", "message": "成功"}
        forged = api.post("/tracking/kuaidi100", data=_push(LAST_RESULT, salt="guess"))
        assert forged.status_code == 401
        unknown = api.post("/tracking/kuaidi100", data=_push({**LAST_RESULT, "nu": "NOPE1"}))
        assert unknown.json()["result"] is True  # received, and recorded for a person
    [report, _] = got
    assert (report.state, report.events[0].description) == (
        ParcelState.EXCEPTION,
        "【武汉】快件异常",
    )
    assert report.events[0].at.utcoffset() == timedelta(hours=8)
    with sqlite_engine.connect() as conn:
        reasons = [r.reason for r in conn.execute(select(rejected_requests))]
    assert reasons == ["bad_signature", "unknown_order"]


def test_the_query_is_polled_for_carriers_without_push(sqlite_engine: Engine) -> None:
    line = Pipeline(sqlite_engine)
    line.ship()
    asked: list[dict[str, list[str]]] = []

    def kuaidi100(request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        asked.append(form)
        param = form["param"][0]
        if form["sign"][0] != query_sign(param, "the-key", "CUST1"):
            return httpx.Response(
                200, json={"result": False, "returnCode": "601", "message": "key"}
            )
        return httpx.Response(200, json={**LAST_RESULT, "state": "5", "message": "ok"})

    spec = Kuaidi100Spec(salt=SALT, customer="CUST1", key="the-key", poll_carriers=["shunfeng"])
    client = httpx.Client(transport=httpx.MockTransport(kuaidi100))
    poll = Kuaidi100Poll(spec, sqlite_engine, client, line.intake.accept)
    assert poll.poll_once() == 1
    assert json.loads(asked[0]["param"][0]) == {"com": "shunfeng", "num": NUMBER}
    [message] = line.publisher.published
    assert json.loads(message.body)["tracking"]["state"] == "out_for_delivery"


def test_a_parcel_without_news_for_too_long_is_told_once(sqlite_engine: Engine) -> None:
    line = Pipeline(sqlite_engine)
    number = line.ship()
    now = datetime.now(UTC)
    with sqlite_engine.begin() as conn:
        conn.execute(update(orders).values(updated_at=now - timedelta(hours=80)))
    watch = ParcelWatch(sqlite_engine, build_topology(SETTINGS), timedelta(hours=72))
    assert watch.check_once() == 1 and watch.check_once() == 0
    assert _parcel_messages(sqlite_engine) == [f"{number}-parcel-customer"]
    stuck = _report(ParcelState.EXCEPTION, _event(3, "【武汉】快件异常"))
    assert line.apply(stuck) == ()  # told already, by the watch
    assert event_of({"status": "shipped"}, f"{number}-parcel-customer") == "parcel_problem"
