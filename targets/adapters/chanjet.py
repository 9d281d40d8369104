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
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field

from infra.transports import Transport, answer_json, http_problem, refused
from targets.adapters.base import Pacer, fields_named, render, template_fields


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

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        body = json.dumps({"dto": render(self.options.dto, order)}, ensure_ascii=False)
        for attempt in range(2):
            token = self._token
            self.pacer.wait()
            answer = http.post(
                f"{self.base}/tplus/api/v2/saleOrder/Create",
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
