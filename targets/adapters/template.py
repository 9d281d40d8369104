"""A generic HTTP/JSON target: the body is a JSON template filled with the
order's values (:func:`~targets.adapters.base.render`), for any system without
a module of its own.

``{"adapter": "template", "url": "https://erp.example.com/api/orders",
"headers": {"Authorization": "Bearer ..."}, "template": {"orderNo":
"{{order_number}}", "buyer": {"mobile": "{{customer.phone}}"}, "amount":
"{{total|number}}", "lines": {"$each": "items", "$item": {"sku": "{{sku}}",
"qty": "{{quantity}}"}}}, "rate": 10}``

The request carries ``Idempotency-Key: <message id>``. 429 and 5xx are tried
again; another 4xx is a dead letter with the system's answer.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from infra.transports import Transport, http_problem
from targets.adapters.base import Pacer, render


class TemplateOptions(BaseModel):
    """Any system that takes JSON: the order rendered through a template and POSTed."""

    model_config = ConfigDict(extra="forbid")

    adapter: str = Field(default="template", description="this adapter: template")
    url: str = Field(description="where it is POSTed (with Idempotency-Key)")
    headers: dict[str, str] = Field(default_factory=dict, description="request headers")
    template: Any = Field(description="the JSON template ({{path}}, {{x|number}}, $each)")
    rate: float = Field(default=0, ge=0, description="requests a second at most (0: no limit)")


class TemplateAdapter:
    name = "template"

    def __init__(self, options: TemplateOptions) -> None:
        self.options = options
        self.pacer = Pacer(options.rate)

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        body = json.dumps(render(self.options.template, order), ensure_ascii=False)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message_id,
            **self.options.headers,
        }
        self.pacer.wait()
        answer = http.post(self.options.url, body.encode("utf-8"), headers)
        if answer.status_code >= 300:
            raise http_problem(self.options.url, answer, answer.text[:1000])
        return answer.status_code
