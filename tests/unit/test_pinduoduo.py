"""Pinduoduo: the order increment list in signed 30-minute windows, the cursor
(restart resumes, no gap, no repeat), errors, and the order mapping against
the fixture (connectors/fixtures/pinduoduo)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from sqlalchemy import Engine, select

from canonical.errors import EndpointUnavailable
from canonical.order import CanonicalOrder, json_schema
from canonical.validation import violations
from connectors.base import ConnectorError, OrderReference
from connectors.payload import SHANGHAI, canonical_order, load_json
from connectors.pinduoduo import (
    DETAIL_API,
    REFUND_API,
    PinduoduoAccount,
    PinduoduoPoller,
    PinduoduoPull,
    after_sales_of,
    pdd_spec,
    to_canonical,
)
from infra.settings import Settings
from infra.tables import poll_cursors

CLIENT_ID, SECRET, TOKEN = "pdd-client-id", "pdd-client-secret", "pdd-access-token"
FIXTURE = json.loads(
    (
        Path(str(resources.files("connectors") / "fixtures" / "pinduoduo")) / "order-increment.json"
    ).read_text("utf-8")
)
ORDERS: list[dict[str, Any]] = load_json(FIXTURE["response_text"], exact_numbers=True)[
    "order_sn_increment_get_response"
]["order_sn_list"]


def test_the_fixture_orders_read_exactly() -> None:
    for order, expect in zip(ORDERS, FIXTURE["expect"], strict=True):
        canonical = canonical_order(to_canonical(order, "pdd", "mall-1"))
        jsonschema.validate(json.loads(canonical.to_wire()), json_schema())
        assert canonical.external_id == expect["external_id"]
        assert str(canonical.total) == expect["total"]
        assert canonical.status.value == expect["status"]
        assert [[i.sku, i.quantity] for i in canonical.items] == expect["items"]
        assert canonical.customer.phone == expect["phone"]
        assert canonical.customer.masked_phone == expect.get("masked_phone")
        assert canonical.shipping_address.city == expect["city"]
        assert canonical.computed_total() == canonical.total
        assert violations(canonical) == []
    first = canonical_order(to_canonical(ORDERS[0], "pdd", "mall-1"))
    assert (first.items[0].unit_price, first.order_discount) == (Decimal("49.90"), Decimal("10.50"))


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"order_status": 3}, "delivered"),
        ({"refund_status": 4}, "refunded"),
        ({"confirm_status": 2}, "cancelled"),
        ({"group_status": 2}, "cancelled"),
    ],
)
def test_statuses(changes: dict[str, Any], status: str) -> None:
    assert canonical_order(to_canonical(ORDERS[0] | changes, "p", "s")).status.value == status


def test_an_amount_with_three_decimals_is_refused_not_rounded() -> None:
    with pytest.raises(ConnectorError, match="more than two decimals"):
        to_canonical(ORDERS[0] | {"pay_amount": Decimal("89.305")}, "p", "s")


class PinduoduoRouter:
    """The fake API: checks the signature and the 30-minute rule, answers with
    the orders whose updated_at falls in the window, two per page."""

    def __init__(
        self, orders: list[dict[str, Any]], refunds: list[dict[str, Any]] | None = None
    ) -> None:
        self.orders = orders
        self.refunds = refunds or []  # refund_list items
        self.types: list[str] = []
        self.windows: list[tuple[int, int, int]] = []
        self.fail_after = -1  # answer HTTP 502 after this many more requests
        self.error: dict[str, Any] | None = None
        self.after_first_page: Callable[[], None] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = json.loads(request.content)
        sign = form.pop("sign")
        text = SECRET + "".join(f"{k}{form[k]}" for k in sorted(form)) + SECRET
        assert sign == hashlib.md5(text.encode()).hexdigest().upper()
        assert (form["client_id"], form["access_token"], form["version"]) == (
            CLIENT_ID,
            TOKEN,
            "V1",
        )
        if self.fail_after == 0:
            return httpx.Response(502)
        self.fail_after -= 1
        if self.error is not None:
            return httpx.Response(200, json={"error_response": self.error})
        self.types.append(form["type"])
        if form["type"] == DETAIL_API:
            [order] = [o for o in self.orders if o["order_sn"] == form["order_sn"]]
            return _answer({"order_info_get_response": {"order_info": order}})
        if form["type"] == REFUND_API and "order_sn" in form:  # every one of the order
            mine = [r for r in self.refunds if r["order_sn"] == form["order_sn"]]
            body = {"refund_list": mine, "total_count": len(mine)}
            return _answer({"refund_increment_get_response": body})
        start, end = int(form["start_updated_at"]), int(form["end_updated_at"])
        assert 0 < end - start <= 1800, "Pinduoduo allows 30 minutes at most"
        page, size = int(form["page"]), int(form["page_size"])
        self.windows.append((start, end, page))
        if form["type"] == REFUND_API:
            changed = [r for r in self.refunds if start <= _stamp(r["updated_time"]) <= end]
            listed = changed[(page - 1) * size : page * size]
            body = {"refund_list": listed, "total_count": len(changed)}
            return _answer({"refund_increment_get_response": body})
        found = [o for o in self.orders if start <= _stamp(o["updated_at"]) <= end]
        chunk = found[(page - 1) * size : page * size]
        body = {"order_sn_list": chunk, "total_count": len(found)}
        if self.after_first_page is not None and len(self.windows) == 1:
            self.after_first_page()
        text_body = json.dumps({"order_sn_increment_get_response": body}, default=str)
        return httpx.Response(200, content=text_body.encode())


def _answer(body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, content=json.dumps(body, default=str).encode())


def _stamp(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp())


NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai


def many_orders() -> list[dict[str, Any]]:
    """Five orders updated 10:00-10:50 Shanghai time, a few minutes apart."""
    made = []
    for index, minute in enumerate([0, 5, 20, 35, 50]):
        made.append(
            ORDERS[0]
            | {
                "order_sn": f"231125-00000000000000{index}",
                "updated_at": f"2026-11-25 10:{minute:02d}:00",
            }
        )
    return made


def poller(
    engine: Engine, api: PinduoduoRouter, published: list[tuple[str, CanonicalOrder]],
    fail_publish: bool = False,
) -> PinduoduoPoller:  # fmt: skip
    def publish_many(orders: list[CanonicalOrder], ids: list[str]) -> list[Exception | None]:
        if fail_publish:
            return [EndpointUnavailable("broker down")] * len(orders)
        published.extend(zip(ids, orders, strict=True))
        return [None] * len(orders)

    spec = pdd_spec("https://pdd.example/api/router", start="2026-11-25T01:55:00Z", overlap=60)
    return PinduoduoPoller(
        "pdd",
        spec,
        None,
        engine,
        httpx.Client(transport=httpx.MockTransport(api)),
        publish_many,
        lambda reason, detail, item: None,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        access_token=TOKEN,
        shop="mall-1",
        now=lambda: NOW.timestamp(),
        sleep=lambda seconds: None,
    )


@pytest.fixture
def engine(sqlite_engine: Engine) -> Engine:
    return sqlite_engine  # migrated by the sqlite_url fixture


@pytest.fixture(autouse=True)
def two_per_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connectors.pinduoduo.PAGE_SIZE", 2)


def test_windows_pages_and_the_cursor(engine: Engine) -> None:
    api = PinduoduoRouter(many_orders())
    published: list[tuple[str, CanonicalOrder]] = []
    report = poller(engine, api, published).poll_once()
    # From 09:54 (the start less the overlap) to 10:57 (three minutes ago), in
    # windows of at most 30 minutes, every page of each, from the last back:
    # three orders in the first window (pages 1, then 2 and 1), two in the
    # second, none in the last.
    assert [(e - s, p) for s, e, p in api.windows] == [
        (1800, 1),
        (1800, 2),
        (1800, 1),
        (1800, 1),
        (180, 1),
    ]
    assert sorted({o.external_id for _, o in published}) == [o["order_sn"] for o in many_orders()]
    # Page 1 of the first window is read twice: the same two message ids.
    assert len(published) == 7 and len({mid for mid, _ in published}) == 5
    assert report.cursor == (NOW - timedelta(minutes=3)).isoformat()

    # A restart resumes from the stored cursor: the overlap re-reads the last
    # minute only, and an order read twice carries the same message id.
    api.windows.clear()
    later = poller(engine, api, published)
    later.now = lambda: (NOW + timedelta(minutes=10)).timestamp()
    later.poll_once()
    assert [(e - s) for s, e, _ in api.windows] == [660]
    ids = [mid for mid, _ in published]
    assert len(set(ids)) == 5


def test_an_order_updated_while_paging_does_not_hide_the_next_one(engine: Engine) -> None:
    orders = many_orders()
    api = PinduoduoRouter(orders)

    def first_order_changes() -> None:  # it leaves the window; the rest move up
        orders[0]["updated_at"] = "2026-11-25 10:58:00"

    api.after_first_page = first_order_changes
    published: list[tuple[str, CanonicalOrder]] = []
    poller(engine, api, published).poll_once()
    # Read forwards, page 2 would now be empty and the third order missed.
    assert {o.external_id for _, o in published} >= {o["order_sn"] for o in orders[1:]}


def test_a_failed_window_keeps_the_cursor_where_it_was(engine: Engine) -> None:
    api = PinduoduoRouter(many_orders())
    api.fail_after = 3  # the first window's three page reads, then Pinduoduo fails
    published: list[tuple[str, CanonicalOrder]] = []
    with pytest.raises(EndpointUnavailable):
        poller(engine, api, published).poll_once()
    first = poller(engine, api, published)
    assert first.cursor() == datetime(2026, 11, 25, 2, 24, tzinfo=UTC)  # the first window's end
    api.fail_after = -1
    first.poll_once()
    assert len({o.external_id for _, o in published}) == 5


def test_an_unconfirmed_publish_stores_nothing(engine: Engine) -> None:
    api = PinduoduoRouter(many_orders())
    with pytest.raises(EndpointUnavailable):
        poller(engine, api, [], fail_publish=True).poll_once()
    assert poller(engine, api, []).cursor() == datetime(2026, 11, 25, 1, 55, tzinfo=UTC)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ({"error_code": 70031, "error_msg": "调用过于频繁"}, EndpointUnavailable),
        ({"error_code": 10019, "error_msg": "access_token已过期"}, ConnectorError),
    ],
)
def test_pinduoduo_errors(engine: Engine, error: dict[str, Any], kind: type[Exception]) -> None:
    api = PinduoduoRouter([])
    api.error = error
    with pytest.raises(kind, match=str(error["error_code"])):
        poller(engine, api, []).poll_once()


# -- after-sales --------------------------------------------------------------


def refund(**changes: Any) -> dict[str, Any]:
    """A refund_list item with the fields Pinduoduo documents for it (id,
    order_sn, after_sales_type, after_sales_status, refund_amount in yuan,
    goods_number, outer_id, sku_id, goods_id, updated_time...); values ours."""
    return {
        "id": 301851299,
        "order_sn": ORDERS[0]["order_sn"],
        "after_sales_type": 2,
        "after_sales_status": 10,
        "refund_amount": "49.90",
        "goods_number": "1",
        "goods_id": 300001234567,
        "sku_id": "900001234567",
        "outer_id": "PDD-TEA-250G",
        "after_sale_reason": "不想要了",
        "updated_time": "2026-11-25 10:40:00",
        **changes,
    }


def test_after_sales_become_fetch_requests_with_their_own_cursor(engine: Engine) -> None:
    from connectors.pinduoduo import PinduoduoAfterSalesPoller

    api = PinduoduoRouter(many_orders(), [refund(), refund(id=2, order_sn="231125-0002")])
    fetches: list[OrderReference] = []

    def publish_fetches(refs: list[OrderReference]) -> list[Exception | None]:
        fetches.extend(refs)
        return [None] * len(refs)

    base = poller(engine, api, [])
    after_sales = PinduoduoAfterSalesPoller(
        "pdd", base.spec, None, engine, base.client, base.publish_many, base.record_bad,
        publish_fetches=publish_fetches, client_id=CLIENT_ID, client_secret=SECRET,
        access_token=TOKEN, shop="mall-1", now=lambda: NOW.timestamp(),
        sleep=lambda seconds: None,
    )  # fmt: skip
    report = after_sales.poll_once()
    assert set(api.types) == {REFUND_API}
    assert sorted((r.external_id, r.delivery_id) for r in fetches) == [
        ("231125-0002", "refund-2-20261125104000"),
        (ORDERS[0]["order_sn"], "refund-301851299-20261125104000"),
    ]
    assert report.published == 2
    with engine.connect() as conn:
        cursors = {r.channel for r in conn.execute(select(poll_cursors.c.channel))}
    assert cursors == {"pdd:after-sales"}  # the orders keep a cursor of their own


def test_an_order_is_fetched_with_every_after_sale_of_it() -> None:
    api = PinduoduoRouter(
        [ORDERS[0] | {"order_status": 2}],
        [refund(), refund(id=7, after_sales_type=4, after_sales_status=14)],  # an exchange
    )
    account = PinduoduoAccount(
        client_id=CLIENT_ID, client_secret=SECRET, access_token=TOKEN, shop="mall-1",
        endpoint="https://pdd.example/api/router",
    )  # fmt: skip
    source = PinduoduoPull().order_source(
        account, "pdd", httpx.Client(transport=httpx.MockTransport(api))
    )
    order, kept = source.fetch_raw(OrderReference(ORDERS[0]["order_sn"], "refund-1"))
    assert api.types == [DETAIL_API, REFUND_API]
    [sale] = order.after_sales
    assert (sale.id, sale.kind.value, sale.status.value, str(sale.amount)) == (
        "301851299", "refund", "completed", "49.90",
    )  # fmt: skip
    assert [(x.sku, x.quantity) for x in sale.lines] == [("PDD-TEA-250G", 1)]
    assert violations(order) == []
    assert source.read_fetched(kept) == order  # the replay: no call


@pytest.mark.parametrize(
    ("changes", "order_status", "kind", "status"),
    [
        ({"after_sales_type": 2, "after_sales_status": 2}, 1, "cancel", "requested"),
        ({"after_sales_type": 3, "after_sales_status": 7}, 3, "return", "agreed"),
        ({"after_sales_type": 2, "after_sales_status": 6}, 2, "refund", "refused"),
        ({"after_sales_type": 2, "after_sales_status": 11}, 2, "refund", "withdrawn"),
        ({"updated_time": "1764038400"}, 2, "refund", "completed"),  # Unix seconds too
    ],
)  # fmt: skip
def test_after_sale_types_and_statuses(
    changes: dict[str, Any], order_status: int, kind: str, status: str
) -> None:
    fields = to_canonical(ORDERS[0] | {"order_status": order_status}, "p", "s")
    [sale] = after_sales_of([refund(**changes)], fields)
    assert (sale["kind"], sale["status"]) == (kind, status)


def test_an_after_sale_status_pinduoduo_adds_later_is_named_not_guessed() -> None:
    fields = to_canonical(ORDERS[0], "p", "s")
    with pytest.raises(ConnectorError, match="status 99"):
        after_sales_of([refund(after_sales_status=99)], fields)


def test_a_pinduoduo_channel_gets_a_fetch_worker_for_its_after_sales() -> None:
    from connectors.registry import fetching_channels
    from infra.setting_specs import PollerSpec

    account = {"client_id": CLIENT_ID, "client_secret": SECRET, "access_token": TOKEN,
               "shop": "mall-1"}  # fmt: skip
    settings = Settings(pollers={"pdd": PollerSpec(connector="pinduoduo", pinduoduo=account)})
    assert "pdd" in fetching_channels(settings)
