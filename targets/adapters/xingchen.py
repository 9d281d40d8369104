"""金蝶云星辰 (Kingdee Cloud Xingchen, formerly 精斗云) through the Kingdee API
gateway: each order becomes a sales order (销售订单).

What the gateway expects, and where each fact comes from (public integrations
stored in the search tool's code index; no code copied):

- Every call carries ``X-Api-ClientID`` (the app's client id),
  ``X-Api-Auth-Version: 2.0``, ``X-Api-TimeStamp`` (milliseconds),
  ``X-Api-Nonce``, ``X-Api-SignHeaders: X-Api-TimeStamp,X-Api-Nonce`` and
  ``X-Api-Signature``: HMAC-SHA256 with the client secret over ``METHOD\\n``
  + the URL-encoded path + ``\\n`` + the query parameters sorted by name, each
  name and value URL-encoded twice, joined with ``&`` + ``\\n`` +
  ``x-api-nonce:<nonce>\\n`` + ``x-api-timestamp:<ts>\\n``; the hex digest,
  then base64 of that hex text. (Seen alike in a Python client of the
  Jingdouyun API and two other Python and TypeScript clients of the gateway.)
- The app's own key and secret come from the app authorisation:
  ``POST /jdyconnector/app_management/push_app_authorize?outerInstanceId=``
  answers ``data: [{appKey, appSecret, domain}]``; the app secret rotates
  about every 24 hours, so it is fetched again, never configured.
- ``GET /jdyconnector/app_management/kingdee_auth_token?app_key=&app_signature=``
  with ``app_signature`` = base64 of the hex HMAC-SHA256 of the app key with
  the app secret answers ``data: {"app-token", "expires"}`` (milliseconds);
  business calls send it as the ``app-token`` header, with
  ``X-GW-Router-Addr: <domain>``. An invalid token is errcode 1030002006
  (a sync tool's notes: "遇 1030002006 自动重取授权重试").
- ``POST /jdy/v2/scm/sal_order`` saves a sales order (an endpoint catalogue
  names it 销售/销售订单保存; its list and ``/sal_order_detail`` answer rows
  with ``bill_no`` and ``material_entity``). Answers are ``{"errcode",
  "description", "data"}``, errcode 0 meaning success; a save answers
  ``data: {"ids", "id_number_map"}`` (two clients read the new bill's number
  from ``id_number_map``).
- The save body: the gateway's bill saves take ``bill_date`` as
  ``YYYY-MM-DD``, the counterparty by number (``customer_number`` on the
  sales side, ``supplier_number`` on purchases), ``remark``, and lines in
  ``material_entity`` with ``material_number``, ``qty`` and a price
  (``tax_price`` on a sales outbound, ``price`` on a purchase order), with
  optional ``stock_number``, ``unit_number``/``unit_id`` and ``cess``. Seen in
  two public clients' save calls (a Node client saving ``sal_out_bound``, a
  MES tool saving ``pur_order``), the second noting from a live account that
  numbers must be sent as strings: ``"qty": 10`` is refused with "invalid
  value for string type". So the default template sends ``qty`` and
  ``tax_price`` as text and ``bill_date`` as the order's date.

Still to check against your account's documentation: that ``sal_order``
takes the same names as those bills (no public client saving ``sal_order``
itself was found), and ``bill_no`` (our order number; the lists show it, no
public save sets it).
``bill_no`` is our order number, so a second save of the same order is
refused as a duplicate, which the adapter counts as delivered.

After-sales documents (``documents``): a reversal, refund or return is saved
as the bill the integrator names (``POST /jdy/v2/scm/{bill}``, their account's
sales return bill), its template filled from the order with the after-sale
(``after_sale``, its lines with ``name``, ``unit_price``, ``minus_quantity``)
and ``document_number`` as its ``bill_no``: a second save is a duplicate,
counted as delivered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import BaseModel, ConfigDict, Field

from canonical.errors import EndpointUnavailable
from infra.transports import Transport, answer_json, http_problem, refused
from targets.adapters.base import (
    DocumentKind,
    Pacer,
    document_view,
    fields_named,
    render,
    template_fields,
)

AUTHORIZE = "/jdyconnector/app_management/push_app_authorize"
APP_TOKEN_PATH = "/jdyconnector/app_management/kingdee_auth_token"  # noqa: S105 - a URL path
SALES_ORDER = "/jdy/v2/scm/sal_order"
DEFAULT_SALES_ORDER: dict[str, Any] = {
    "bill_no": "{{order_number}}",
    "bill_date": "{{placed_at|date}}",
    "customer_number": "{{channel}}",
    "remark": "{{channel}} {{external_id}}",
    "material_entity": {
        "$each": "items",
        "$item": {
            "material_number": "{{sku}}",
            "qty": "{{quantity|text}}",
            "tax_price": "{{unit_price}}",
        },
    },
}


def _twice(text: str) -> str:
    return quote(quote(text, safe=""), safe="")


def gateway_signature(
    secret: str, method: str, path: str, params: Mapping[str, str], nonce: str, timestamp: str
) -> str:
    """The gateway's X-Api-Signature (the recipe in this module's docstring)."""
    query = "&".join(f"{_twice(k)}={_twice(str(params[k]))}" for k in sorted(params))
    text = (
        f"{method.upper()}\n{quote(path, safe='')}\n{query}\n"
        f"x-api-nonce:{nonce}\nx-api-timestamp:{timestamp}\n"
    )
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    return base64.b64encode(digest.encode()).decode()


def app_signature(app_key: str, app_secret: str) -> str:
    digest = hmac.new(app_secret.encode(), app_key.encode(), hashlib.sha256).hexdigest()
    return base64.b64encode(digest.encode()).decode()


class XingchenDocument(BaseModel):
    """An after-sales document as a bill of its own (``POST /jdy/v2/scm/{bill}``,
    e.g. a sales return): the template is filled from :func:`document_view`."""

    model_config = ConfigDict(extra="forbid")

    bill: str = Field(
        pattern=r"^[a-z_]{2,40}$", description="the bill saved, as in /jdy/v2/scm/{bill}"
    )
    template: dict[str, Any] = Field(description="the bill's template; bill_no: document_number")


class XingchenOptions(BaseModel):
    """金蝶云星辰 (Kingdee Cloud Xingchen): a sales order per order."""

    model_config = ConfigDict(extra="forbid")

    adapter: str = Field(default="xingchen", description="this adapter: xingchen")
    endpoint: str = Field(
        default="https://api.kingdee.com", description="the Kingdee API gateway's base URL"
    )
    client_id: str = Field(min_length=1, description="the app's client id (X-Api-ClientID)")
    client_secret: str = Field(min_length=1, description="the app's client secret (signing)")
    outer_instance_id: str = Field(
        min_length=1, description="the account's outerInstanceId from the app authorisation"
    )
    sal_order: dict[str, Any] = Field(
        default_factory=lambda: dict(DEFAULT_SALES_ORDER),
        description="the sales order template ({{path}} placeholders, $each)",
    )
    token_codes: list[str] = Field(
        default_factory=lambda: ["1030002006"],
        description="errcodes that mean the app-token is no longer valid",
    )
    duplicate_words: list[str] = Field(
        default_factory=lambda: ["已存在", "重复"],
        description="words of a refusal that mean the order exists already (counted delivered)",
    )
    rate: float = Field(default=5.0, ge=0, description="requests a second at most")
    token_margin: float = Field(
        default=300, ge=0, description="seconds before its expiry an app-token is renewed"
    )
    documents: dict[DocumentKind, XingchenDocument] = Field(
        default_factory=dict,
        description="after-sales documents (reversal, refund, return) and the bill each is "
        "saved as; a document without one is a dead letter for a person",
    )


@dataclass(frozen=True)
class AppToken:
    token: str
    domain: str
    expires_at: float  # time.time() seconds


class XingchenAdapter:
    name = "xingchen"

    def __init__(self, options: XingchenOptions, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.base = options.endpoint.rstrip("/")
        self.names = template_fields(options.sal_order)
        self.pacer = Pacer(options.rate)
        self.clock = clock
        self._token: AppToken | None = None
        self._lock = threading.Lock()
        self.authorisations = 0

    @property
    def documents(self) -> frozenset[str]:
        """The after-sales documents this adapter saves (a bill each)."""
        return frozenset(self.options.documents)

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        return self._save(SALES_ORDER, self.options.sal_order, order, http)

    def deliver_document(
        self, order: dict[str, Any], document: str, after_sale: str, message_id: str,
        http: Transport,
    ) -> int:  # fmt: skip
        """An after-sale's document as a bill of its own, its ``bill_no`` the
        document's number: a second save is refused as a duplicate."""
        spec = self.options.documents[document]  # type: ignore[index]
        view = document_view(order, document, after_sale)
        return self._save(f"/jdy/v2/scm/{spec.bill}", spec.template, view, http)

    def _save(
        self, path: str, template: dict[str, Any], source: dict[str, Any], http: Transport
    ) -> int:
        body = json.dumps(render(template, source), ensure_ascii=False).encode()
        for attempt in range(2):
            token = self._app_token(http)
            headers = {
                **self._signed("POST", path, {}),
                "Content-Type": "application/json",
                "app-token": token.token,
                "X-GW-Router-Addr": token.domain,
            }
            self.pacer.wait()
            answer = http.post(self.base + path, body, headers)
            said = answer_json(answer)
            said = said if isinstance(said, dict) else {}
            code = str(said.get("errcode", ""))
            message = str(said.get("description") or said.get("msg") or "")
            if answer.status_code == 401 or code in self.options.token_codes:
                self._forget(token)
                if attempt == 0:
                    continue
                raise refused("金蝶云星辰", f"app-token refused ({code} {message})", answer)
            if answer.status_code == 429 or answer.status_code >= 500:
                raise http_problem("金蝶云星辰", answer, f"{code} {message}".strip())
            if 200 <= answer.status_code < 300 and code in ("0", ""):
                return answer.status_code
            if any(word in message for word in self.options.duplicate_words) and (
                "bill_no" in message or "单据编号" in message or "编号" in message
            ):
                return 200  # saved by an earlier delivery of this order
            where = fields_named(self.names, message, "星辰")
            raise refused("金蝶云星辰", f"{code} {message}{where}".strip(), answer)
        raise AssertionError("unreachable")

    def _signed(self, method: str, path: str, params: Mapping[str, str]) -> dict[str, str]:
        timestamp = str(int(self.clock() * 1000))
        nonce = str(secrets.randbelow(10**9))
        return {
            "X-Api-ClientID": self.options.client_id,
            "X-Api-Auth-Version": "2.0",
            "X-Api-TimeStamp": timestamp,
            "X-Api-Nonce": nonce,
            "X-Api-SignHeaders": "X-Api-TimeStamp,X-Api-Nonce",
            "X-Api-Signature": gateway_signature(
                self.options.client_secret, method, path, params, nonce, timestamp
            ),
        }

    def _forget(self, token: AppToken) -> None:
        with self._lock:
            if self._token == token:
                self._token = None

    def _app_token(self, http: Transport) -> AppToken:
        with self._lock:
            held = self._token
            if held is not None and self.clock() < held.expires_at - self.options.token_margin:
                return held
            self._token = self._authorise(http)
            return self._token

    def _authorise(self, http: Transport) -> AppToken:
        """The app's current key and secret (the secret rotates), then an app-token."""
        params = {"outerInstanceId": self.options.outer_instance_id}
        answer = http.post(
            f"{self.base}{AUTHORIZE}?{urlencode(params)}",
            b"",
            self._signed("POST", AUTHORIZE, params),
        )
        granted = self._data(answer, "app authorisation")
        grant = granted[0] if isinstance(granted, list) and granted else granted
        if not isinstance(grant, dict) or not grant.get("appKey") or not grant.get("appSecret"):
            raise refused(
                "金蝶云星辰", f"the app authorisation answered no app key: {granted}", answer
            )
        query = {
            "app_key": str(grant["appKey"]),
            "app_signature": app_signature(str(grant["appKey"]), str(grant["appSecret"])),
        }
        url = f"{self.base}{APP_TOKEN_PATH}?{urlencode(query)}"
        answer = http.get(url, self._signed("GET", APP_TOKEN_PATH, query))
        data = self._data(answer, "app-token")
        token = data.get("app-token") if isinstance(data, dict) else None
        if not token:
            raise refused("金蝶云星辰", f"no app-token in the answer: {data}", answer)
        expires = data.get("expires") if isinstance(data, dict) else None
        lifetime_end = float(expires) / 1000 if expires else self.clock() + 3600
        self.authorisations += 1
        return AppToken(str(token), str(grant.get("domain") or ""), lifetime_end)

    @staticmethod
    def _data(answer: Any, what: str) -> Any:
        if answer.status_code == 429 or answer.status_code >= 500:
            raise http_problem("金蝶云星辰", answer, what)
        said = answer_json(answer)
        if not isinstance(said, dict):
            raise EndpointUnavailable(f"金蝶云星辰 {what}: an answer that is not JSON")
        if str(said.get("errcode", "0")) != "0":
            raise refused(
                "金蝶云星辰", f"{what}: {said.get('errcode')} {said.get('description')}", answer
            )
        return said.get("data")
