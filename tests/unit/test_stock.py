"""Stock back to the channels (router/stock.py, targets/stock_push.py), on
SQLite: a bundle's and a pack's quantities come from their components'
levels, each channel gets its share less its safety stock, once per change;
a burst is sent as its latest level; an older level sent late changes
nothing; a channel that is down is tried again, one that refuses a listing
is tried a bounded number of times."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from admin_api.mappings import put_product
from canonical.errors import EndpointUnavailable
from canonical.stock import MAX_PUSH_ATTEMPTS as MAX_ATTEMPTS
from canonical.stock import StockLevel, StockReport, allocated
from connectors.ingest_app import IngestDeps, create_ingest_app
from connectors.stock_writers import stock_writers
from console.pages.channels import stock_told
from infra.setting_specs import StockSettings
from infra.settings import Settings
from infra.tables import stock_pushes
from infra.topology import build_topology
from router.stock import StockIntake
from targets.stock_push import StockPusher
from tests.factories import FakePublisher, signed_headers

WMS = "wms-stock-signing-secret"
T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
STOCK = StockSettings.model_validate(
    {
        "interval": 1,
        "channels": {
            "taobao": {"url": "http://tb.test/stock"},
            "jd": {"url": "http://jd.test/stock", "ratio": 0.5, "safety": 1},
            "douyin": {"url": "http://dy.test/stock", "safety": 2, "rate": 0},
        },
    }
)


class Channels:
    """Three channels' stock APIs, recording what each was told."""

    def __init__(self) -> None:
        self.told: dict[str, list[tuple[str, int]]] = {"tb": [], "jd": [], "dy": []}
        self.down: set[str] = set()
        self.refuse: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host.split(".")[0]
        body = json.loads(request.content)
        if host in self.down:
            return httpx.Response(503)
        if body["sku"] in self.refuse:
            return httpx.Response(400, json={"error": "no such item"})
        self.told[host].append((body["sku"], body["quantity"]))
        return httpx.Response(200)


def _setup(engine: Engine) -> tuple[StockIntake, StockPusher, Channels]:
    with engine.begin() as conn:
        put_product(
            conn,
            channel="",
            shop="",
            platform_sku="TEA-SET",
            components=[{"sku": "TEA"}, {"sku": "CUP", "quantity": 2}],
            note=None,
            by="t",
        )
        put_product(conn, channel="", shop="", platform_sku="TEA-6",
                    components=[{"sku": "TEA", "quantity": 6}], note=None, by="t")  # fmt: skip
    channels = Channels()
    client = httpx.Client(transport=httpx.MockTransport(channels))
    pusher = StockPusher(engine, STOCK, stock_writers(dict(STOCK.channels), client))
    return StockIntake(engine, STOCK), pusher, channels


def _levels(*levels: tuple[str, int, datetime]) -> StockReport:
    return StockReport(levels=[StockLevel(sku=s, available=n, as_of=t) for s, n, t in levels])


def test_a_bundle_component_reaches_three_channels_with_their_shares_once(
    sqlite_engine: Engine,
) -> None:
    intake, pusher, channels = _setup(sqlite_engine)
    intake.accept(_levels(("TEA", 13, T0), ("CUP", 8, T0), ("SOAP", 5, T0)))
    assert pusher.push_once() == 9
    # the set: min(13, 8 // 2) = 4; the pack: 13 // 6 = 2; SOAP, mapped to nothing: as it is
    assert sorted(channels.told["tb"]) == [("SOAP", 5), ("TEA-6", 2), ("TEA-SET", 4)]
    assert sorted(channels.told["jd"]) == [("SOAP", 1), ("TEA-6", 0), ("TEA-SET", 1)]
    assert sorted(channels.told["dy"]) == [("SOAP", 3), ("TEA-6", 0), ("TEA-SET", 2)]
    assert pusher.push_once() == 0  # nothing changed: nothing sent again
    late = T0 - timedelta(minutes=5)
    assert intake.accept(_levels(("CUP", 0, late))) == 0  # counted earlier, sent late
    assert pusher.push_once() == 0
    # a burst: two levels before the next push; only the latest goes
    intake.accept(_levels(("CUP", 6, T0 + timedelta(minutes=1))))
    intake.accept(_levels(("CUP", 4, T0 + timedelta(minutes=2))))
    assert pusher.push_once() == 3
    assert channels.told["tb"][-1] == ("TEA-SET", 2) and len(channels.told["tb"]) == 4


