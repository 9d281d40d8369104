"""Fakes of the ERP systems orderbus delivers into, as httpx handlers (used
with ``httpx.MockTransport``, or served over HTTP by tests/erp_server.py).

Each keeps its records, counts its calls, and can be told to expire its
token or session, answer a burst of requests with 429, or refuse an unknown
SKU the way the system does. Where each shape comes from:

- Jiandaoyun open API v5 as public integrations use it: ``POST
  /api/v5/app/entry/data/create``, Bearer API key, ``{"app_id", "entry_id",
  "data": {"_widget_…": {"value": …}}, "transaction_id"}`` -> ``{"data":
  {"_id": …}}``. Its error body ``{"code", "msg"}`` and its treating a
  repeated ``transaction_id`` as the same submission are assumptions.
- Kingdee Cloud Galaxy WebAPI: the service names, the login answer
  (``LoginResultType``, ``KDSVCSessionId``) and the save answer
  (``Result.ResponseStatus`` with ``IsSuccess``, ``ErrorCode``, ``MsgCode``,
  ``Errors[{FieldName, Message, DIndex}]``, ``Id``, ``Number``) follow the
  structs of the public Go SDK yrzs/k3cloud (``response/login.go``,
  ``response/k3cloud.go``, ``kernel/api_path.go``) and Kingdee's sales-order
  save guide (formid + data.Model). The lost-session message
  "会话信息已丢失..." is the one that SDK matches; ``MsgCode`` 1 for it
  and the duplicate-number wording are our assumption.
- Yonyou U8 OpenAPI: ``/system/token`` -> ``{"token": {"id", "expiresIn"}}``
  and ``/system/tradeid`` -> ``{"trade": {"id"}}`` as Yonyou's openapi4j SDK
  reads them (TokenManager, TradeManager); ``/api/saleorder/add?...&tradeid=``
  with ``{"saleorder": {...}}`` answering ``{"errcode": "0", "url"}`` and the
  result at ``/result?requestid=`` as public integrations call them. The
  token-expired errcode (20002) and the pending result shape are assumptions.
- Chanjet open platform: ``/tplus/api/v2/saleOrder/Create`` with headers
  appKey/appSecret/openToken and ``{"dto": {...}}``, and
  ``/auth/refreshToken?grantType=refresh_token`` -> ``{"code": "200",
  "result": {"access_token", "refresh_token"}}``, as public integrations call
  them. The error body ``{"code", "message", "data"}`` and the codes used
  here are assumptions.
- 金蝶云星辰 (Kingdee Cloud Xingchen) through the Kingdee API gateway: the
  signed headers and their recipe, the app authorisation and app-token calls,
  the rotating app secret, errcode 1030002006 and ``/jdy/v2/scm/sal_order``
  as targets/adapters/xingchen.py writes down with their sources. The save
  body's field names, the refusal wording and errcodes other than 1030002006
  are assumptions.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any
from urllib.parse import parse_qs

import httpx

LOST_SESSION = "会话信息已丢失\uff0c请重新登录"  # with its full-width comma


class FakeSystem:
    """What the three fakes share: records, counters, switches."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.kinds: dict[str, str] = {}  # record number -> the form, voucher or bill it is
        self.calls: list[str] = []
        self.limited = 0  # answer this many calls with 429
        self.known_skus = {"SKU-A", "SKU-B"}
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.calls.append(request.url.path)
            if self.limited > 0:
                self.limited -= 1
                return httpx.Response(429, text="Too Many Requests")
            return self.handle(request)

    def handle(self, request: httpx.Request) -> httpx.Response:
        raise NotImplementedError

    def count(self, suffix: str) -> int:
        return sum(1 for path in self.calls if path.endswith(suffix))


