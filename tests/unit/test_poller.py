"""The generic REST pull connector: cursor, paging, restart, rate limits."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from canonical.errors import BrokerUnavailable, EndpointUnavailable
from canonical.order import CanonicalOrder
from connectors.mapping import FieldMapping
from connectors.poller import PollSpec, RestPoller
from infra.database import upgrade

MAPPING = FieldMapping(
    {
        "external_id": "$.id",
        "status": {"path": "$.status", "values": {"PAID": "paid", "SHIPPED": "shipped"}},
        "currency": {"value": "CNY"},
        "customer.phone": "$.phone",
        "shipping_address.province": {"value": "上海市"},
        "shipping_address.city": {"value": "上海市"},
        "shipping_address.district": {"value": "徐汇区"},
        "shipping_address.street": "$.address",
        "items": {
            "path": "$.lines[*]",
            "fields": {"sku": "$.sku", "quantity": "$.qty", "unit_price": "$.price"},
        },
        "total": "$.total",
        "placed_at": "$.created",
        "updated_at": "$.updated",
    }
)


def remote_order(n: int, updated: str, status: str = "PAID") -> dict[str, Any]:
    return {
        "id": f"R-{n}",
        "status": status,
        "phone": "13800138000",
        "address": f"漕溪北路 {n} 号",
        "lines": [{"sku": "TEA", "qty": 1, "price": "10.00"}],
        "total": "10.00",
        "created": "2026-11-11T08:00:00+08:00",
        "updated": updated,
    }


class Platform:
    """A platform's order list API: pages of orders updated after a time."""

    def __init__(self, orders: list[dict[str, Any]], page_size: int = 2) -> None:
        self.orders = orders
        self.page_size = page_size
        self.requests: list[httpx.Request] = []
        self.answers: list[Callable[[httpx.Request], httpx.Response] | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.answers:
            special = self.answers.pop(0)
            if special is not None:
                return special(request)
        since = datetime.fromisoformat(request.url.params["updated_after"].replace("Z", "+00:00"))
        page = int(request.url.params["page"])
        changed = sorted(
            (o for o in self.orders if datetime.fromisoformat(o["updated"]) >= since),
            key=lambda o: o["updated"],
        )
        start = (page - 1) * self.page_size
        return httpx.Response(
            200, json={"data": {"orders": changed[start : start + self.page_size]}}
        )


class Broker:
    def __init__(self) -> None:
        self.published: list[tuple[str, CanonicalOrder]] = []
        self.down = False

    def __call__(self, orders: list[CanonicalOrder], ids: list[str]) -> list[Exception | None]:
        if self.down:
            return [BrokerUnavailable("broker unavailable") for _ in orders]
        self.published += list(zip(ids, orders, strict=True))
        return [None] * len(orders)


@pytest.fixture
def engine(sqlite_engine: Engine) -> Engine:
    upgrade(str(sqlite_engine.url))
    return sqlite_engine


def poller(
    engine: Engine,
    platform: Platform,
    broker: Broker,
    bad: list[tuple[str, str, str]] | None = None,
    sleeps: list[float] | None = None,
) -> RestPoller:
    spec = PollSpec(
        url="https://api.example.com/orders",
        items="$.data.orders",
        overlap=60,
        min_request_interval=0.5,
        start="2026-11-11T00:00:00+00:00",
    )
    return RestPoller(
        "api-shop",
        spec,
        MAPPING,
        engine,
        httpx.Client(transport=httpx.MockTransport(platform)),
        broker,
        lambda reason, detail, item: (bad if bad is not None else []).append(
            (reason, detail, item)
        ),
        sleep=(sleeps if sleeps is not None else []).append,
        clock=lambda: 0.0,
    )


def test_pages_are_published_and_the_cursor_moves_to_the_newest_change(engine: Engine) -> None:
    platform = Platform([remote_order(i, f"2026-11-11T01:0{i}:00+00:00") for i in range(5)])
    broker, sleeps = Broker(), list[float]()
    report = poller(engine, platform, broker, sleeps=sleeps).poll_once()
    # Pages 1-3 (2 + 2 + 1), then an empty one; then 3, 2 and 1 again, from
    # the last back (see the next test): each order twice, under one id.
    pages = [r.url.params["page"] for r in platform.requests]
    assert pages == ["1", "2", "3", "4", "3", "2", "1"]
    assert [o.external_id for _, o in broker.published[:5]] == [f"R-{i}" for i in range(5)]
    assert len({i for i, _ in broker.published}) == 5
    assert (report.pages, report.published, report.bad) == (7, 10, 0)
    assert report.cursor == "2026-11-11T01:04:00+00:00"
    assert platform.requests[0].url.params["updated_after"] == "2026-11-10T23:59:00Z"
    assert sleeps == [0.5] * 6  # one request per min_request_interval


def test_an_order_updated_while_paging_does_not_hide_the_next_one(engine: Engine) -> None:
    orders = [remote_order(i, f"2026-11-11T01:0{i}:00+00:00") for i in range(5)]
    platform, broker = Platform(orders), Broker()

    def changes_after_page_one(request: httpx.Request) -> httpx.Response:
        # R-0 is updated after page 1 was read: it moves to the end, and R-2
        # moves up onto page 1, which a forward read has already passed.
        orders[0] = remote_order(0, "2026-11-11T02:00:00+00:00", status="SHIPPED")
        platform.answers.clear()
        return platform(request)

    platform.answers = [None, changes_after_page_one]
    poller(engine, platform, broker).poll_once()
    assert {o.external_id for _, o in broker.published} == {f"R-{i}" for i in range(5)}


def test_a_restart_resumes_from_the_stored_cursor_and_repeats_nothing_with_effect(
    engine: Engine,
) -> None:
    orders = [remote_order(i, f"2026-11-11T01:0{i}:00+00:00") for i in range(3)]
    platform, broker = Platform(orders), Broker()
    poller(engine, platform, broker).poll_once()
    first = {o.external_id: i for i, o in broker.published}
    orders.append(remote_order(3, "2026-11-11T01:30:00+00:00"))
    orders[0] = remote_order(0, "2026-11-11T01:31:00+00:00", status="SHIPPED")
    again = Platform(orders)
    seen = len(broker.published)
    poller(engine, again, broker).poll_once()  # a new process: the cursor is in the database
    assert again.requests[0].url.params["updated_after"] == "2026-11-11T01:01:00Z"
    second = broker.published[seen:]
    # are inside the overlap and polled again: the same ids, recorded once.
    assert {o.external_id: i for i, o in second if o.external_id in ("R-1", "R-2")} == {
        "R-1": first["R-1"],
        "R-2": first["R-2"],
    }
    assert {o.external_id for _, o in second} == {"R-0", "R-1", "R-2", "R-3"}
    assert {o.status.value for _, o in second if o.external_id == "R-0"} == {"shipped"}


def test_a_failed_publish_stores_no_cursor(engine: Engine) -> None:
    platform, broker = Platform([remote_order(1, "2026-11-11T01:00:00+00:00")]), Broker()
    broker.down = True
    p = poller(engine, platform, broker)
    with pytest.raises(BrokerUnavailable):
        p.poll_once()
    assert p.cursor().isoformat() == "2026-11-11T00:00:00+00:00"
    broker.down = False
    assert p.poll_once().published == 1


def test_429_waits_for_retry_after_then_goes_on(engine: Engine) -> None:
    platform, broker = Platform([remote_order(1, "2026-11-11T01:00:00+00:00")]), Broker()
    sleeps: list[float] = []
    platform.answers = [lambda r: httpx.Response(429, headers={"Retry-After": "7"})]
    report = poller(engine, platform, broker, sleeps=sleeps).poll_once()
    assert report.published == 1
    assert 7.0 in sleeps


def test_a_platform_that_stays_down_ends_the_poll_without_moving_the_cursor(
    engine: Engine,
) -> None:
    platform, broker = Platform([]), Broker()
    platform.answers = [lambda r: httpx.Response(502)] * 5
    p = poller(engine, platform, broker)
    with pytest.raises(EndpointUnavailable):
        p.poll_once()
    assert len(platform.requests) == 5  # tried PollSpec.attempts times, with backoff
    assert p.cursor().isoformat() == "2026-11-11T00:00:00+00:00"


def test_an_order_the_mapping_cannot_read_is_recorded_and_the_rest_go_on(
    engine: Engine,
) -> None:
    broken = remote_order(2, "2026-11-11T01:02:00+00:00")
    del broken["total"]
    platform = Platform([remote_order(1, "2026-11-11T01:01:00+00:00"), broken])
    broker, bad = Broker(), list[tuple[str, str, str]]()
    report = poller(engine, platform, broker, bad=bad).poll_once()
    assert [o.external_id for _, o in broker.published] == ["R-1"]
    [(reason, detail, item)] = bad
    assert reason == "schema_mismatch" and "total: nothing at $.total" in detail
    assert json.loads(item)["id"] == "R-2"
    assert report.bad == 1
