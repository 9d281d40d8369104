"""The platforms' item stock APIs as stock channels: each writer signs as its
connector does, sends the absolute quantity to the listing's ids, and tells a
refusal (a listing the platform does not have: kept for a person) from an
outage (tried again). Fakes check the signatures (tests/top_fake.py,
tests/doudian_fake.py; Pinduoduo's, JD's and Youzan's here)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from canonical.errors import DeliveryRejected, EndpointUnavailable
from connectors.stock_writers import stock_writer
from infra.setting_specs import StockChannelSpec
from infra.settings import Settings
from orderbus.bootstrap import ConfigurationError, bootstrap
from tests.doudian_fake import FakeDoudian
from tests.top_fake import FakeTop

AS_OF = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def writer(kind: str, account: dict[str, str], transport: httpx.MockTransport) -> Any:
    spec = StockChannelSpec(kind=kind, account=account)
    return stock_writer(kind, spec, httpx.Client(transport=transport))


def test_taobao_sets_the_item_or_sku_quantity() -> None:
    top = FakeTop("tb-key", "tb-secret", "tb-session")
    top.items = {"100018587597:5000000017": 3, "100018587598": 9}
    account = {"app_key": "tb-key", "app_secret": "tb-secret", "session": "tb-session",
               "endpoint": "https://top.test/router/rest"}  # fmt: skip
    tb = writer("taobao", account, top.transport())
    tb.send("100018587597:5000000017", 42, AS_OF)
    tb.send("100018587598", 0, AS_OF)
    assert top.items == {"100018587597:5000000017": 42, "100018587598": 0}
    with pytest.raises(DeliveryRejected, match="商品不存在"):
        tb.send("100000000000:1", 5, AS_OF)
    with pytest.raises(DeliveryRejected, match="<item id>:<sku id>"):
        tb.send("TEA-LJ-250", 5, AS_OF)  # our SKU, not the platform's ids
    top.down = 1
    with pytest.raises(EndpointUnavailable):
        tb.send("100018587598", 1, AS_OF)


def test_douyin_syncs_the_sku_stock_absolutely() -> None:
    doudian = FakeDoudian("7012345678901234567", "dy-secret", "4463798")
    doudian.stock = {"3512345678901234567:1745678901234567": 1}
    account = {"app_key": "7012345678901234567", "app_secret": "dy-secret",
               "shop_id": "4463798", "endpoint": "https://doudian.test"}  # fmt: skip
    dy = writer("douyin", account, doudian.transport())
    dy.send("3512345678901234567:1745678901234567", 17, AS_OF)
    assert doudian.stock == {"3512345678901234567:1745678901234567": 17}
    assert doudian.calls == ["token.create", "sku.syncStock"]
    with pytest.raises(DeliveryRejected, match="商品不存在"):
        dy.send("1:2", 5, AS_OF)


def _top_md5(params: dict[str, str], secret: str) -> str:
    text = secret + "".join(k + params[k] for k in sorted(params)) + secret
    return hashlib.md5(text.encode()).hexdigest().upper()


class FakePdd:
    """pdd.goods.quantity.update: the form signed as Pinduoduo's SDKs sign it."""

    def __init__(self) -> None:
        self.goods: dict[str, int] = {"300001234567:900001234567": 2}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = json.loads(request.content)
        sign = form.pop("sign")
        assert sign == _top_md5(form, "pdd-secret") and form["type"] == "pdd.goods.quantity.update"
        listing = f"{form['goods_id']}:{form['sku_id']}"
        if listing not in self.goods or form["update_type"] != "1":
            error = {"error_code": 10000, "error_msg": "商品不存在", "sub_code": "", "sub_msg": ""}
            return httpx.Response(200, json={"error_response": error})
        self.goods[listing] = int(form["quantity"])
        return httpx.Response(200, json={"goods_quantity_update_response": {"is_success": True}})