class FakeJiandaoyun:
    """(Counted and switched on its own: one endpoint, one key.)"""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}  # transaction_id -> record
        self.requests = 0
        self.limited = 0  # answer this many with 429
        self.refuse: str | None = None  # a widget to refuse as required-but-empty
        self.forms = {"entry-orders", "entry-reversals"}  # the app's forms

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        assert request.url.path == "/api/v5/app/entry/data/create"
        if request.headers.get("authorization") != "Bearer jdy-key":
            return httpx.Response(401, json={"code": 8301, "msg": "invalid api key"})
        if self.limited > 0:
            self.limited -= 1
            return httpx.Response(429, json={"code": 8303, "msg": "请求频率超过限制"})
        body = json.loads(request.content)
        assert body["app_id"] == "app-1" and body["entry_id"] in self.forms, body["entry_id"]
        if self.refuse:
            return httpx.Response(400, json={"code": 4001, "msg": f"字段 {self.refuse} 必填"})
        record = self.records.setdefault(
            body["transaction_id"],
            {"_id": f"rec-{len(self.records) + 1}", "_entry": body["entry_id"], **body["data"]},
        )
        return httpx.Response(200, json={"data": record})


class FakeKingdee(FakeSystem):
    def __init__(self) -> None:
        super().__init__()
        self.sessions: set[str] = set()
        self.logins = 0

    def expire_sessions(self) -> None:
        self.sessions.clear()

    def _status(self, ok: bool, errors: list[dict[str, Any]], msg_code: int = 0) -> dict[str, Any]:
        return {
            "IsSuccess": ok,
            "ErrorCode": 0 if ok else 500,
            "MsgCode": msg_code,
            "Errors": errors,
            "SuccessEntitys": [],
            "SuccessMessages": [],
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content)
        if path.endswith("AuthService.LoginByAppSecret.common.kdsvc"):
            acct, _user, app_id, secret, lcid = body["parameters"]
            if (acct, app_id, secret) != ("acct-1", "app-1", "kd-secret"):
                return httpx.Response(
                    200, json={"LoginResultType": 0, "Message": "用户名或密码错误"}
                )
            self.logins += 1
            session = f"sess-{self.logins}"
            self.sessions.add(session)
            return httpx.Response(
                200, json={"LoginResultType": 1, "KDSVCSessionId": session, "Lcid": lcid}
            )
        cookie = request.headers.get("cookie", "")
        session = cookie.removeprefix("kdservice-sessionid=")
        if session not in self.sessions:
            lost = [{"FieldName": None, "Message": LOST_SESSION, "DIndex": 0}]
            return httpx.Response(
                200, json={"Result": {"ResponseStatus": self._status(False, lost, 1)}}
            )
        if path.endswith("DynamicFormService.ExecuteBillQuery.common.kdsvc"):
            wanted = body["data"]["FilterString"].split("'")[1]
            form = body["data"]["FormId"]
            rows = [
                [r["Id"], n]
                for n, r in self.records.items()
                if n == wanted and self.kinds[n] == form
            ]
            return httpx.Response(200, json=rows)
        assert path.endswith("DynamicFormService.Save.common.kdsvc"), path
        assert body["formid"] in ("SAL_SaleOrder", "SAL_RETURNSTOCK", "AR_REFUNDBILL")
        model = body["data"]["Model"]
        number = model["FBillNo"]
        for index, line in enumerate(model.get("FSaleOrderEntry", [])):
            sku = line["FMaterialId"]["FNumber"]
            if sku not in self.known_skus:
                error = {
                    "FieldName": "FMaterialId",
                    "Message": f"字段“物料编码”是必填项\uff0c或值“{sku}”在系统中不存在",
                    "DIndex": index,
                }
                return httpx.Response(
                    200, json={"Result": {"ResponseStatus": self._status(False, [error])}}
                )
        if number in self.records:
            error = {
                "FieldName": "FBillNo",
                "Message": f"单据编号“{number}”已存在\uff0c违反唯一性约束",
                "DIndex": 0,
            }
            return httpx.Response(
                200, json={"Result": {"ResponseStatus": self._status(False, [error])}}
            )
        record = {"Id": 100000 + len(self.records), **model}
        self.records[number] = record
        self.kinds[number] = body["formid"]
        status = self._status(True, [])
        status["SuccessEntitys"] = [{"Id": record["Id"], "Number": number, "DIndex": 0}]
        return httpx.Response(
            200, json={"Result": {"ResponseStatus": status, "Id": record["Id"], "Number": number}}
        )


