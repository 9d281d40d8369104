"""A fake Doudian open API (an httpx transport): ``/token/create`` and
``/order/orderDetail``, checking each request's signature by the documented
rule, with scripted trouble (down, rate-limited, token expired).

The answers' shapes follow the official Go SDK's response types
(``BaseDoudianOpApiResponse``: code, msg, sub_code, sub_msg, log_id; data);
code 10000 is success. The error sub codes are ours: Doudian's list was not
at hand, and the client classifies by their words.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

SUCCESS = 10000


class FakeDoudian:
    """Doudian's open API: token.create, order.orderDetail, afterSale.List, order.logisticsAdd
    (order_id, company_code, logistics_code; the "shipped already" refusal is
    our assumption), each request's signature checked."""

    def __init__(self, app_key: str, app_secret: str, shop_id: str) -> None:
        self.app_key = app_key
        self.app_secret = app_secret
        self.shop_id = shop_id
        self.orders: dict[str, dict[str, Any]] = {}
        self.after_sales: dict[str, list[dict[str, Any]]] = {}  # afterSale.List items, by order
        self.stock: dict[str, int] = {}  # "product_id:sku_id" -> stock_num (sku.syncStock)
        self.calls: list[str] = []
        self.tokens_issued = 0
        self.valid_tokens: set[str] = set()
        self.down = 0  # answer this many requests with HTTP 503
        self.rate_limited = 0  # answer this many with HTTP 429
        self.shipped: dict[str, dict[str, Any]] = {}  # order.logisticsAdd, by order_id

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def expire_tokens(self) -> None:
        self.valid_tokens.clear()

    def _answer(self, code: int, data: Any = None, **extra: Any) -> httpx.Response:
        body = {"code": code, "msg": "success" if code == SUCCESS else "fail", "log_id": "fake"}
        body.update({"sub_code": "", "sub_msg": ""} | extra)
        if data is not None:
            body["data"] = data
        return httpx.Response(200, json=body)

    def _signed(self, request: httpx.Request) -> bool:
        q = request.url.params
        text = request.content.decode("utf-8")
        pattern = (
            f"app_key{q['app_key']}method{q['method']}param_json{text}timestamp{q['timestamp']}v2"
        )
        expected = hmac.new(
            self.app_secret.encode(),
            (self.app_secret + pattern + self.app_secret).encode(),
            hashlib.sha256,
        ).hexdigest()
        return (
            q.get("v") == "2"
            and q.get("sign_method") == "hmac-sha256"
            and q.get("app_key") == self.app_key
            and hmac.compare_digest(expected, q.get("sign", ""))
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        method = request.url.path.strip("/").replace("/", ".")
        self.calls.append(method)
        if self.down > 0:
            self.down -= 1
            return httpx.Response(503, text="upstream unavailable")
        if self.rate_limited > 0:
            self.rate_limited -= 1
            return httpx.Response(429, text="too many requests")
        if request.url.params.get("method") != method or not self._signed(request):
            return self._answer(40004, sub_code="isv.sign-invalid", sub_msg="签名错误")
        params = json.loads(request.content)
        if method == "token.create":
            if params != {"code": "", "grant_type": "authorization_self", "shop_id": self.shop_id}:
                return self._answer(40004, sub_code="isv.invalid-param", sub_msg="参数错误")
            self.tokens_issued += 1
            token = f"token-{self.tokens_issued}"
            self.valid_tokens.add(token)
            data = {"access_token": token, "expires_in": 604800, "shop_id": self.shop_id}
            return self._answer(SUCCESS, data)
        if request.url.params.get("access_token") not in self.valid_tokens:
            return self._answer(
                40003, sub_code="isv.access-token-expired", sub_msg="access_token已过期"
            )
        if method == "order.orderDetail":
            order = self.orders.get(str(params.get("shop_order_id")))
            if order is None:
                return self._answer(50002, sub_code="isv.business-failed", sub_msg="订单不存在")
            return self._answer(SUCCESS, {"shop_order_detail": order})
        if method == "sku.syncStock":
            listing = f"{params.get('product_id')}:{params.get('sku_id')}"
            if listing not in self.stock or params.get("incremental") is not False:
                return self._answer(50002, sub_code="isv.business-failed", sub_msg="商品不存在")
            self.stock[listing] = int(params["stock_num"])
            return self._answer(SUCCESS, {})
        if method == "afterSale.List":
            items = self.after_sales.get(str(params.get("order_id")), [])
            data = {"items": items, "has_more": False, "total": len(items), "page": 0, "size": 100}
            return self._answer(SUCCESS, data)
        if method == "order.logisticsAdd":
            order_id = str(params.get("order_id"))
            if order_id in self.shipped:
                return self._answer(50002, sub_code="isv.business-failed", sub_msg="订单已发货")
            self.shipped[order_id] = params
            return self._answer(SUCCESS, {})
        return self._answer(40004, sub_code="isv.method-not-found", sub_msg="method not exist")


class Served:
    """A fake served over real HTTP, for orderbus running as another process."""

    def __init__(self, handle: Callable[[httpx.Request], httpx.Response]) -> None:
        fake_handle = handle

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                host = self.headers.get("Host") or "fake"
                request = httpx.Request(
                    method,
                    f"http://{host}{self.path}",
                    headers=dict(self.headers.items()),
                    content=body,
                )
                answer = fake_handle(request)
                content = answer.content
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def do_POST(self) -> None:
                self._answer("POST")

            def do_GET(self) -> None:
                self._answer("GET")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def douyin_channel_settings(app_key: str, secret: str, shop: str, endpoint: str) -> dict[str, Any]:
    """orderbus settings for a Douyin channel ``dy`` fetching from ``endpoint``
    (keyword arguments of tests.e2e.process.orderbus_env)."""
    return {
        "channel_secrets": {"dy": [secret]},
        "channels": {
            "dy": {
                "connector": "douyin",
                "app_key": app_key,
                "douyin": {"shop_id": shop, "endpoint": endpoint},
            }
        },
    }
