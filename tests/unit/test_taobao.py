"""Taobao/Tmall: TMC messages become fetch requests, confirmed to TMC only once
queued; trades are read from taobao.trade.fullinfo.get (signed, against a
fake TOP router); the trade mapping against the fixture."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from canonical.errors import EndpointUnavailable
from canonical.order import json_schema
from canonical.validation import violations
from connectors.base import ConnectorError, OrderReference
from connectors.payload import canonical_order
from connectors.publishing import fetch_publisher
from connectors.registry import check_poller, fetching_channels
from connectors.taobao import TaobaoOrders, TmcPuller, TopApi, read_trade, to_canonical
from infra.setting_specs import PollerSpec
from infra.settings import Settings
from infra.topology import build_topology
from orderbus.bootstrap import bootstrap
from orderbus.runner import Daemon
from tests.factories import FakePublisher
from tests.top_fake import FakeTop, message_text

APP_KEY, SECRET, SESSION = "12499723", "top-app-secret", "6100a2b3c4d5e6f-session"
FIXTURES = Path(str(resources.files("connectors") / "fixtures" / "taobao-tmc"))
CONSUME = json.loads((FIXTURES / "tmc-consume.json").read_text("utf-8"))
TRADE = json.loads((FIXTURES / "trade-fullinfo.json").read_text("utf-8"))
TID = TRADE["expect"]["external_id"]


def trade_answer(**changes: Any) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(TRADE["response_text"])["trade_fullinfo_get_response"]
    answer["trade"].update(changes)
    return answer


def test_the_trade_reads_as_documented() -> None:
    order = read_trade(trade_answer(), OrderReference(TID, "tmc-1"), "tb")
    expect = TRADE["expect"]
    jsonschema.validate(json.loads(order.to_wire()), json_schema())
    assert order.external_id == expect["external_id"]  # 19 digits, exact
    assert (order.currency, str(order.total), order.status.value) == ("CNY", "179.00", "paid")
    assert [[i.sku, i.quantity] for i in order.items] == expect["items"]
    assert (order.customer.phone, order.shipping_address.city, order.shop) == (
        expect["phone"],
        expect["city"],
        expect["shop"],
    )
    assert (str(order.shipping_fee), str(order.order_discount)) == ("10.00", "20.00")
    assert order.shipping_address.postal_code == "710000"
    assert order.placed_at.isoformat() == "2026-11-11T00:00:01+08:00"
    assert violations(order) == []


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("WAIT_BUYER_PAY", "created"),
        ("WAIT_SELLER_SEND_GOODS", "paid"),
        ("SELLER_CONSIGNED_PART", "paid"),
        ("WAIT_BUYER_CONFIRM_GOODS", "shipped"),
        ("TRADE_FINISHED", "delivered"),
        ("TRADE_CLOSED", "refunded"),
        ("TRADE_CLOSED_BY_TAOBAO", "cancelled"),
    ],
)
def test_statuses(status: str, expected: str) -> None:
    trade = trade_answer(status=status)["trade"]
    assert canonical_order(to_canonical(trade, "tb", "s")).status.value == expected


def test_a_masked_phone_is_left_out_and_an_unknown_status_named() -> None:
    trade = trade_answer(receiver_mobile="*******3069")["trade"]
    masked = canonical_order(to_canonical(trade, "tb", "s"))
    assert (masked.customer.phone, masked.customer.masked_phone) == (None, "*******3069")
    assert violations(masked) == []
    with pytest.raises(ConnectorError, match="NEW_STATUS"):
        to_canonical(trade_answer(status="NEW_STATUS")["trade"], "tb", "s")


@pytest.fixture
def top() -> FakeTop:
    fake = FakeTop(APP_KEY, SECRET, SESSION)
    fake.trades[TID] = TRADE["response_text"]
    return fake


def api_for(fake: FakeTop, session: str = SESSION) -> TopApi:
    return TopApi(httpx.Client(transport=fake.transport()), APP_KEY, SECRET, session, "https://top")


def test_a_trade_is_fetched_with_a_signed_request(top: FakeTop) -> None:
    order = TaobaoOrders(api_for(top), "tb").fetch(OrderReference(TID, "tmc-1"))
    assert (order.external_id, order.shop) == (TID, "usernick")
    assert top.calls == ["taobao.trade.fullinfo.get"]


def test_taobao_refusals_and_outages_are_told_apart(top: FakeTop) -> None:
    api = api_for(top)
    with pytest.raises(ConnectorError, match="交易不存在"):
        api.trade("1")
    with pytest.raises(ConnectorError, match="Invalid session"):
        api_for(top, session="expired").trade(TID)
    top.limited = 1
    with pytest.raises(EndpointUnavailable, match="App Call Limited"):
        api.trade(TID)
    top.down = 1
    with pytest.raises(EndpointUnavailable, match="502"):
        api.trade(TID)
    assert api.trade(TID)["trade"]["status"] == "WAIT_SELLER_SEND_GOODS"
    wrong = TopApi(httpx.Client(transport=top.transport()), APP_KEY, "wrong", SESSION)
    with pytest.raises(EndpointUnavailable, match="Invalid signature"):
        wrong.trade(TID)


def puller(top: FakeTop, publisher: FakePublisher) -> TmcPuller:
    settings = Settings(namespace="t")
    topology = build_topology(settings, fetching_channels(settings))
    publish = fetch_publisher(publisher, topology, "tb")  # type: ignore[arg-type]
    return TmcPuller("tb", api_for(top), publish, group_name="orderbus")


def test_tmc_trade_messages_are_queued_then_confirmed_and_others_confirmed(top: FakeTop) -> None:
    top.queue = [
        message_text(CONSUME["item_stock_changed"]),
        message_text(CONSUME["trade_buyer_pay"]),
    ]
    publisher = FakePublisher()
    assert puller(top, publisher).poll_once() == 1
    assert [(m.routing_key, m.message_id) for m in publisher.published] == [
        ("fetch.tb", "tb.fetch.tmc-7104300007405429233")
    ]
    assert json.loads(publisher.published[0].body) == {
        "external_id": TID,
        "delivery_id": "tmc-7104300007405429233",
        "shop": "usernick",
    }
    # The item message is confirmed too (it is not an order); ids exact.
    assert top.confirmed == ["7104300007405429232", "7104300007405429233"]
    assert top.calls == ["taobao.tmc.messages.consume", "taobao.tmc.messages.confirm"]


def test_a_message_whose_request_was_not_confirmed_is_left_to_tmc(top: FakeTop) -> None:
    top.queue = [message_text(CONSUME["trade_buyer_pay"])]
    publisher = FakePublisher()
    publisher.down = True
    pull = puller(top, publisher)
    assert pull.poll_once() == 0
    assert top.confirmed == [] and list(top.unconfirmed) == ["7104300007405429233"]
    assert "taobao.tmc.messages.confirm" not in top.calls

    publisher.down = False
    top.redeliver_unconfirmed()
    assert pull.poll_once() == 1
    assert top.confirmed == ["7104300007405429233"]
    assert [m.message_id for m in publisher.published] == ["tb.fetch.tmc-7104300007405429233"]
    assert pull.poll_once() == 0  # nothing left


def test_ingest_pulls_tmc_and_fetches_trades(sqlite_url: str) -> None:
    account = {"app_key": APP_KEY, "app_secret": SECRET, "session": SESSION}
    app = bootstrap(
        Settings(
            broker_url="memory://",
            database_url=sqlite_url,
            ingest_port=0,
            pollers={"tb": PollerSpec(connector="taobao-tmc", taobao=account, interval=1)},
        )
    )
    assert isinstance(app.poller("tb"), TmcPuller)
    daemon = Daemon(app, ("ingest",))
    daemon.build()
    assert sorted(t.name for t in daemon.threads) == [
        "fetch-tb",
        "ingest",
        "poll-tb",
        "raw-keeper",
        "rejection-spool",
        "shipments",
    ]
    with pytest.raises(ValueError, match="needs its taobao settings"):
        check_poller(PollerSpec(connector="taobao-tmc"))


REFUND_FIXTURE = json.loads((FIXTURES / "refund-get.json").read_text("utf-8"))
REFUND = json.loads(REFUND_FIXTURE["refund_text"])["refund_get_response"]["refund"]
REFUNDED_OID = "2298765432109876545"


def _with_refund_on_line(top: FakeTop, refund: dict[str, Any], status: str) -> None:
    answer = {"trade_fullinfo_get_response": trade_answer(status=status)}
    for line in answer["trade_fullinfo_get_response"]["trade"]["orders"]["order"]:
        if str(line["oid"]) == REFUNDED_OID:
            line.update(refund_id=refund["refund_id"], refund_status=refund["status"])
    top.trades[TID] = json.dumps(answer)
    top.refunds[str(refund["refund_id"])] = refund


def test_a_line_refund_is_fetched_with_its_trade_as_an_after_sale(top: FakeTop) -> None:
    _with_refund_on_line(top, REFUND, "WAIT_BUYER_CONFIRM_GOODS")
    order, kept = TaobaoOrders(api_for(top), "tb").fetch_raw(OrderReference(TID, "tmc-9"))
    assert top.calls == ["taobao.trade.fullinfo.get", "taobao.refund.get"]
    [sale] = order.after_sales
    assert (sale.id, sale.kind.value, sale.status.value, str(sale.amount)) == (
        "160390112233445566", "refund", "completed", "44.50",
    )  # fmt: skip
    [line] = sale.lines
    assert (line.sku, line.quantity, str(line.amount)) == ("taobao-100018587598", 1, "44.50")
    assert (
        sale.updated_at is not None and sale.updated_at.isoformat() == "2026-11-15T10:20:30+08:00"
    )
    assert violations(order) == []
    # The kept answer (原始单) holds the refund: the replay reads it again, no call.
    assert TaobaoOrders(api_for(top), "tb").read_fetched(kept).after_sales == [sale]


@pytest.mark.parametrize(
    ("changes", "kind", "status"),
    [
        ({"order_status": "WAIT_SELLER_SEND_GOODS", "status": "WAIT_SELLER_AGREE"},
         "cancel", "requested"),
        ({"has_good_return": True, "status": "WAIT_BUYER_RETURN_GOODS"}, "return", "agreed"),
        ({"has_good_return": "true", "status": "WAIT_SELLER_CONFIRM_GOODS"}, "return", "agreed"),
        ({"status": "SELLER_REFUSE_BUYER"}, "refund", "refused"),
        ({"status": "CLOSED"}, "refund", "withdrawn"),
    ],
)  # fmt: skip
def test_refund_kinds_and_statuses(
    top: FakeTop, changes: dict[str, Any], kind: str, status: str
) -> None:
    _with_refund_on_line(top, {**REFUND, **changes}, "WAIT_BUYER_CONFIRM_GOODS")
    [sale] = TaobaoOrders(api_for(top), "tb").fetch(OrderReference(TID, "tmc-9")).after_sales
    assert (sale.kind.value, sale.status.value) == (kind, status)


def test_a_refund_status_taobao_adds_later_is_named_not_guessed(top: FakeTop) -> None:
    _with_refund_on_line(top, {**REFUND, "status": "WAIT_PLATFORM_DECIDE"}, "TRADE_FINISHED")
    with pytest.raises(ConnectorError, match="WAIT_PLATFORM_DECIDE"):
        TaobaoOrders(api_for(top), "tb").fetch(OrderReference(TID, "tmc-9"))


def test_a_line_without_a_refund_costs_no_call(top: FakeTop) -> None:
    answer = {"trade_fullinfo_get_response": trade_answer()}
    answer["trade_fullinfo_get_response"]["trade"]["orders"]["order"][0].update(
        refund_id="1", refund_status="NO_REFUND"
    )
    top.trades[TID] = json.dumps(answer)
    assert TaobaoOrders(api_for(top), "tb").fetch(OrderReference(TID, "t")).after_sales == []
    assert top.calls == ["taobao.trade.fullinfo.get"]


def test_tmc_refund_messages_fetch_their_trade(top: FakeTop) -> None:
    top.queue = [REFUND_FIXTURE["tmc_message"]]
    publisher = FakePublisher()
    assert puller(top, publisher).poll_once() == 1
    assert json.loads(publisher.published[0].body)["external_id"] == TID
    assert top.confirmed == ["7104300007405429240"]