class FakeU8(FakeSystem):
    def __init__(self) -> None:
        super().__init__()
        self.tokens: set[str] = set()
        self.issued = 0
        self.trades: dict[str, str] = {}  # trade id -> request id
        self.results: dict[str, dict[str, Any]] = {}  # request id -> result
        self.pending_looks = 0  # answer each result this many times as not yet done
        self._looks: dict[str, int] = {}

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        query = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        if path == "/system/token":
            if (query.get("app_key"), query.get("app_secret")) != ("u8-key", "u8-secret"):
                return httpx.Response(200, json={"errcode": "20001", "errmsg": "app_key无效"})
            self.issued += 1
            token = f"tok-{self.issued}"
            self.tokens.add(token)
            return httpx.Response(
                200,
                json={
                    "errcode": "0",
                    "token": {"id": token, "appKey": "u8-key", "expiresIn": 7200000},
                },
            )
        if path == "/result":
            requestid = query["requestid"]
            looks = self._looks.get(requestid, 0)
            self._looks[requestid] = looks + 1
            if looks < self.pending_looks:
                return httpx.Response(200, json={"errcode": "0", "errmsg": "处理中"})
            return httpx.Response(200, json=self.results[requestid])
        if query.get("token") not in self.tokens:
            return httpx.Response(200, json={"errcode": "20002", "errmsg": "token无效或已过期"})
        if path == "/system/tradeid":
            trade = f"trade-{len(self.trades) + 1}"
            self.trades[trade] = ""
            return httpx.Response(200, json={"errcode": "0", "trade": {"id": trade}})
        voucher_get = re.fullmatch(r"/api/([a-z_]+)/get", path)
        if voucher_get:
            voucher = voucher_get.group(1)
            found = self.records.get(query["id"])
            if found is None or self.kinds[query["id"]] != voucher:
                return httpx.Response(200, json={"errcode": "40003", "errmsg": "单据不存在"})
            return httpx.Response(200, json={"errcode": "0", voucher: found})
        voucher_add = re.fullmatch(r"/api/([a-z_]+)/add", path)
        assert voucher_add, path
        voucher = voucher_add.group(1)
        trade = query["tradeid"]
        if trade not in self.trades:
            return httpx.Response(200, json={"errcode": "30001", "errmsg": "tradeid无效"})
        requestid = self.trades[trade]
        if not requestid:  # a trade id is processed once; the same one again: the same result
            requestid = f"req-{len(self.results) + 1}"
            self.trades[trade] = requestid
            self.results[requestid] = self._add(json.loads(request.content)[voucher], voucher)
        url = f"{request.url.scheme}://{request.url.netloc.decode()}/result?requestid={requestid}"
        return httpx.Response(200, json={"errcode": "0", "tradeid": trade, "url": url})

    def _add(self, saleorder: dict[str, Any], voucher: str = "saleorder") -> dict[str, Any]:
        for line in saleorder.get("entry", []):
            if line["inventorycode"] not in self.known_skus:
                code = line["inventorycode"]
                return {"errcode": "40001", "errmsg": f"存货编码inventorycode[{code}]不存在"}
        if saleorder["code"] in self.records:
            return {"errcode": "40002", "errmsg": f"单据号{saleorder['code']}重复"}
        self.records[saleorder["code"]] = saleorder
        self.kinds[saleorder["code"]] = voucher
        return {"errcode": "0", "id": saleorder["code"]}


class FakeChanjet(FakeSystem):
    def __init__(self) -> None:
        super().__init__()
        self.tokens = {"open-1"}
        self.refresh_tokens = {"refresh-1"}
        self.renewals = 0

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/auth/refreshToken":
            query = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
            if query.get("refreshToken") not in self.refresh_tokens:
                return httpx.Response(200, json={"code": "401", "message": "refreshToken无效"})
            self.refresh_tokens.discard(query["refreshToken"])  # rotated
            self.renewals += 1
            token, refresh = f"open-{self.renewals + 1}", f"refresh-{self.renewals + 1}"
            self.tokens.add(token)
            self.refresh_tokens.add(refresh)
            result = {"access_token": token, "refresh_token": refresh, "expires_in": 518400}
            return httpx.Response(200, json={"code": "200", "message": "success", "result": result})
        api = path.removeprefix("/tplus/api/v2/")
        assert api in ("saleOrder/Create", "saleDelivery/Create"), path
        if (
            request.headers.get("appkey") != "tp-key"
            or request.headers.get("appsecret") != "tp-secret"
        ):
            return httpx.Response(
                400, json={"code": "EXSM0001", "message": "appKey或appSecret错误"}
            )
        if request.headers.get("opentoken") not in self.tokens:
            return httpx.Response(
                401, json={"code": "EXSM0004", "message": "openToken无效或已过期"}
            )
        dto = json.loads(request.content)["dto"]
        for line in dto.get("SaleOrderDetails", []):
            code = line["Inventory"]["Code"]
            if code not in self.known_skus:
                message = f"存货Inventory编码{code}不存在"
                return httpx.Response(
                    400, json={"code": "EXSM0010", "message": message, "data": None}
                )
        external = dto["ExternalCode"]
        if external in self.records:
            message = f"外部单据号ExternalCode[{external}]已存在"
            return httpx.Response(400, json={"code": "EXSM0011", "message": message, "data": None})
        self.records[external] = dto
        self.kinds[external] = api
        return httpx.Response(200, json=f"XSDD-{len(self.records):04d}")