def test_a_channel_down_is_tried_again_and_a_refusal_only_so_often(sqlite_engine: Engine) -> None:
    intake, pusher, channels = _setup(sqlite_engine)
    channels.down.add("jd")
    channels.refuse.add("SOAP")
    intake.accept(_levels(("TEA", 13, T0), ("CUP", 8, T0), ("SOAP", 5, T0)))
    pusher.push_once()
    assert channels.told["jd"] == []
    channels.down.clear()
    pusher.push_once()
    assert sorted(channels.told["jd"]) == [("TEA-6", 0), ("TEA-SET", 1)]
    for _ in range(MAX_ATTEMPTS + 3):
        pusher.push_once()
    with sqlite_engine.connect() as conn:
        rows = conn.execute(
            select(stock_pushes.c.attempts, stock_pushes.c.last_error).where(
                stock_pushes.c.platform_sku == "SOAP"
            )
        ).all()
    assert {r.attempts for r in rows} == {MAX_ATTEMPTS}  # then it waits for its next change
    assert all("no such item" in str(r.last_error) for r in rows)
    with sqlite_engine.connect() as conn:  # what the console's channels page shows
        told = stock_told(conn)
    assert [(c["channel"], c["listings"], c["told"], c["waiting"], c["refused"])
            for c in told["channels"]] == [("douyin", 3, 2, 0, 1), ("jd", 3, 2, 0, 1),
                                           ("taobao", 3, 2, 0, 1)]  # fmt: skip
    assert sorted((r["channel"], r["platform_sku"]) for r in told["refusals"]) == [
        ("douyin", "SOAP"), ("jd", "SOAP"), ("taobao", "SOAP")]  # fmt: skip
    intake.accept(_levels(("SOAP", 6, T0 + timedelta(minutes=1))))  # its next change
    with sqlite_engine.connect() as conn:
        assert {c["waiting"] for c in stock_told(conn)["channels"]} == {1}


def test_the_warehouse_posts_its_levels_signed(sqlite_engine: Engine) -> None:
    settings = Settings(namespace="t", shipment_secrets=[WMS], stock=STOCK)
    intake = StockIntake(sqlite_engine, STOCK)
    deps = IngestDeps(settings, sqlite_engine, FakePublisher(), build_topology(settings),  # type: ignore[arg-type]
                      accept_stock=intake.accept_body)  # fmt: skip
    body = json.dumps({"levels": [{"sku": "SOAP", "available": 5, "as_of": T0.isoformat()}]})
    with TestClient(create_ingest_app(deps)) as api:
        ok = api.post("/stock", content=body, headers=signed_headers(WMS, body.encode()))
        assert ok.status_code == 202 and ok.json()["listings_changed"] == 3
        forged = api.post("/stock", content=body, headers=signed_headers("guess", body.encode()))
        assert forged.status_code == 401
        bad: Any = api.post(
            "/stock",
            content=b'{"levels": []}',
            headers=signed_headers(WMS, b'{"levels": []}'),
        )
        assert bad.status_code == 422


def test_a_share_never_goes_below_zero() -> None:
    assert allocated(10, 0.5, 1) == 4 and allocated(1, 0.3, 0) == 0 and allocated(2, 1, 5) == 0


class ShopifyInventory:
    """Shopify's GraphQL Admin API as the stock writer calls it (shapes from
    shopify.dev's reference: productVariants by query, inventorySetQuantities
    with InventorySetQuantitiesInput and userErrors); THROTTLED once."""

    def __init__(self) -> None:
        self.levels: dict[str, int] = {}
        self.lookups: list[str] = []
        self.throttle = 1

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/admin/api/2026-10/graphql.json"
        assert request.headers["x-shopify-access-token"] == "shpat-stock"
        asked = json.loads(request.content)
        if "productVariants" in asked["query"]:
            sku = asked["variables"]["query"].split('"')[1]
            self.lookups.append(sku)
            nodes = [{"sku": sku, "inventoryItem": {"id": f"gid://shopify/InventoryItem/{sku}"}}]
            found = {"productVariants": {"nodes": nodes if sku != "GONE" else []}}
            return httpx.Response(200, json={"data": found})
        if self.throttle:
            self.throttle -= 1
            throttled = {"message": "Throttled", "extensions": {"code": "THROTTLED"}}
            return httpx.Response(200, json={"errors": [throttled]})
        wanted = asked["variables"]["input"]
        assert wanted["name"] == "available" and wanted["reason"] == "correction"
        [quantity] = wanted["quantities"]
        assert quantity["locationId"] == "gid://shopify/Location/1"
        assert "changeFromQuantity" in quantity and quantity["changeFromQuantity"] is None
        self.levels[quantity["inventoryItemId"]] = quantity["quantity"]
        done = {"inventoryAdjustmentGroup": {"id": "gid://shopify/InventoryAdjustmentGroup/1"},
                "userErrors": []}  # fmt: skip
        return httpx.Response(200, json={"data": {"inventorySetQuantities": done}})


