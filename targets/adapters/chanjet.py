"""Chanjet T+ (畅捷通T+, T+Cloud) through the Chanjet open platform: each order
becomes a sales order (销货订单).

As the open platform is called (the shapes its integrations use):

- ``POST {endpoint}/tplus/api/v2/saleOrder/Create`` with headers ``appKey``,
  ``appSecret``, ``openToken`` and the body ``{"dto": {...}}`` (``Customer``
  ``{"Code"}``, ``ExternalCode``, ``SaleOrderDetails`` with ``Inventory``
  ``{"Code"}``, ``Unit``, ``Quantity``, ``OrigTaxPrice``, ...). Success is a
  2xx answer.
- A refusal is a 4xx/5xx answer ``{"code", "message", "data"}``; the adapter
  reads a 5xx as T+ or its gateway being down (tried again), a 4xx as the
  order's refusal (a dead letter naming the field when T+ names it).
- The open token expires: with ``refresh_token`` configured, a refused token
  (401, or a ``code`` in ``token_codes``) is renewed once with ``GET
  {endpoint}/auth/refreshToken?grantType=refresh_token&appKey=&refreshToken=``
  -> ``{"code": "200", "result": {"access_token", "refresh_token"}}``. Chanjet
  rotates the refresh token; the new one is kept in memory only, so after a
  restart the configured one must still be valid (a limitation, said in the
  README).

T+ has no idempotency key, but ``ExternalCode`` (the orderbus order number
by default) is unique per voucher type: a second create with the same
external code is refused as a duplicate, which the adapter counts as
delivered.

After-sales documents (``documents``): a reversal, refund or return is
created as the voucher the integrator names (``/tplus/api/v2/{api}``: the
sales return or red-letter voucher of their T+), its template filled from the
order with the after-sale (``after_sale``, its lines with ``minus_quantity``
and ``minus_amount``) and ``document_number`` as its ``ExternalCode``: a
second create of the same document is a duplicate, counted as delivered.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field

from infra.transports import Transport, answer_json, http_problem, refused
from targets.adapters.base import (
    DocumentKind,
    Pacer,
    document_view,
    fields_named,
    render,
    template_fields,
)


class ChanjetDocument(BaseModel):
    """An after-sales document as a voucher of its own (``/tplus/api/v2/{api}``,
    e.g. a sales return; a red-letter voucher's quantities from
    ``minus_quantity``): the template is filled from :func:`document_view`."""

    model_config = ConfigDict(extra="forbid")

    api: str = Field(
        pattern=r"^[A-Za-z]{2,40}/[A-Za-z]{2,40}$",
        description="the voucher's create API after /tplus/api/v2/, e.g. saleDelivery/Create",
    )
    dto: dict[str, Any] = Field(description="the voucher template; ExternalCode: document_number")


class ChanjetOptions(BaseModel):
    """Chanjet T+ open platform (畅捷通T+): a sales order per order."""

    model_config = ConfigDict(extra="forbid")

    adapter: str = Field(default="chanjet", description="this adapter: chanjet")
    endpoint: str = Field(
        default="https://openapi.chanjet.com", description="the open platform's base URL"
    )
    app_key: str = Field(min_length=1, description="the app's appKey")
    app_secret: str = Field(min_length=1, description="the app's appSecret")
    open_token: str = Field(min_length=1, description="the account's openToken")
    refresh_token: str | None = Field(default=None, description="to renew a refused openToken once")
    dto: dict[str, Any] = Field(
        description="the sales order template ({{path}} placeholders, $each)"
    )
    token_codes: list[str] = Field(
        default_factory=lambda: ["401", "EXSM0004"],
        description="error codes that mean the token was refused",
    )
    duplicate_words: list[str] = Field(
        default_factory=lambda: ["已存在", "重复"],
        description="words of a refusal that mean the order exists already (counted delivered)",
    )
    rate: float = Field(default=5.0, ge=0, description="requests a second at most")
    documents: dict[DocumentKind, ChanjetDocument] = Field(
        default_factory=dict,
        description="after-sales documents (reversal, refund, return) and the voucher each "
        "is created as; a document without one is a dead letter for a person",
    )


class ChanjetAdapter:
    name = "chanjet"

    def __init__(self, options: ChanjetOptions) -> None:
        self.options = options
        self.base = options.endpoint.rstrip("/")
        self.names = template_fields(options.dto)
        self.pacer = Pacer(options.rate)
        self._token = options.open_token
        self._refresh = options.refresh_token
        self._lock = threading.Lock()
        self.refreshed = 0

    @property
    def documents(self) -> frozenset[str]:
        """The after-sales documents this adapter creates (a voucher each)."""
        return frozenset(self.options.documents)

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        return self._create("saleOrder/Create", self.options.dto, order, http)

    def deliver_document(
        self, order: dict[str, Any], document: str, after_sale: str, message_id: str,
        http: Transport,
    ) -> int:  # fmt: skip
        """An after-sale's document as a voucher of its own, its external code
        the document's number: a second create is refused as a duplicate."""
        spec = self.options.documents[document]  # type: ignore[index]
        view = document_view(order, document, after_sale)
        return self._create(spec.api, spec.dto, view, http)

    def _create(
        self, api: str, template: dict[str, Any], source: dict[str, Any], http: Transport
    ) -> int:
        body = json.dumps({"dto": render(template, source)}, ensure_ascii=False)
        for attempt in range(2):
            token = self._token
            self.pacer.wait()
            answer = http.post(
                f"{self.base}/tplus/api/v2/{api}",
                body.encode("utf-8"),
                {
                    "Content-Type": "application/json",
                    "appKey": self.options.app_key,
                    "appSecret": self.options.app_secret,
                    "openToken": token,
                },
            )
            if 200 <= answer.status_code < 300:
                return answer.status_code
            said = answer_json(answer)
            said = said if isinstance(said, dict) else {}
            code, message = str(said.get("code", "")), str(said.get("message", ""))
            if answer.status_code == 401 or code in self.options.token_codes:
                if attempt == 0 and self._renew(token, http):
                    continue
                raise refused("Chanjet T+", f"open token refused ({code} {message})", answer)
            if answer.status_code == 429 or answer.status_code >= 500:
                raise http_problem("Chanjet T+", answer, f"{code} {message}".strip())
            if any(word in message for word in self.options.duplicate_words) and (
                "ExternalCode" in message or "外部" in message
            ):
                return 200  # created by an earlier delivery of this order
            where = fields_named(self.names, message, "T+")
            raise refused("Chanjet T+", f"{code} {message}{where}".strip(), answer)
        raise AssertionError("unreachable")

    def _renew(self, refused_token: str, http: Transport) -> bool:
        with self._lock:
            if self._token != refused_token:
                return True  # another thread renewed it meanwhile
            if not self._refresh:
                return False
            query = {
                "grantType": "refresh_token",
                "appKey": self.options.app_key,
                "refreshToken": self._refresh,
            }
            answer = http.get(f"{self.base}/auth/refreshToken?{urlencode(query)}", {})
            said = answer_json(answer)
            result = said.get("result") if isinstance(said, dict) else None
            if answer.status_code >= 500:
                raise http_problem("Chanjet auth", answer, answer.text[:300])
            if not isinstance(result, dict) or not result.get("access_token"):
                return False
            self._token = str(result["access_token"])
            self._refresh = str(result.get("refresh_token") or self._refresh)
            self.refreshed += 1
            return True