KINGDEE = {
    "adapter": "kingdee",
    "endpoint": "https://kd.test/k3cloud",
    "acct_id": "acct-1",
    "username": "api",
    "app_id": "app-1",
    "app_secret": "kd-secret",
    "rate": 0,
    "model": {
        "FBillTypeID": {"FNUMBER": "XSDD01_SYS"},
        "FBillNo": "{{order_number}}",
        "FDate": "{{placed_at}}",
        "FSaleOrgId": {"FNumber": "100"},
        "FCustId": {"FNumber": "CUST-{{channel}}"},
        "FNote": "{{channel}} {{external_id}}",
        "FSaleOrderFinance": {"FSettleCurrId": {"FNumber": "PRE001"}},
        "FSaleOrderEntry": {
            "$each": "items",
            "$item": {
                "FMaterialId": {"FNumber": "{{sku}}"},
                "FQty": "{{quantity}}",
                "FTaxPrice": "{{unit_price|number}}",
                "FEntryNote": "{{order.external_id}}",
            },
        },
    },
}
U8 = {
    "adapter": "u8",
    "endpoint": "https://u8.test",
    "from_account": "orderbus",
    "to_account": "acme",
    "app_key": "u8-key",
    "app_secret": "u8-secret",
    "result_wait": 0,
    "rate": 0,
    "saleorder": {
        "code": "{{order_number}}",
        "date": "{{placed_at}}",
        "typecode": "1",
        "custcode": "C-{{channel}}",
        "deptcode": "01",
        "sum": "{{total|number}}",
        "entry": {
            "$each": "items",
            "$item": {
                "inventorycode": "{{sku}}",
                "quantity": "{{quantity}}",
                "taxprice": "{{unit_price|number}}",
            },
        },
    },
}
CHANJET = {
    "adapter": "chanjet",
    "endpoint": "https://tplus.test",
    "app_key": "tp-key",
    "app_secret": "tp-secret",
    "open_token": "open-1",
    "refresh_token": "refresh-1",
    "rate": 0,
    "dto": {
        "ExternalCode": "{{order_number}}",
        "VoucherDate": "{{placed_at}}",
        "Customer": {"Code": "C-{{channel}}"},
        "Memo": "{{channel}} {{external_id}}",
        "SaleOrderDetails": {
            "$each": "items",
            "$item": {
                "Inventory": {"Code": "{{sku}}"},
                "Unit": {"Name": "个"},
                "Quantity": "{{quantity}}",
                "OrigTaxPrice": "{{unit_price|number}}",
            },
        },
    },
}


