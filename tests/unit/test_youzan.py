"""Youzan push messages: what the contract suite does not cover (test messages,
non-trade and status-only events, the client id, resends, the version, and
envelope fields outside the signature)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from canonical.errors import EndpointUnavailable
from canonical.order import CanonicalOrder
from canonical.validation import violations
from connectors.base import ChannelConfig, ConnectorError, OrderReference, WebhookRequest
from connectors.ingest_app import IngestDeps, create_ingest_app
from connectors.payload import signed_delivery_id
from connectors.registry import fetching_channels
from connectors.youzan import YouzanApi, YouzanConnector, YouzanOrders, youzan_sign
from infra.setting_specs import ChannelSpec
from infra.settings import Settings
from infra.tables import rejected_requests
from infra.topology import build_topology
from tests.factories import FakePublisher

SECRET = "youzan-client-secret"
CLIENT_ID = "d3ccc77bb8b5bf4e08"
FIXTURES = Path(str(resources.files("connectors") / "fixtures" / "youzan"))
# The trade_TradePaid sample's msg exactly as published (yuyan2077/youzanyunpay,
# server/server.go): a status event with no order lines in it.
STATUS_ONLY_MSG = (
    "%7B%22full_order_info%22%3A%7B%22remark_info%22%3A%7B%22buyer_message%22%3A%22%22%7D%2C"
    "%22pay_info%22%3A%7B%22outer_transactions%22%3A%5B%224200000168201810166190128957%22%5D%2C"
    "%22post_fee%22%3A%220.00%22%2C%22total_fee%22%3A%220.01%22%2C%22payment%22%3A%220.01%22%2C"
    "%22transaction%22%3A%5B%22181016214103000041%22%5D%7D%2C%22source_info%22%3A%7B"
    "%22is_offline_order%22%3Afalse%2C%22source%22%3A%7B%22platform%22%3A%22wx%22%2C"
    "%22wx_entrance%22%3A%22direct_buy%22%7D%7D%2C%22order_info%22%3A%7B%22consign_time%22%3A%7B%7D"
    "%2C%22order_extra%22%3A%7B%22is_from_cart%22%3A%22false%22%7D%2C%22created%22%3A"
    "%222018-10-16+21%3A41%3A01%22%2C%22status_str%22%3A%22%E5%B7%B2%E6%94%AF%E4%BB%98%22%2C"
    "%22expired_time%22%3A%222018-10-16+22%3A11%3A01%22%2C%22success_time%22%3A%7B%7D%2C"
    "%22type%22%3A6%2C%22tid%22%3A%22E20181016214101073500004%22%2C%22confirm_time%22%3A%7B%7D%2C"
    "%22pay_time%22%3A%222018-10-16+21%3A41%3A10%22%2C%22update_time%22%3A"
    "%222018-10-16+21%3A41%3A11%22%2C%22is_retail_order%22%3Afalse%2C%22pay_type%22%3A10%2C"
    "%22team_type%22%3A1%2C%22refund_state%22%3A0%2C%22close_type%22%3A0%2C%22status%22%3A"
    "%22TRADE_PAID%22%2C%22express_type%22%3A9%2C%22order_tags%22%3A%7B%22is_payed%22%3Atrue%2C"
    "%22is_secured_transactions%22%3Atrue%7D%7D%7D%7D"
)

connector = YouzanConnector()
channel = ChannelConfig("yz", "youzan", (SECRET,), app_key=CLIENT_ID)


def paid_envelope() -> dict[str, Any]:
    body = json.loads((FIXTURES / "trade-paid.json").read_text("utf-8"))["body"]
    assert isinstance(body, dict)
    return body


def signed(envelope: dict[str, Any], secret: str = SECRET) -> bytes:
    envelope = {**envelope, "sign": youzan_sign(envelope["client_id"], envelope["msg"], secret)}
    return json.dumps(envelope, ensure_ascii=False).encode("utf-8")


def request(body: bytes) -> WebhookRequest:
    return WebhookRequest({"content-type": "application/json"}, body, 0.0)


def read(body: bytes) -> tuple[CanonicalOrder | None, str | None, str | None]:
    connector.authenticate(request(body), channel, 300)
    result = connector.read(request(body), channel)
    if not result.arrivals:
        return None, None, result.ignored
    return result.arrivals[0].order, result.arrivals[0].delivery_id, None


def test_the_paid_trade_is_read_exactly() -> None:
    order, delivery, _ = read(signed(paid_envelope()))
    assert order is not None
    assert delivery == signed_delivery_id(paid_envelope()["msg"])  # not the unsigned msg_id
    assert order.version == 1539697271  # the signed update_time, 2018-10-16 21:41:11 +08:00
    assert order.shop == "default"  # the channel sets no shop; the unsigned kdt_id is not used
    assert order.placed_at.isoformat() == "2018-10-16T21:41:01+08:00"
    assert [(i.sku, str(i.unit_price), str(i.discount)) for i in order.items] == [
        ("spbm001", "1.00", "0.20"),
        ("YZ-TEA-01", "5.50", "0.30"),
    ]
    assert (str(order.shipping_fee), str(order.order_discount), str(order.total)) == (
        "6.00",
        "0.00",
        "14.00",
    )
    assert order.computed_total() == order.total
    assert order.shipping_address.district == "西湖区"
    assert order.customer.name == "赞宝"


def test_a_resend_or_a_replay_with_new_envelope_fields_is_the_same_delivery() -> None:
    envelope = {k: v for k, v in paid_envelope().items() if k != "msg_id"}
    first, first_id, _ = read(signed(envelope))
    _, resent, _ = read(signed({**envelope, "sendCount": 3}))
    # a captured push replayed with a new msg_id, a higher version, another kdt_id
    replay = {**envelope, "msg_id": "new-id", "version": 9999999999, "kdt_id": 1}
    replayed, replayed_id, _ = read(signed(replay))
    assert first_id == resent == replayed_id == signed_delivery_id(envelope["msg"])
    assert first is not None and replayed is not None
    assert (replayed.version, replayed.shop) == (first.version, first.shop)
    assert replayed.content_hash() == first.content_hash()


def test_the_envelope_outside_the_signature_cannot_change_the_order() -> None:
    # type, status and id are not signed: the order is read from msg alone.
    envelope = {**paid_envelope(), "status": "TRADE_CLOSED", "id": "E-someone-else"}
    order, _, _ = read(signed(envelope))
    assert order is not None
    assert order.external_id == "E20181016214101073500004"
    assert order.status.value == "paid"


def test_a_message_for_another_client_id_is_refused() -> None:
    envelope = {**paid_envelope(), "client_id": "another-app"}
    with pytest.raises(ConnectorError) as caught:
        read(signed(envelope))
    assert (caught.value.status, caught.value.reason) == (401, "wrong_app")


def test_the_test_message_is_ignored_even_unsigned() -> None:
    body = json.dumps({"test": True, "type": "TRADE_ORDER_STATE", "msg": "", "sign": ""}).encode()
    order, _, ignored = read(body)
    assert order is None
    assert ignored is not None and "test message" in ignored


def test_a_test_message_with_an_order_in_it_is_still_not_an_order() -> None:
    order, _, ignored = read(signed({**paid_envelope(), "test": True}))
    assert order is None and ignored is not None


def test_a_refund_event_is_not_a_trade_and_is_ignored() -> None:
    envelope = {**paid_envelope(), "type": "TRADE_ORDER_REFUND"}
    order, _, ignored = read(signed(envelope))
    assert order is None
    assert ignored is not None and "TRADE_ORDER_REFUND" in ignored


def test_the_documented_status_only_message_is_ignored_with_its_trade_named() -> None:
    envelope = {**paid_envelope(), "msg": STATUS_ONLY_MSG, "status": "PAID"}
    order, _, ignored = read(signed(envelope))
    assert order is None
    assert ignored is not None
    assert "E20181016214101073500004" in ignored and "no order lines" in ignored


def test_msg_that_is_not_utf8_is_refused_with_its_reason() -> None:
    envelope = {**paid_envelope(), "msg": "%7B%22a%22%3A%22%B7%22%7D"}
    with pytest.raises(ConnectorError) as caught:
        read(signed(envelope))
    assert (caught.value.status, caught.value.reason) == (422, "invalid_encoding")


def test_an_unknown_trade_status_is_refused_naming_it() -> None:
    envelope = paid_envelope()
    envelope["msg"] = envelope["msg"].replace("WAIT_SELLER_SEND_GOODS", "SOMETHING_NEW")
    with pytest.raises(ConnectorError) as caught:
        read(signed(envelope))
    assert caught.value.status == 422
    assert "SOMETHING_NEW" in caught.value.detail


@pytest.fixture
def client(sqlite_engine: Engine, publisher: FakePublisher) -> Iterator[TestClient]:
    settings = Settings(
        channel_secrets={"yz": [SECRET]},
        channels={"yz": ChannelSpec(connector="youzan", app_key=CLIENT_ID)},
        namespace="t",
    )
    topology = build_topology(settings, fetching_channels(settings))
    deps = IngestDeps(settings, sqlite_engine, publisher, topology)  # type: ignore[arg-type]
    with TestClient(create_ingest_app(deps)) as c:
        yield c


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


def test_a_resent_push_is_published_under_one_message_id(
    client: TestClient, publisher: FakePublisher
) -> None:
    body = signed(paid_envelope())
    headers = {"Content-Type": "application/json"}
    first = client.post("/ingest/yz", content=body, headers=headers)
    again = client.post("/ingest/yz", content=body, headers=headers)
    # Youzan counts a push as received only on this answer.
    assert first.status_code == again.status_code == 200, first.text
    assert first.json() == again.json() == {"code": 0, "msg": "success"}
    ids = [m.message_id for m in publisher.published]
    assert ids == ["yz." + signed_delivery_id(paid_envelope()["msg"])] * 2


def test_a_forged_push_is_401_and_recorded(
    client: TestClient, publisher: FakePublisher, sqlite_engine: Engine
) -> None:
    body = signed(paid_envelope(), secret="not-ours")
    answer = client.post("/ingest/yz", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 401
    assert publisher.published == []
    with sqlite_engine.connect() as conn:
        rows = conn.execute(select(rejected_requests.c.status_code, rejected_requests.c.reason))
        assert [tuple(r) for r in rows] == [(401, "bad_signature")]


# -- a status event without lines, fetched with youzan.trade.get --------------


class YouzanCloud:
    """A fake of Youzan's open API: /auth/token (silent, for the shop),
    youzan.trade.get 4.0.0, youzan.trade.refund.search and .get 3.0.1. The
    answers' shapes ({success, code, message, data}) are those public
    integrations read; the error codes are ours."""

    def __init__(
        self, trades: dict[str, dict[str, Any]], refunds: list[dict[str, Any]] | None = None
    ) -> None:
        self.trades = trades
        self.refunds = refunds or []  # youzan.trade.refund.get's data, each
        self.calls: list[str] = []
        self.valid: set[str] = set()
        self.issued = 0
        self.down = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.url.path)
        if self.down > 0:
            self.down -= 1
            return httpx.Response(503)
        body = json.loads(request.content)
        if request.url.path == "/auth/token":
            assert body == {
                "client_id": CLIENT_ID,
                "client_secret": SECRET,
                "authorize_type": "silent",
                "grant_id": "41566520",
                "refresh": False,
            }
            self.issued += 1
            token = f"yz-token-{self.issued}"
            self.valid.add(token)
            data = {"access_token": token, "expires": 1_700_000_000_000 + 7 * 86_400_000}
            return httpx.Response(200, json={"success": True, "code": 200, "data": data})
        if request.url.params.get("access_token") not in self.valid:
            return httpx.Response(
                200, json={"success": False, "code": 4203, "message": "access_token 已过期"}
            )
        if request.url.path == "/api/youzan.trade.refund.search/3.0.1":
            listed = [
                {k: r[k] for k in ("refund_id", "status", "tid", "refund_fee")}
                for r in self.refunds
                if r["tid"] == body["tid"]
            ]
            data = {"total": len(listed), "refunds": listed}
            return httpx.Response(200, json={"success": True, "code": 200, "data": data})
        if request.url.path == "/api/youzan.trade.refund.get/3.0.1":
            [found] = [r for r in self.refunds if r["refund_id"] == body["refund_id"]]
            return httpx.Response(200, json={"success": True, "code": "200", "data": found})
        assert request.url.path == "/api/youzan.trade.get/4.0.0"
        info = self.trades.get(body["tid"])
        if info is None:
            return httpx.Response(
                200, json={"success": False, "code": 141, "message": "订单不存在"}
            )
        return httpx.Response(200, json={"success": True, "code": 200, "data": info})


def paid_info() -> dict[str, Any]:
    return json.loads(unquote_plus(paid_envelope()["msg"]))  # type: ignore[no-any-return]


def youzan_api(cloud: YouzanCloud) -> YouzanApi:
    client = httpx.Client(transport=httpx.MockTransport(cloud))
    return YouzanApi(client, CLIENT_ID, SECRET, "41566520", clock=lambda: 1_700_000_000.0)


def test_a_status_event_names_the_trade_to_fetch_when_the_api_is_configured() -> None:
    envelope = {**paid_envelope(), "msg": STATUS_ONLY_MSG, "status": "PAID"}
    body = signed(envelope)
    fetching = ChannelConfig("yz", "youzan", (SECRET,), app_key=CLIENT_ID, fetch=True)
    connector.authenticate(request(body), fetching, 300)
    result = connector.read(request(body), fetching)
    assert result.references == (
        OrderReference(
            "E20181016214101073500004",
            signed_delivery_id(STATUS_ONLY_MSG),  # from the signed msg, not msg_id
            "default",  # the channel's shop (none set), not the unsigned kdt_id
            1539697271,  # the msg's update_time
        ),
    )


def test_the_trade_is_fetched_with_one_token_renewed_once_when_refused() -> None:
    tid = "E20181016214101073500004"
    cloud = YouzanCloud({tid: paid_info()})
    source = YouzanOrders(youzan_api(cloud), ChannelConfig("yz", "youzan", app_key=CLIENT_ID))
    order = source.fetch(OrderReference(tid, "m-1", "41566520", 1539697271))
    assert (order.external_id, order.version, str(order.total)) == (tid, 1539697271, "14.00")
    cloud.valid.clear()  # Youzan revokes the token
    source.fetch(OrderReference(tid, "m-2", "41566520", 1539697280))
    assert cloud.issued == 2
    assert cloud.calls.count("/api/youzan.trade.get/4.0.0") == 3


def test_youzan_refusals_and_outages_are_told_apart() -> None:
    cloud = YouzanCloud({})
    api = youzan_api(cloud)
    with pytest.raises(ConnectorError, match="订单不存在"):
        api.trade("E-none")
    cloud.down = 1
    with pytest.raises(EndpointUnavailable):
        api.trade("E-none")


def test_a_youzan_channel_with_api_settings_gets_a_fetch_worker(sqlite_url: str) -> None:
    from infra.setting_specs import YouzanSpec
    from orderbus.bootstrap import bootstrap
    from orderbus.runner import Daemon

    spec = ChannelSpec(connector="youzan", app_key=CLIENT_ID, youzan=YouzanSpec(grant_id="1"))
    app = bootstrap(
        Settings(
            broker_url="memory://",
            database_url=sqlite_url,
            ingest_port=0,
            channel_secrets={"yz": [SECRET]},
            channels={"yz": spec},
        )
    )
    daemon = Daemon(app, ("ingest",))
    daemon.build()
    assert sorted(t.name for t in daemon.threads) == [
        "fetch-yz",
        "ingest",
        "raw-keeper",
        "rejection-spool",
        "shipments",
    ]
    with pytest.raises(ValueError, match="need a youzan channel"):
        ChannelSpec(connector="shopify", youzan=YouzanSpec(grant_id="1"))


# -- refunds ----------------------------------------------------------------------

TID = "E20181016214101073500004"


def shipped_with_refund_state(state: int) -> dict[str, Any]:
    answer = paid_info()  # youzan.trade.get's data: {full_order_info}
    answer["full_order_info"]["order_info"].update(
        status="WAIT_BUYER_CONFIRM_GOODS", refund_state=state
    )
    return answer


def refund(**changes: Any) -> dict[str, Any]:
    """youzan.trade.refund.get's data: the fields Youzan documents for it (refund_id,
    status, tid, oid, refund_fee in yuan with postage, demand, return_goods, version,
    refund_success_time); the values ours."""
    return {
        "refund_id": "201910161200000000031002",
        "status": "SUCCESS",
        "tid": TID,
        "oid": "1533766114261606212",
        "refund_fee": "5.20",
        "demand": 1,
        "return_goods": False,
        "version": 1571198400000,
        "refund_success_time": "2018-10-20 10:00:00",
        **changes,
    }


def test_a_refund_message_names_the_trade_to_fetch() -> None:
    msg = quote_plus(json.dumps({"tid": TID, "oid": "1533766114261606212", "refund_id": "1"}))
    body = signed({**paid_envelope(), "type": "trade_refund_RefundSuccess", "msg": msg})
    fetching = ChannelConfig("yz", "youzan", (SECRET,), app_key=CLIENT_ID, fetch=True)
    result = connector.read(request(body), fetching)
    assert [r.external_id for r in result.references] == [TID]
    without_api = ChannelConfig("yz", "youzan", (SECRET,), app_key=CLIENT_ID)
    assert "youzan API settings" in (connector.read(request(body), without_api).ignored or "")


def test_a_trade_with_a_refund_state_is_fetched_with_its_refunds() -> None:
    cloud = YouzanCloud({TID: shipped_with_refund_state(2)}, [refund()])
    source = YouzanOrders(youzan_api(cloud), ChannelConfig("yz", "youzan", app_key=CLIENT_ID))
    order, kept = source.fetch_raw(OrderReference(TID, "m-9", "default"))
    [sale] = order.after_sales
    assert (sale.kind.value, sale.status.value, str(sale.amount)) == ("refund", "completed", "5.20")
    assert [(x.sku, x.quantity, str(x.amount)) for x in sale.lines] == [("YZ-TEA-01", 1, "5.20")]
    assert violations(order) == []
    assert source.read_fetched(kept).after_sales == [sale]  # the replay: no call
    assert cloud.calls[-2:] == [
        "/api/youzan.trade.refund.search/3.0.1", "/api/youzan.trade.refund.get/3.0.1",
    ]  # fmt: skip


def test_a_trade_without_a_refund_state_costs_no_refund_call() -> None:
    cloud = YouzanCloud({TID: shipped_with_refund_state(0)}, [refund()])
    source = YouzanOrders(youzan_api(cloud), ChannelConfig("yz", "youzan", app_key=CLIENT_ID))
    assert source.fetch(OrderReference(TID, "m-9")).after_sales == []
    assert not any("refund" in c for c in cloud.calls)


@pytest.mark.parametrize(
    ("changes", "kind", "status", "units"),
    [
        ({"demand": 2, "status": "WAIT_BUYER_RETURN_GOODS"}, "return", "agreed", 1),
        ({"oid": "1533766114261606211", "refund_fee": "0.94", "status": "WAIT_SELLER_AGREE"},
         "refund", "requested", 1),  # a third of 2.80: one of the three units
        ({"oid": "1533766114261606211", "refund_fee": "8.80", "status": "SELLER_REFUSE_BUYER"},
         "refund", "refused", 3),  # the line's 2.80 and the 6.00 postage
        ({"status": "CLOSED"}, "refund", "withdrawn", 1),
    ],
)  # fmt: skip
def test_refund_kinds_statuses_and_units(
    changes: dict[str, Any], kind: str, status: str, units: int
) -> None:
    cloud = YouzanCloud({TID: shipped_with_refund_state(1)}, [refund(**changes)])
    source = YouzanOrders(youzan_api(cloud), ChannelConfig("yz", "youzan", app_key=CLIENT_ID))
    order = source.fetch(OrderReference(TID, "m-9"))
    [sale] = order.after_sales
    assert (sale.kind.value, sale.status.value, sale.lines[0].quantity) == (kind, status, units)
    assert violations(order) == []


def test_an_exchange_is_left_out_and_an_unknown_status_named() -> None:
    cloud = YouzanCloud({TID: shipped_with_refund_state(1)}, [refund(demand=3)])
    source = YouzanOrders(youzan_api(cloud), ChannelConfig("yz", "youzan", app_key=CLIENT_ID))
    assert source.fetch(OrderReference(TID, "m-9")).after_sales == []
    cloud.refunds = [refund(status="WAIT_PLATFORM")]
    with pytest.raises(ConnectorError, match="WAIT_PLATFORM"):
        source.fetch(OrderReference(TID, "m-9"))
