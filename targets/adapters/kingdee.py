"""Kingdee Cloud Galaxy (金蝶云星空, K/3 Cloud): each order becomes a sales
order (``SAL_SaleOrder``) through the WebAPI.

As the WebAPI is called (Kingdee's "WebAPI接口之【销售订单保存/修改接口】"
guide, and the request and answer shapes that its SDKs use):

- Login with a third-party app's id and secret: ``POST {endpoint}/Kingdee.BOS.
  WebApi.ServicesStub.AuthService.LoginByAppSecret.common.kdsvc`` with
  ``{"parameters": [acct_id, username, app_id, app_secret, lcid]}``; the answer
  has ``LoginResultType`` (1: logged in) and ``KDSVCSessionId``, sent back as
  the ``kdservice-sessionid`` cookie.
- Save: ``POST {endpoint}/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.
  Save.common.kdsvc`` with ``{"formid": "SAL_SaleOrder", "data": {"Model":
  {...}, "NeedReturnFields": ["FBillNo"], "IsAutoSubmitAndAudit": false}}``;
  the answer is ``{"Result": {"ResponseStatus": {"IsSuccess", "ErrorCode",
  "MsgCode", "Errors": [{"FieldName", "Message", "DIndex"}]}, "Id", "Number"}}``.
- A lost session (``MsgCode`` 1, or the message "会话信息已丢失") logs in
  again, once; a 429 or 5xx is tried again with backoff.

The WebAPI has no idempotency key. The bill number (``FBillNo``, the
orderbus order number by default) is unique in Kingdee, so a redelivered
order is refused as a duplicate number; the adapter then looks the number up
(``ExecuteBillQuery``) and, when the bill is there, counts the order as
delivered. Any other refusal is a dead letter naming Kingdee's field and the
order field it was filled from.

``model`` is a JSON template (targets/adapters/base.py ``render``), e.g.
``{"FBillNo": "{{order_number}}", "FCustId": {"FNumber": "{{customer.code}}"},
"FSaleOrderEntry": {"$each": "items", "$item": {"FMaterialId": {"FNumber":
"{{sku}}"}, "FQty": "{{quantity}}", "FTaxPrice": "{{unit_price|number}}"}}}``.

After-sales documents (``documents``): a reversal, refund or return is saved
as a bill of the form the integrator names for it (a sales return,
``SAL_RETURNSTOCK`` 销售退货单, for returns; a red-letter receivable or a
refund bill for money only), its template filled from the order with the
after-sale (``after_sale``, its lines with ``name``, ``unit_price``,
``minus_quantity``, ``minus_amount``) and ``document_number``, the bill's own
number (``<order number>-RT-<8 hex>``), unique as the order's is: a second
save of the same document is found again, not made twice.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from infra.tokens import TokenCache
from infra.transports import Answer, Transport, answer_json, http_problem, refused
from targets.adapters.base import (
    DocumentKind,
    Pacer,
    document_view,
    render,
    template_fields,
    value_at,
)

STUB = "Kingdee.BOS.WebApi.ServicesStub"
LOGIN = f"{STUB}.AuthService.LoginByAppSecret.common.kdsvc"
SAVE = f"{STUB}.DynamicFormService.Save.common.kdsvc"
QUERY = f"{STUB}.DynamicFormService.ExecuteBillQuery.common.kdsvc"
SESSION_LOST = 1  # MsgCode: the context (session) was lost
DUPLICATE_WORDS = ("已存在", "重复", "唯一")


class KingdeeDocument(BaseModel):
    """An after-sales document as a bill of its own form (e.g. ``SAL_RETURNSTOCK``,
    销售退货单): the model template is filled from :func:`document_view`."""

    model_config = ConfigDict(extra="forbid")

    form_id: str = Field(min_length=1, description="the form saved, e.g. SAL_RETURNSTOCK")
    model: dict[str, Any] = Field(description="the bill's model template")
    bill_no: str = Field(
        default="document_number", description="the field FBillNo holds (found again after a crash)"
    )


class KingdeeOptions(BaseModel):
    """Kingdee Cloud Galaxy (金蝶云星空) WebAPI: a sales order per order."""

    model_config = ConfigDict(extra="forbid")

    adapter: str = Field(default="kingdee", description="this adapter: kingdee")
    endpoint: str = Field(description="http(s)://host/k3cloud")
    acct_id: str = Field(min_length=1, description="the data centre's id")
    username: str = Field(min_length=1, description="the API user")
    app_id: str = Field(min_length=1, description="the third-party app's id")
    app_secret: str = Field(min_length=1, description="its secret")
    lcid: int = Field(default=2052, description="language (2052: Simplified Chinese)")
    form_id: str = Field(default="SAL_SaleOrder", description="the form saved")
    model: dict[str, Any] = Field(
        description="the bill's model template ({{path}} placeholders, $each)"
    )
    bill_no: str = Field(default="order_number", description="the order field FBillNo holds")
    auto_submit_and_audit: bool = Field(
        default=False, description="submit and audit the bill when saved"
    )
    rate: float = Field(default=5.0, ge=0, description="requests a second at most")
    documents: dict[DocumentKind, KingdeeDocument] = Field(
        default_factory=dict,
        description="after-sales documents (reversal, refund, return) and the form each is "
        "saved as; a document without one is a dead letter for a person",
    )


class KingdeeAdapter:
    name = "kingdee"

    def __init__(self, options: KingdeeOptions, http: Transport | None = None) -> None:
        self.options = options
        self.base = options.endpoint.rstrip("/") + "/"
        self.names = template_fields(options.model)
        self.pacer = Pacer(options.rate)
        self._http = http
        self.session = TokenCache(self._login)

    def _login(self) -> tuple[str, float | None]:
        assert self._http is not None
        o = self.options
        body = {"parameters": [o.acct_id, o.username, o.app_id, o.app_secret, o.lcid]}
        answer = self._post(LOGIN, body, {})
        said = answer_json(answer)
        if answer.status_code >= 300 or not isinstance(said, dict):
            raise http_problem("Kingdee login", answer, answer.text[:500])
        if said.get("LoginResultType") != 1 or not said.get("KDSVCSessionId"):
            raise refused("Kingdee", f"login failed: {said.get('Message')}", answer)
        return str(said["KDSVCSessionId"]), None  # a session lives until Kingdee drops it

    def _post(self, service: str, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        assert self._http is not None
        self.pacer.wait()
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        return self._http.post(
            self.base + service, data, {"Content-Type": "application/json", **headers}
        )

    def _call(self, service: str, body: dict[str, Any]) -> tuple[Answer, Any]:
        """Call with the session; log in again once when Kingdee lost it."""
        for attempt in range(2):
            session = self.session.get()
            answer = self._post(service, body, {"Cookie": f"kdservice-sessionid={session}"})
            if answer.status_code == 429 or answer.status_code >= 500:
                raise http_problem("Kingdee", answer, answer.text[:500])
            said = answer_json(answer)
            if _session_lost(said) and attempt == 0:
                self.session.expired(session)
                continue
            if _session_lost(said):
                raise refused("Kingdee", "a new session was refused too; check the credentials")
            return answer, said
        raise AssertionError("unreachable")

    @property
    def documents(self) -> frozenset[str]:
        """The after-sales documents this adapter saves (a bill of a form each)."""
        return frozenset(self.options.documents)

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        o = self.options
        return self._save(o.form_id, o.model, o.bill_no, order, http)

    def deliver_document(
        self, order: dict[str, Any], document: str, after_sale: str, message_id: str,
        http: Transport,
    ) -> int:  # fmt: skip
        """An after-sale's document as a bill of its form, with its own bill
        number: saved once, found again after a crash like an order."""
        form = self.options.documents[document]  # type: ignore[index]
        view = document_view(order, document, after_sale)
        return self._save(form.form_id, form.model, form.bill_no, view, http)

    def _save(
        self, form_id: str, template: dict[str, Any], bill_no_path: str, source: dict[str, Any],
        http: Transport,
    ) -> int:  # fmt: skip
        self._http = http
        body = {
            "formid": form_id,
            "data": {
                "Model": render(template, source),
                "NeedReturnFields": ["FBillNo"],
                "IsAutoSubmitAndAudit": self.options.auto_submit_and_audit,
            },
        }
        answer, said = self._call(SAVE, body)
        status = _status(said)
        if status.get("IsSuccess") is True:
            return answer.status_code
        errors = status.get("Errors") or []
        bill_no = str(value_at(source, bill_no_path) or "")
        if bill_no and _duplicate_number(errors) and self._exists(form_id, bill_no):
            return answer.status_code  # saved by an earlier delivery of this bill
        raise refused("Kingdee", self._explain(errors, status), answer)

    def _exists(self, form_id: str, bill_no: str) -> bool:
        quoted = bill_no.replace("'", "''")
        query = {
            "data": {
                "FormId": form_id,
                "FieldKeys": "FID,FBillNo",
                "FilterString": f"FBillNo='{quoted}'",
                "Limit": 1,
            }
        }
        _, rows = self._call(QUERY, query)
        return isinstance(rows, list) and len(rows) > 0

    def _explain(self, errors: list[dict[str, Any]], status: dict[str, Any]) -> str:
        if not errors:
            return f"MsgCode {status.get('MsgCode')}, no reason given"
        parts = []
        for error in errors:
            field = str(error.get("FieldName") or "")
            ours = self.names.get(field)
            where = f" ({field})" if field else ""
            if ours:
                where = f" (field {ours}, Kingdee {field})"
            parts.append(f"{error.get('Message', '')}{where}")
        return "; ".join(parts)


def _status(said: Any) -> dict[str, Any]:
    if isinstance(said, dict):
        result = said.get("Result") or {}
        status = result.get("ResponseStatus") if isinstance(result, dict) else None
        if isinstance(status, dict):
            return status
    if isinstance(said, list) and said and isinstance(said[0], list) and said[0]:
        return _status(said[0][0])  # the query service wraps a failure in [[...]]
    return {}


def _session_lost(said: Any) -> bool:
    status = _status(said)
    if status.get("IsSuccess") is not False:
        return False
    messages = " ".join(str(e.get("Message", "")) for e in status.get("Errors") or [])
    return status.get("MsgCode") == SESSION_LOST or "会话信息已丢失" in messages


def _duplicate_number(errors: list[dict[str, Any]]) -> bool:
    return any(
        str(e.get("FieldName", "")).upper() == "FBILLNO"
        and any(word in str(e.get("Message", "")) for word in DUPLICATE_WORDS)
        for e in errors
    )