class FakeXingchen(FakeSystem):
    """The Kingdee API gateway in front of 金蝶云星辰: checks every call's
    signature and its age, hands out a new app secret at each authorisation
    (it rotates), app-tokens that expire, and saves sales orders once per
    bill_no."""

    CLIENT_ID, CLIENT_SECRET, INSTANCE = "xc-client", "xc-client-secret", "inst-1"

    def __init__(self) -> None:
        super().__init__()
        from targets.adapters.xingchen import app_signature, gateway_signature

        self.sign, self.app_sign = gateway_signature, app_signature
        self.secret_version = 0
        self.tokens: dict[str, str] = {}  # app-token -> the app secret it was made with
        self.bad_signatures = 0

    @property
    def authorisations(self) -> int:
        return self.secret_version

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def _signed_ok(self, request: httpx.Request) -> bool:
        h = request.headers
        query = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        expected = self.sign(
            self.CLIENT_SECRET, request.method, request.url.path, query,
            h.get("x-api-nonce", ""), h.get("x-api-timestamp", ""),
        )  # fmt: skip
        return bool(
            h.get("x-api-clientid") == self.CLIENT_ID
            and h.get("x-api-auth-version") == "2.0"
            and h.get("x-api-signheaders") == "X-Api-TimeStamp,X-Api-Nonce"
            and h.get("x-api-signature") == expected
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        if not self._signed_ok(request):
            self.bad_signatures += 1
            return httpx.Response(200, json={"errcode": 1030001001, "description": "签名校验失败"})
        path = request.url.path
        query = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        if path == "/jdyconnector/app_management/push_app_authorize":
            if query.get("outerInstanceId") != self.INSTANCE:
                return httpx.Response(200, json={"errcode": 1030004, "description": "实例不存在"})
            self.secret_version += 1  # the app secret rotates
            grant = {
                "appKey": "xc-app",
                "appSecret": f"xc-app-secret-{self.secret_version}",
                "domain": "gw-1.kingdee.test",
            }
            return httpx.Response(200, json={"errcode": 0, "data": [grant]})
        if path == "/jdyconnector/app_management/kingdee_auth_token":
            secret = f"xc-app-secret-{self.secret_version}"
            if query.get("app_signature") != self.app_sign("xc-app", secret):
                return httpx.Response(
                    200, json={"errcode": 1030002, "description": "app_signature错误"}
                )
            token = f"app-token-{self.secret_version}"
            self.tokens[token] = secret
            data = {"app-token": token, "expires": 4102444800000}
            return httpx.Response(200, json={"errcode": 0, "data": data})
        assert path in ("/jdy/v2/scm/sal_order", "/jdy/v2/scm/sal_in_bound"), path
        if request.headers.get("app-token") not in self.tokens:
            return httpx.Response(200, json={"errcode": 1030002006, "description": "app-token无效"})
        if request.headers.get("x-gw-router-addr") != "gw-1.kingdee.test":
            return httpx.Response(200, json={"errcode": 1030003, "description": "路由地址错误"})
        order = json.loads(request.content)
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(order.get("bill_date"))):
            message = f"bill_date {order.get('bill_date')!r} 日期格式错误"
            return httpx.Response(200, json={"errcode": 2003, "description": message})
        for line in order.get("material_entity", []):
            # the save wants its numbers as text ("qty": 10 is refused)
            wrong = [k for k in ("qty", "tax_price") if not isinstance(line.get(k), str)]
            if wrong:
                message = f"{wrong[0]} invalid value for string type"
                return httpx.Response(200, json={"errcode": 2004, "description": message})
            if line["material_number"] not in self.known_skus:
                message = f"material_number {line['material_number']} 商品不存在"
                return httpx.Response(200, json={"errcode": 2001, "description": message})
        bill = order["bill_no"]
        if bill in self.records:
            message = f"单据编号bill_no {bill} 已存在"
            return httpx.Response(200, json={"errcode": 2002, "description": message})
        self.records[bill] = order
        self.kinds[bill] = path.rsplit("/", 1)[1]
        number = str(len(self.records))
        data = {"ids": [number], "id_number_map": {number: bill}}
        return httpx.Response(200, json={"errcode": 0, "data": data})


XINGCHEN = {
    "adapter": "xingchen",
    "endpoint": "https://xc.test",
    "client_id": FakeXingchen.CLIENT_ID,
    "client_secret": FakeXingchen.CLIENT_SECRET,
    "outer_instance_id": FakeXingchen.INSTANCE,
    "rate": 0,
    "sal_order": {
        "bill_no": "{{order_number}}",
        "bill_date": "{{placed_at|date}}",
        "customer_number": "C-{{channel}}",
        "material_entity": {
            "$each": "items",
            "$item": {
                "material_number": "{{sku}}",
                "qty": "{{quantity|text}}",
                "tax_price": "{{unit_price}}",
            },
        },
    },
}
