"""Yonyou U8 (用友U8) through the U8 OpenAPI (api.yonyouup.com): each order
becomes a sales order (销售订单).

As the OpenAPI is called (the shapes Yonyou's own openapi4j Java SDK uses):

- Token: ``GET {endpoint}/system/token?from_account=&app_key=&app_secret=``
  -> ``{"errcode": "0", "token": {"id", "expiresIn"}}`` (milliseconds). It is
  kept until a minute before it expires, and fetched again once when U8
  answers that it is invalid (``token_errcodes``).
- Trade id, U8's token for one submission: ``GET {endpoint}/system/tradeid?
  from_account=&app_key=&token=`` -> ``{"errcode": "0", "trade": {"id"}}``.
  A submission sent again with the same trade id is not processed twice; the
  adapter keeps each message's trade id while the process lives, so its
  retries reuse it.
- Add: ``POST {endpoint}/api/saleorder/add?from_account=&to_account=&app_key=
  &token=&tradeid=`` with ``{"saleorder": {...}}``. U8 answers at once with
  ``{"errcode": "0", "tradeid", "url"}`` and does the work asynchronously; the
  ``url`` (``/result?requestid=``) gives the outcome: ``{"errcode": "0",
  "id": <voucher code>}`` when saved, another errcode with ``errmsg`` when
  refused, no ``id`` yet while U8 is still working. The adapter asks up to
  ``result_polls`` times, ``result_wait`` seconds apart; an outcome still
  unknown then is tried again later (with the same trade id).

After a crash between U8's answer and our inbox record, the trade id is gone
with the process. So put the orderbus order number in the voucher's ``code``:
U8 refuses a second voucher with the same code (``duplicate_errcodes`` or the
words 重复/已存在); the adapter then reads that voucher
(``/api/saleorder/get?id=<code>``) and, when it is there, counts the order as
delivered. Other refusals are dead letters naming the field when U8 does.

After-sales documents (``documents``): a reversal, refund or return is added
as a voucher the integrator names (``/api/{voucher}/add``: the return or
red-letter voucher their U8 offers), its template filled from the order with
the after-sale (``after_sale``, its lines with ``minus_quantity`` and
``minus_amount`` for red-letter vouchers) and ``document_number`` as the
voucher's ``code``: like an order's, a second add is found again with
``/api/{voucher}/get``, not made twice.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field

from canonical.errors import EndpointUnavailable
from infra.tokens import TokenCache
from infra.transports import Answer, Transport, answer_json, http_problem, refused
from targets.adapters.base import (
    DocumentKind,
    Pacer,
    document_view,
    fields_named,
    render,
    template_fields,
)


class U8Document(BaseModel):
    """An after-sales document as a voucher of its own (the OpenAPI's
    ``/api/{voucher}/add`` and ``/get``; a red-letter voucher's quantities
    from ``minus_quantity``): the template is filled from :func:`document_view`."""

    model_config = ConfigDict(extra="forbid")

    voucher: str = Field(
        pattern=r"^[a-z_]{2,40}$", description="the OpenAPI voucher name, as in /api/{voucher}/add"
    )
    template: dict[str, Any] = Field(description="the voucher template; its code: document_number")


class U8Options(BaseModel):
    """Yonyou U8 OpenAPI (用友U8): a sales order per order."""

    model_config = ConfigDict(extra="forbid")

    adapter: str = Field(default="u8", description="this adapter: u8")
    endpoint: str = Field(default="https://api.yonyouup.com", description="the OpenAPI's base URL")
    from_account: str = Field(min_length=1, description="the calling account")
    to_account: str = Field(min_length=1, description="the U8 account (企业号) written to")
    app_key: str = Field(min_length=1, description="the app's key")
    app_secret: str = Field(min_length=1, description="its secret")
    saleorder: dict[str, Any] = Field(
        description="the sales order template ({{path}} placeholders, $each)"
    )
    result_polls: int = Field(
        default=10, ge=1, le=100, description="times the asynchronous result is asked for"
    )
    result_wait: float = Field(default=1.0, ge=0, description="seconds between two asks")
    token_errcodes: list[str] = Field(
        default_factory=lambda: ["20002", "20003"],
        description="error codes that mean the token was refused",
    )
    duplicate_errcodes: list[str] = Field(
        default_factory=list,
        description="error codes that mean the order exists already (then checked)",
    )
    rate: float = Field(default=5.0, ge=0, description="requests a second at most")
    documents: dict[DocumentKind, U8Document] = Field(
        default_factory=dict,
        description="after-sales documents (reversal, refund, return) and the voucher each "
        "is added as; a document without one is a dead letter for a person",
    )


class U8Adapter:
    name = "u8"

    def __init__(self, options: U8Options) -> None:
        self.options = options
        self.base = options.endpoint.rstrip("/")
        self.names = template_fields(options.saleorder)
        self.pacer = Pacer(options.rate)
        self._http: Transport | None = None
        self.token = TokenCache(self._fetch_token)
        self._trades: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, path: str, query: dict[str, str]) -> tuple[Answer, dict[str, Any]]:
        assert self._http is not None
        self.pacer.wait()
        answer = self._http.get(f"{self.base}{path}?{urlencode(query)}", {})
        return answer, self._read(answer)

    def _read(self, answer: Answer) -> dict[str, Any]:
        if answer.status_code == 429 or answer.status_code >= 500:
            raise http_problem("U8 OpenAPI", answer, answer.text[:500])
        said = answer_json(answer)
        if not isinstance(said, dict):
            raise http_problem("U8 OpenAPI", answer, f"not JSON: {answer.text[:200]}")
        return said

    def _fetch_token(self) -> tuple[str, float | None]:
        o = self.options
        query = {"from_account": o.from_account, "app_key": o.app_key, "app_secret": o.app_secret}
        answer, said = self._get("/system/token", query)
        token = said.get("token")
        if str(said.get("errcode")) != "0" or not isinstance(token, dict) or not token.get("id"):
            raise refused("U8 OpenAPI", f"no token: {said.get('errmsg')}", answer)
        lifetime = token.get("expiresIn")
        return str(token["id"]), float(lifetime) / 1000 if lifetime else None

    def _trade_id(self, message_id: str, token: str) -> str:
        with self._lock:
            known = self._trades.get(message_id)
        if known:
            return known
        o = self.options
        query = {"from_account": o.from_account, "app_key": o.app_key, "token": token}
        answer, said = self._get("/system/tradeid", query)
        trade = said.get("trade")
        if str(said.get("errcode")) != "0" or not isinstance(trade, dict) or not trade.get("id"):
            self._token_problem(said, token, answer)
            raise refused("U8 OpenAPI", f"no trade id: {said.get('errmsg')}", answer)
        with self._lock:
            self._trades[message_id] = str(trade["id"])
            while len(self._trades) > 10_000:
                self._trades.popitem(last=False)
        return str(trade["id"])

    def _token_problem(self, said: dict[str, Any], token: str, answer: Answer) -> None:
        if str(said.get("errcode")) in self.options.token_errcodes:
            self.token.expired(token)
            raise _TokenRefused(answer)

    @property
    def documents(self) -> frozenset[str]:
        """The after-sales documents this adapter adds (a voucher each)."""
        return frozenset(self.options.documents)

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        return self._submit("saleorder", self.options.saleorder, order, message_id, http)

    def deliver_document(
        self, order: dict[str, Any], document: str, after_sale: str, message_id: str,
        http: Transport,
    ) -> int:  # fmt: skip
        """An after-sale's document as a voucher of its own, its code the
        document's number: added once, found again after a crash."""
        spec = self.options.documents[document]  # type: ignore[index]
        view = document_view(order, document, after_sale)
        return self._submit(spec.voucher, spec.template, view, message_id, http)

    def _submit(
        self, voucher: str, template: dict[str, Any], source: dict[str, Any], message_id: str,
        http: Transport,
    ) -> int:  # fmt: skip
        self._http = http
        rendered = render(template, source)
        code = str(rendered.get("code") or "") if isinstance(rendered, dict) else ""
        body = json.dumps({voucher: rendered}, ensure_ascii=False).encode("utf-8")
        submission = _Submission(body, message_id, code, voucher)
        for attempt in range(2):
            token = self.token.get()
            try:
                return self._add(submission, token)
            except _TokenRefused as exc:
                if attempt == 1:
                    raise refused(
                        "U8 OpenAPI",
                        "a new token was refused too; check the credentials",
                        exc.answer,
                    ) from None
        raise AssertionError("unreachable")

    def _exists(self, code: str, voucher: str = "saleorder") -> bool:
        """Whether U8 has a voucher with this ``code`` (its ``get``)."""
        o = self.options
        if not code:
            return False
        query = {
            "from_account": o.from_account,
            "to_account": o.to_account,
            "app_key": o.app_key,
            "token": self.token.get(),
            "id": code,
        }
        _, said = self._get(f"/api/{voucher}/get", query)
        return str(said.get("errcode")) == "0" and isinstance(said.get(voucher), dict)

    def _add(self, submission: _Submission, token: str) -> int:
        o = self.options
        trade_id = self._trade_id(submission.message_id, token)
        query = {
            "from_account": o.from_account,
            "to_account": o.to_account,
            "app_key": o.app_key,
            "token": token,
            "tradeid": trade_id,
        }
        assert self._http is not None
        self.pacer.wait()
        answer = self._http.post(
            f"{self.base}/api/{submission.voucher}/add?{urlencode(query)}",
            submission.body,
            {"Content-Type": "application/json"},
        )
        said = self._read(answer)
        if str(said.get("errcode")) != "0":
            self._token_problem(said, token, answer)
            return self._refusal(said, answer, submission)
        if said.get("id"):  # done at once (a synchronous answer)
            return answer.status_code
        url = said.get("url")
        if not url:
            raise refused("U8 OpenAPI", f"no result address in {answer.text[:200]}", answer)
        return self._await_result(str(url), submission)

    def _await_result(self, url: str, submission: _Submission) -> int:
        assert self._http is not None
        for poll in range(self.options.result_polls):
            if poll:
                time.sleep(self.options.result_wait)
            answer = self._http.get(url, {})
            said = self._read(answer)
            if str(said.get("errcode")) != "0":
                return self._refusal(said, answer, submission)
            if said.get("id"):
                return answer.status_code
        raise EndpointUnavailable(
            f"U8 OpenAPI had not finished after {self.options.result_polls} looks at {url}"
        )

    def _refusal(self, said: dict[str, Any], answer: Answer, submission: _Submission) -> int:
        errcode, message = str(said.get("errcode")), str(said.get("errmsg") or "")
        duplicate = errcode in self.options.duplicate_errcodes or any(
            w in message for w in ("重复", "已存在")
        )
        if duplicate and self._exists(submission.code, submission.voucher):
            return answer.status_code  # the voucher is there from an earlier delivery
        where = fields_named(self.names, message, "U8")
        raise refused("U8 OpenAPI", f"errcode {errcode}: {message}{where}", answer)


@dataclass(frozen=True)
class _Submission:
    body: bytes
    message_id: str
    code: str  # the voucher's code, to find it after a duplicate refusal
    voucher: str = "saleorder"  # the OpenAPI voucher (/api/{voucher}/add)


class _TokenRefused(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__("token refused")
        self.answer = answer
