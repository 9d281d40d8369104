"""The customers' own lookup (connectors/order_lookup.py), on SQLite: the
order number (the platform's or ours) and the phone's last 4 digits give the
status, carrier, tracking number and steps, and nothing that names or
reaches the customer; a wrong number and a wrong tail get the same answer in
the same time; guessing the tail gets the order number locked; a client
that asks too often is refused."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from connectors.ingest_app import IngestDeps, create_ingest_app
from infra.messages import parse_delivery
from infra.settings import Settings
from infra.topology import build_topology
from router.service import RouterService
from tests.factories import FakePublisher, delivery_for, order

SHIPPED = {
    "carrier": "SF",
    "tracking_number": "SF1234567890",
    "shipped_at": "2026-11-12T09:30:00+08:00",
}
PERSONAL = ("李四", "13912345678", "lisi@example.com", "科技园南路", "深圳市", "南山区")


def _client(engine: Engine, **limits: Any) -> TestClient:
    settings = Settings(namespace="t", lookup={"answer_ms": 0, "per_client": 1000, **limits})
    deps = IngestDeps(settings, engine, FakePublisher(), build_topology(settings))  # type: ignore[arg-type]
    return TestClient(create_ingest_app(deps))


@pytest.fixture
def shipped(sqlite_engine: Engine) -> Iterator[str]:
    """A shipped order of the buyer with phone 13912345678; its number."""
    router = RouterService(sqlite_engine, build_topology(Settings(namespace="t")))
    router.route(*parse_delivery(delivery_for(order(external_id="TB-778899", status="paid"))))
    result = router.route(
        *parse_delivery(
            delivery_for(
                order(external_id="TB-778899", status="shipped", version=2, shipment=SHIPPED)
            )
        )
    )
    yield str(result.order_number)


def _ask(api: TestClient, number: str, tail: str, lang: str = "zh") -> Any:
    return api.post("/track.json", json={"order": number, "phone_tail": tail, "lang": lang})


def test_the_right_tail_shows_the_parcel_and_nothing_personal(
    sqlite_engine: Engine, shipped: str
) -> None:
    with _client(sqlite_engine) as api:
        for number in ("TB-778899", shipped):  # the platform's number, or ours
            answer = _ask(api, number, "5678")
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert (body["status"], body["status_text"]) == ("shipped", "已发货")
            assert (body["carrier"], body["tracking_number"]) == ("SF", "SF1234567890")
            assert [s["what"] for s in body["steps"]] == ["下单", "发货"]
            text = json.dumps(body, ensure_ascii=False)
            assert not [p for p in PERSONAL if p in text]
        english = _ask(api, "TB-778899", "5678", "en").json()
        assert english["status_text"] == "Shipped"
        page = api.post("/track", data={"order": "TB-778899", "phone_tail": "5678", "lang": "zh"})
        assert page.status_code == 200 and "SF1234567890" in page.text
        assert not [p for p in PERSONAL if p in page.text]


def test_a_wrong_number_and_a_wrong_tail_look_the_same(sqlite_engine: Engine, shipped: str) -> None:
    with _client(sqlite_engine, answer_ms=200) as api:
        answers = []
        for number, tail in (("TB-778899", "0000"), ("TB-NOSUCH", "5678")):
            started = time.monotonic()
            answer = _ask(api, number, tail)
            answers.append((answer.status_code, answer.json(), time.monotonic() - started))
    (s1, b1, t1), (s2, b2, t2) = answers
    assert (s1, b1) == (s2, b2) == (404, b1) and b1["error"] == "not_found"
    assert t1 >= 0.2 and t2 >= 0.2  # neither answers sooner than answer_ms


def test_guessing_the_tail_locks_the_order_number(sqlite_engine: Engine, shipped: str) -> None:
    """A brute-force run over the tails: after 5 wrong ones the number is
    locked, and the right tail, tried next, is refused too."""
    with _client(sqlite_engine, failures_per_order=5) as api:
        codes = [_ask(api, "TB-778899", f"{guess:04d}").status_code for guess in range(12)]
        assert codes[:5] == [404] * 5 and set(codes[5:]) == {429}
        locked = _ask(api, "TB-778899", "5678")
        assert locked.status_code == 429 and locked.json()["error"] == "locked"


def test_a_client_that_asks_too_often_is_refused(sqlite_engine: Engine, shipped: str) -> None:
    with _client(sqlite_engine, per_client=3) as api:
        codes = [_ask(api, "TB-778899", "5678").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]


@pytest.mark.parametrize(
    "payload",
    [
        {"order": "", "phone_tail": "5678"},
        {"order": "X", "phone_tail": "56"},
        {"order": "X" * 65, "phone_tail": "5678"},
        {"order": "X", "phone_tail": "５６７８"},  # full-width digits are not 4 digits
    ],
)
def test_a_malformed_lookup_says_what_to_enter(sqlite_engine: Engine, payload: Any) -> None:
    with _client(sqlite_engine) as api:
        answer = api.post("/track.json", json=payload)
        assert answer.status_code == 422 and answer.json()["error"] == "bad_input"
        assert api.post("/track.json", content=b"\xff not json").status_code == 422


def test_the_page_is_for_a_phone_in_chinese_first(sqlite_engine: Engine) -> None:
    with _client(sqlite_engine) as api:
        page = api.get("/track")
        english = api.get("/track?lang=en")
    assert 'name="viewport"' in page.text and "查询我的订单" in page.text
    assert "Look up my order" in english.text


def test_the_parcels_steps_show_where_it_was_not_what_the_carrier_wrote(
    sqlite_engine: Engine, shipped: str
) -> None:
    """A carrier's words may name who signed for it: only the place shows."""
    from canonical.tracking import ParcelState, TrackingEvent, TrackingReport
    from router.tracking import merged_tracking

    tracking = merged_tracking(
        None,
        TrackingReport(
            tracking_number="SF1234567890",
            state=ParcelState.DELIVERED,
            events=[
                TrackingEvent(
                    at="2026-11-13T10:00:00+08:00", description="【武汉】已签收，签收人：李四"
                ),
                TrackingEvent(at="2026-11-12T18:00:00+08:00", description="【深圳】已揽收"),
            ],
        ),
    )
    from sqlalchemy import update

    from infra.tables import orders

    with sqlite_engine.begin() as conn:
        body = json.loads(str(conn.scalar(select(orders.c.body))))
        body["tracking"] = tracking.model_dump(mode="json")
        conn.execute(update(orders).values(body=json.dumps(body)))
    with _client(sqlite_engine) as api:
        answer = _ask(api, "TB-778899", "5678").json()
    assert answer["parcel"] == "delivered" and answer["parcel_text"] == "已签收"
    assert [s["what"] for s in answer["steps"]][-2:] == ["运输途中 深圳", "运输途中 武汉"]
    assert "李四" not in json.dumps(answer, ensure_ascii=False)
