"""Jiandaoyun (简道云): each order becomes a record of a form.

As Jiandaoyun's open API v5 is called (its documentation, as integrations
use it): ``POST {endpoint}/api/v5/app/entry/data/create`` with
``Authorization: Bearer <API key>`` and ``{"app_id", "entry_id", "data",
"transaction_id", "is_start_workflow"}``; ``data`` holds each form widget as
``{"_widget_…": {"value": …}}``, a sub-form as a list of such objects. The
answer is ``{"data": {"_id": …, …}}``. The create endpoint allows a limited
rate per application (``rate``, default 5 a second, below the documented
ceiling); a 429 or 5xx is tried again with backoff, a 4xx is the form's refusal
(a required widget empty, a value of the wrong type): a dead letter whose
reason names our field when Jiandaoyun names the widget.

The mapping (``mapping`` or ``mapping_file``) goes from widget ids to the
order's fields: ``{"_widget_1": "order_number", "_widget_2": "customer.phone",
"_widget_3": {"path": "total", "number": true}, "_widget_4": {"subform":
"items", "fields": {"_widget_5": "sku", "_widget_6": "quantity"}}}``.

``transaction_id`` is a UUID derived from the message id, the same on every
redelivery: Jiandaoyun's token for one submission (the consumers' inbox
already keeps a delivered message from being sent twice; this covers the
crash between Jiandaoyun's answer and the inbox commit).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from infra.transports import Answer, Transport, http_problem
from targets.adapters.base import Pacer, as_number, value_at

NAMESPACE = uuid.UUID("6f2c3a1e-2d4b-4c8e-9a7f-0b1d2e3f4a5b")  # orderbus's, for transaction ids
WIDGET = re.compile(r"_widget_\d+")


class JiandaoyunForm(BaseModel):
    """Another form of the app, for one kind of after-sale document."""

    model_config = ConfigDict(extra="forbid")

    entry_id: str = Field(min_length=1, description="the form's id")
    mapping: dict[str, Any] = Field(
        description="widget id -> a path in the order, where after_sale.* is the after-sale "
        "(after_sale.id, after_sale.amount, after_sale.lines as a sub-form) and document its kind"
    )


class JiandaoyunOptions(BaseModel):
    """Jiandaoyun (简道云): a form record per order."""

    model_config = ConfigDict(extra="forbid")

    adapter: str = Field(default="jiandaoyun", description="this adapter: jiandaoyun")
    endpoint: str = Field(default="https://api.jiandaoyun.com", description="the API's base URL")
    api_key: str = Field(min_length=1, description="the API key (Bearer)")
    app_id: str = Field(min_length=1, description="the app's id")
    entry_id: str = Field(min_length=1, description="the form's id")
    mapping: dict[str, Any] | None = Field(
        default=None, description="widget -> order field (a sub-form for the lines)"
    )
    mapping_file: str | None = Field(default=None, description="the same, in a JSON file")
    data_creator: str | None = Field(
        default=None, description="the member recorded as the record's creator"
    )
    start_workflow: bool = Field(default=False, description="start the form's workflow on create")
    rate: float = Field(
        default=5.0, gt=0, le=20, description="requests a second at most (Jiandaoyun allows 20)"
    )
    documents: dict[Literal["intercept", "reversal", "refund", "return"], JiandaoyunForm] = Field(
        default_factory=dict,
        description="after-sales documents (targets' X-Orderbus-Document) and the form each "
        "becomes a record of; a document without a form is a dead letter for a person",
    )

    @model_validator(mode="after")
    def _one_mapping(self) -> JiandaoyunOptions:
        if (self.mapping is None) == (self.mapping_file is None):
            raise ValueError("give mapping or mapping_file (one of them)")
        return self

    def widgets(self) -> dict[str, Any]:
        if self.mapping is not None:
            return self.mapping
        loaded: dict[str, Any] = json.loads(Path(str(self.mapping_file)).read_text("utf-8"))
        return loaded


def _value(spec: Any, source: dict[str, Any], widget: str) -> Any:
    if isinstance(spec, str):
        return value_at(source, spec)
    if isinstance(spec, dict) and "subform" in spec:
        rows = value_at(source, spec["subform"]) or []
        return [
            {w: {"value": _value(s, row, w)} for w, s in spec["fields"].items()} for row in rows
        ]
    if isinstance(spec, dict) and "path" in spec:
        value = value_at(source, spec["path"])
        if spec.get("number") and value is not None:
            return as_number(value, f"{spec['path']} ({widget})")
        return value
    raise ValueError(f"widget {widget}: the mapping must be a path, {{path}} or {{subform}}")


def _fields(mapping: dict[str, Any]) -> dict[str, str]:
    """widget id -> the order field it holds, to say which field a refusal is about."""
    names: dict[str, str] = {}
    for widget, spec in mapping.items():
        if isinstance(spec, str):
            names[widget] = spec
        elif isinstance(spec, dict) and "subform" in spec:
            names[widget] = spec["subform"]
            for inner, field in spec["fields"].items():
                names[inner] = (
                    f"{spec['subform']}[].{field if isinstance(field, str) else field.get('path')}"
                )
        elif isinstance(spec, dict) and "path" in spec:
            names[widget] = spec["path"]
    return names


class JiandaoyunAdapter:
    name = "jiandaoyun"

    def __init__(self, options: JiandaoyunOptions) -> None:
        self.options = options
        self.mapping = options.widgets()
        self.names = _fields(self.mapping)
        self.pacer = Pacer(options.rate)
        self.url = options.endpoint.rstrip("/") + "/api/v5/app/entry/data/create"

    @property
    def documents(self) -> frozenset[str]:
        """The after-sales documents this adapter makes (a record of a form each)."""
        return frozenset(self.options.documents)

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        return self._create(self.options.entry_id, self.mapping, order, message_id, http)

    def deliver_document(
        self,
        order: dict[str, Any],
        document: str,
        after_sale: str,
        message_id: str,
        http: Transport,
    ) -> int:
        """An after-sale's document as a record of its own form: the order
        with ``after_sale`` (the after-sale it is about) and ``document``."""
        form = self.options.documents[document]  # type: ignore[index]
        sales = [s for s in order.get("after_sales") or [] if s.get("id") == after_sale]
        if not sales:
            raise ValueError(f"the order has no after-sale {after_sale}")
        view = {**order, "after_sale": sales[0], "document": document}
        return self._create(form.entry_id, form.mapping, view, message_id, http)

    def _create(
        self,
        entry_id: str,
        mapping: dict[str, Any],
        source: dict[str, Any],
        message_id: str,
        http: Transport,
    ) -> int:
        data = {w: {"value": _value(spec, source, w)} for w, spec in mapping.items()}
        body: dict[str, Any] = {
            "app_id": self.options.app_id,
            "entry_id": entry_id,
            "data": data,
            "transaction_id": str(uuid.uuid5(NAMESPACE, message_id)),
            "is_start_workflow": self.options.start_workflow,
        }
        if self.options.data_creator:
            body["data_creator"] = self.options.data_creator
        headers = {
            "Authorization": f"Bearer {self.options.api_key}",
            "Content-Type": "application/json",
        }
        self.pacer.wait()
        answer = http.post(self.url, json.dumps(body, ensure_ascii=False).encode(), headers)
        self.check(answer)
        return answer.status_code

    def check(self, answer: Answer) -> None:
        if 200 <= answer.status_code < 300:
            return
        try:
            error = json.loads(answer.text)
        except ValueError:
            error = {}
        said = f"{error.get('code', '')} {error.get('msg', answer.text[:500])}".strip()
        fields = [f"{self.names[w]} ({w})" for w in WIDGET.findall(said) if w in self.names]
        detail = f"{said}; field {', '.join(fields)}" if fields else said
        raise http_problem("Jiandaoyun", answer, detail)