def test_pinduoduo_updates_the_goods_quantity_in_full() -> None:
    fake = FakePdd()
    account = {"client_id": "pdd-id", "client_secret": "pdd-secret", "access_token": "pdd-token",
               "endpoint": "https://pdd.test/api/router"}  # fmt: skip
    pdd = writer("pinduoduo", account, httpx.MockTransport(fake))
    pdd.send("300001234567:900001234567", 8, AS_OF)
    assert fake.goods == {"300001234567:900001234567": 8}
    with pytest.raises(DeliveryRejected, match="商品不存在"):
        pdd.send("300001234567:1", 8, AS_OF)


class FakeJd:
    """jingdong.stock.write.updateSkuStock: 360buy_param_json, TOP-style md5."""

    def __init__(self) -> None:
        self.skus: dict[str, int] = {"100012043978": 5}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode()))
        sign = form.pop("sign")
        assert sign == _top_md5(form, "jd-secret")
        assert form["method"] == "jingdong.stock.write.updateSkuStock"
        business = json.loads(form["360buy_param_json"])
        if str(business["skuId"]) not in self.skus:
            error = {"code": "19", "zh_desc": "sku不存在", "en_desc": "sku not found"}
            return httpx.Response(200, json={"error_response": error})
        self.skus[str(business["skuId"])] = int(business["stockNum"])
        answer = {"jingdong_stock_write_updateSkuStock_responce": {"code": "0", "success": True}}
        return httpx.Response(200, json=answer)


def test_jd_sets_the_sku_stock() -> None:
    fake = FakeJd()
    account = {"app_key": "jd-key", "app_secret": "jd-secret", "access_token": "jd-token",
               "endpoint": "https://jd.test/routerjson"}  # fmt: skip
    jd = writer("jd", account, httpx.MockTransport(fake))
    jd.send("100012043978", 31, AS_OF)
    assert fake.skus == {"100012043978": 31}
    with pytest.raises(DeliveryRejected, match="not a JD sku id"):
        jd.send("100012043978:1", 31, AS_OF)


class FakeYouzan:
    """/auth/token, then youzan.item.quantity.update 3.0.0 with the token."""

    def __init__(self) -> None:
        self.items: dict[str, int] = {"445556:400818034": 4}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/auth/token":
            data = {"access_token": "yz-token", "expires": 4102444800000}
            return httpx.Response(200, json={"success": True, "code": 200, "data": data})
        assert request.url.path == "/api/youzan.item.quantity.update/3.0.0"
        assert request.url.params["access_token"] == "yz-token"
        listing = f"{body['item_id']}:{body['sku_id']}"
        if listing not in self.items or body["type"] != 0:
            return httpx.Response(200, json={"success": False, "code": 122001001,
                                             "message": "商品不存在"})  # fmt: skip
        self.items[listing] = body["quantity"]
        return httpx.Response(200, json={"success": True, "code": 200, "data": True})


def test_youzan_sets_the_sku_quantity() -> None:
    fake = FakeYouzan()
    account = {"client_id": "yz-id", "client_secret": "yz-secret", "grant_id": "41566520",
               "endpoint": "https://yz.test"}  # fmt: skip
    yz = writer("youzan", account, httpx.MockTransport(fake))
    yz.send("445556:400818034", 12, AS_OF)
    assert fake.items == {"445556:400818034": 12}
    with pytest.raises(DeliveryRejected, match="商品不存在"):
        yz.send("445556:1", 12, AS_OF)


def test_a_platform_stock_channel_without_its_account_is_refused_at_start(
    sqlite_url: str,
) -> None:
    with pytest.raises(ValueError, match="needs account"):
        StockChannelSpec(kind="taobao")
    stock = {"channels": {"tb": {"kind": "taobao", "account": {"app_key": "k"}}}}
    app = bootstrap(Settings(broker_url="memory://", database_url=sqlite_url, stock=stock))
    with pytest.raises(
        ConfigurationError, match=r"stock channel 'tb' \(taobao\) account: app_secret"
    ):
        app.stock_pusher()
