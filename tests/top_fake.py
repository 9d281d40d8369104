"""A fake Taobao TOP router (an httpx transport): TMC consume/confirm,
``taobao.trade.fullinfo.get`` and ``taobao.refund.get``, each request's md5 signature checked by the
rule Taobao's SDKs apply, with scripted trouble.

Answers have TOP's shapes: ``{"<method>_response": {...}}`` or
``{"error_response": {code, msg, sub_code, sub_msg}}``. The codes used are
TOP's public ones (7 call limit, 15 remote service error, 27 invalid session);
the sub codes are ours where the docs were not at hand.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import parse_qsl

import httpx


class FakeTop:
    def __init__(self, app_key: str, app_secret: str, session: str) -> None:
        self.app_key = app_key
        self.app_secret = app_secret
        self.session = session
        self.trades: dict[str, str] = {}  # tid -> the trade_fullinfo_get_response text
        self.refunds: dict[str, dict[str, Any]] = {}  # refund_id -> taobao.refund.get's refund
        self.items: dict[str, int] = {}  # "num_iid[:sku_id]" -> quantity, for the stock API
        self.queue: list[str] = []  # tmc_message objects as JSON text (ids stay exact)
        self.unconfirmed: dict[str, str] = {}
        self.confirmed: list[str] = []
        self.calls: list[str] = []
        self.down = 0
        self.limited = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @staticmethod
    def _error(code: int, msg: str, sub_code: str = "", sub_msg: str = "") -> httpx.Response:
        body = {
            "error_response": {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}
        }
        return httpx.Response(200, json=body)

    def handle(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode("utf-8"), keep_blank_values=True))
        method = form.get("method", "")
        self.calls.append(method)
        if self.down > 0:
            self.down -= 1
            return httpx.Response(502, text="bad gateway")
        if self.limited > 0:
            self.limited -= 1
            return self._error(7, "App Call Limited", "accesscontrol.limited-by-app-access-count")
        sign = form.pop("sign", "")
        text = self.app_secret + "".join(k + form[k] for k in sorted(form)) + self.app_secret
        if (
            sign != hashlib.md5(text.encode("utf-8")).hexdigest().upper()
            or form.get("app_key") != self.app_key
        ):
            return self._error(25, "Invalid signature")
        if form.get("session") != self.session:
            return self._error(27, "Invalid session", "invalid-sessionkey", "SessionKey非法")
        if method == "taobao.tmc.messages.consume":
            batch = self.queue[: int(form.get("quantity", "100"))]
            self.queue = self.queue[len(batch) :]
            for text_message in batch:
                self.unconfirmed[str(json.loads(text_message)["id"])] = text_message
            messages = ",".join(batch)
            return httpx.Response(
                200,
                content=(
                    '{"tmc_messages_consume_response":{"messages":{"tmc_message":['
                    + messages
                    + "]}}}"
                ).encode("utf-8"),
            )
        if method == "taobao.tmc.messages.confirm":
            for mid in form.get("s_message_ids", "").split(","):
                if self.unconfirmed.pop(mid, None) is not None:
                    self.confirmed.append(mid)
            return httpx.Response(200, json={"tmc_messages_confirm_response": {"is_success": True}})
        if method == "taobao.trade.fullinfo.get":
            answer = self.trades.get(form.get("tid", ""))
            if answer is None:
                return self._error(15, "Remote service error", "isv.trade-not-exist", "交易不存在")
            return httpx.Response(200, content=answer.encode("utf-8"))
        if method == "taobao.item.quantity.update":
            listing = form["num_iid"] + (f":{form['sku_id']}" if form.get("sku_id") else "")
            if listing not in self.items or form.get("type") != "1":
                return self._error(15, "Remote service error", "isv.item-not-exist", "商品不存在")
            self.items[listing] = int(form["quantity"])
            item = {"num_iid": int(form["num_iid"]), "num": int(form["quantity"])}
            return httpx.Response(200, json={"item_quantity_update_response": {"item": item}})
        if method == "taobao.refund.get":
            refund = self.refunds.get(form.get("refund_id", ""))
            if refund is None:
                return self._error(15, "Remote service error", "isv.refund-not-exist", "退款不存在")
            return httpx.Response(200, json={"refund_get_response": {"refund": refund}})
        return self._error(22, "Invalid method")

    def redeliver_unconfirmed(self) -> None:
        """What TMC does after a while with messages nobody confirmed."""
        self.queue = list(self.unconfirmed.values()) + self.queue
        self.unconfirmed.clear()


def message_text(consume_answer: str) -> str:
    """The one tmc_message object in a consume answer, as text (ids exact)."""
    start = consume_answer.index("[") + 1
    end = consume_answer.rindex("]")
    return consume_answer[start:end]


def load(answer_text: str) -> Any:
    return json.loads(answer_text)