def test_shopify_gets_its_available_quantity_at_its_location(sqlite_engine: Engine) -> None:
    spec = {"kind": "shopify", "shop_url": "https://acme.myshopify.com", "rate": 0,
            "access_token": "shpat-stock", "location_id": "gid://shopify/Location/1"}  # fmt: skip
    settings = StockSettings.model_validate({"channels": {"shop-us": spec}})
    shopify = ShopifyInventory()
    client = httpx.Client(transport=httpx.MockTransport(shopify))
    pusher = StockPusher(sqlite_engine, settings, stock_writers(dict(settings.channels), client))
    StockIntake(sqlite_engine, settings).accept(_levels(("SOAP", 5, T0), ("GONE", 1, T0)))
    assert pusher.push_once() == 0  # throttled: tried again next round
    assert pusher.push_once() == 1
    assert shopify.levels == {"gid://shopify/InventoryItem/SOAP": 5}
    StockIntake(sqlite_engine, settings).accept(_levels(("SOAP", 4, T0 + timedelta(minutes=1))))
    assert pusher.push_once() == 1 and shopify.lookups.count("SOAP") == 1  # its id was kept
    with sqlite_engine.connect() as conn:
        gone = conn.scalar(
            select(stock_pushes.c.last_error).where(stock_pushes.c.platform_sku == "GONE")
        )
    assert "0 variants with SKU GONE" in str(gone)


# -- a poll of the ERP's stock query ----------------------------------------------


class StockForm:
    """A Jiandaoyun-like data list: POST {app_id, entry_id, limit, data_id}
    -> {"data": [...]} ordered by _id, the rows after data_id."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.asked: list[dict[str, Any]] = []
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            return httpx.Response(503)
        assert request.headers["authorization"] == "Bearer erp-key"
        body = json.loads(request.content)
        self.asked.append(body)
        after = body.get("data_id")
        rows = [r for r in self.rows if after is None or r["_id"] > after]
        return httpx.Response(200, json={"data": rows[: body["limit"]]})


def _poll(engine: Engine, form: StockForm, sent: list[tuple[str, str]]) -> Any:
    from connectors.stock_poll import StockPoll
    from infra.setting_specs import StockPollSpec

    spec = StockPollSpec(
        url="http://erp.test/api/v5/app/entry/data/list",
        method="POST",
        body={"app_id": "a", "entry_id": "stock", "limit": 2},
        headers={"Authorization": "Bearer erp-key"},
        items="data",
        sku="sku_code",
        available="$.qty",
        page_field="data_id",
        page_from="_id",
        page_size=2,
    )
    client = httpx.Client(transport=httpx.MockTransport(form))
    return StockPoll(
        spec, client, StockIntake(engine, STOCK).accept,
        lambda reason, detail, item: sent.append((reason, detail)),
        clock=lambda: T0.timestamp(),
    )  # fmt: skip


def test_a_poll_of_the_erp_stock_query_reads_every_page_into_the_listings(
    sqlite_engine: Engine,
) -> None:
    _, pusher, channels = _setup(sqlite_engine)
    form = StockForm([
        {"_id": "01", "sku_code": "TEA", "qty": "13.0000"},  # an ERP's decimal text
        {"_id": "02", "sku_code": "CUP", "qty": 8.5},  # half a cup cannot be sold
        {"_id": "03", "sku_code": "SOAP", "qty": -2},  # sold short: none
        {"_id": "04", "sku_code": "", "qty": 1},  # no SKU: recorded, left out
        {"_id": "05", "sku_code": "LAMP", "qty": "many"},  # not a number: recorded
    ])  # fmt: skip
    bad: list[tuple[str, str]] = []
    report = _poll(sqlite_engine, form, bad).poll_once()
    assert (report.pages, report.levels, report.bad) == (3, 3, 2)
    assert [b.get("data_id") for b in form.asked] == [None, "02", "04"]
    assert [reason for reason, _ in bad] == ["unreadable_stock_level"] * 2
    assert "units 'many'" in bad[1][1]
    pusher.push_once()
    assert sorted(channels.told["tb"]) == [("SOAP", 0), ("TEA-6", 2), ("TEA-SET", 4)]


def test_a_stock_query_down_ends_the_poll_and_the_next_asks_again(sqlite_engine: Engine) -> None:
    _setup(sqlite_engine)
    form = StockForm([{"_id": "01", "sku_code": "TEA", "qty": 3}])
    form.down = True
    poll = _poll(sqlite_engine, form, [])
    with pytest.raises(EndpointUnavailable, match="503"):
        poll.poll_once()
    form.down = False
    assert poll.poll_once().levels == 1


def test_the_ingest_runs_the_stock_poll_when_configured(sqlite_url: str) -> None:
    from orderbus.bootstrap import bootstrap
    from orderbus.runner import Daemon

    stock = {
        "channels": {"tb": {"url": "http://tb.test/stock"}},
        "poll": {"url": "http://erp.test/stock", "items": "rows", "sku": "sku",
                 "available": "qty"},
    }  # fmt: skip
    settings = Settings(broker_url="memory://", database_url=sqlite_url, ingest_port=0,
                        stock=stock)  # fmt: skip
    daemon = Daemon(bootstrap(settings), ("ingest",))
    daemon.build()
    assert "stock-poll" in {t.name for t in daemon.threads}
