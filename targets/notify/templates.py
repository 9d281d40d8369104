"""The messages, as jinja2 templates per event and language.

Built-in templates cover every event in Chinese and English. A file
``<event>.<language>.txt`` in ``templates_dir`` replaces one: its first line
is ``Subject: ...``, then an empty line, then the body. Templates see
``order`` (the canonical order as JSON), ``shop`` (the shop's name),
``event`` and ``number`` (the orderbus order number). A template naming
something the order lacks is an error, not an empty gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined, TemplateError

LANGUAGES = ("zh", "en")

_SHIP_ZH = "{{ order.shipment.carrier }} 运单号 {{ order.shipment.tracking_number }}"
_SHIP_EN = "{{ order.shipment.carrier }}, tracking number {{ order.shipment.tracking_number }}"

BUILT_IN: dict[tuple[str, str], tuple[str, str]] = {
    ("created", "zh"): (
        "{{ shop }}：订单 {{ order.external_id }} 已收到",
        "您好{{ ' ' + order.customer.name if order.customer.name else '' }}，"
        "我们已收到您的订单 {{ order.external_id }}，金额 {{ order.total }} {{ order.currency }}。",
    ),
    ("created", "en"): (
        "{{ shop }}: order {{ order.external_id }} received",
        "Hello{{ ' ' + order.customer.name if order.customer.name else '' }}, we have received "
        "your order {{ order.external_id }} for {{ order.total }} {{ order.currency }}.",
    ),
    ("paid", "zh"): (
        "{{ shop }}：订单 {{ order.external_id }} 付款成功",
        "您好{{ ' ' + order.customer.name if order.customer.name else '' }}，"
        "订单 {{ order.external_id }} 已付款 {{ order.total }} {{ order.currency }}，"
        "我们会尽快为您发货。",
    ),
    ("paid", "en"): (
        "{{ shop }}: payment received for order {{ order.external_id }}",
        "Hello{{ ' ' + order.customer.name if order.customer.name else '' }}, we have received "
        "{{ order.total }} {{ order.currency }} for order {{ order.external_id }} and will ship "
        "it soon.",
    ),
    ("shipped", "zh"): (
        "{{ shop }}：订单 {{ order.external_id }} 已发货",
        "您好{{ ' ' + order.customer.name if order.customer.name else '' }}，"
        "订单 {{ order.external_id }} 已发货：" + _SHIP_ZH + "。",
    ),
    ("shipped", "en"): (
        "{{ shop }}: order {{ order.external_id }} has shipped",
        "Hello{{ ' ' + order.customer.name if order.customer.name else '' }}, order "
        "{{ order.external_id }} is on its way: " + _SHIP_EN + ".",
    ),
    ("delivered", "zh"): (
        "{{ shop }}：订单 {{ order.external_id }} 已送达",
        "订单 {{ order.external_id }} 已送达，感谢您的惠顾。",
    ),
    ("delivered", "en"): (
        "{{ shop }}: order {{ order.external_id }} delivered",
        "Order {{ order.external_id }} has been delivered. Thank you for shopping with us.",
    ),
    ("cancelled", "zh"): (
        "{{ shop }}：订单 {{ order.external_id }} 已取消",
        "订单 {{ order.external_id }} 已取消。如有疑问，请联系客服。",
    ),
    ("cancelled", "en"): (
        "{{ shop }}: order {{ order.external_id }} cancelled",
        "Order {{ order.external_id }} has been cancelled. Please contact us with any question.",
    ),
    ("refunded", "zh"): (
        "{{ shop }}：订单 {{ order.external_id }} 已退款",
        "订单 {{ order.external_id }} 的款项 {{ order.total }} {{ order.currency }} 已退回。",
    ),
    ("refunded", "en"): (
        "{{ shop }}: order {{ order.external_id }} refunded",
        "{{ order.total }} {{ order.currency }} for order {{ order.external_id }} has been "
        "refunded.",
    ),
    ("delay", "zh"): (
        "{{ shop }}：订单 {{ order.external_id }} 发货延迟",
        "您好{{ ' ' + order.customer.name if order.customer.name else '' }}，"
        "很抱歉，订单 {{ order.external_id }} 的发货比预期晚，我们正在加紧处理，发货后会再通知您。",
    ),
    ("delay", "en"): (
        "{{ shop }}: order {{ order.external_id }} is delayed",
        "Hello{{ ' ' + order.customer.name if order.customer.name else '' }}, we are sorry: "
        "order {{ order.external_id }} is taking longer than expected to ship. We will write "
        "again when it leaves.",
    ),
    ("parcel_problem", "zh"): (
        "{{ shop }}：订单 {{ order.external_id }} 的包裹需要关注",
        "您好{{ ' ' + order.customer.name if order.customer.name else '' }}，"
        "订单 {{ order.external_id }} 的包裹（{{ order.shipment.carrier }}，运单号 "
        "{{ order.shipment.tracking_number }}）在运输中遇到了问题，"
        "我们已在跟进，有进展会再通知您。",
    ),
    ("parcel_problem", "en"): (
        "{{ shop }}: a problem with the parcel of order {{ order.external_id }}",
        "Hello{{ ' ' + order.customer.name if order.customer.name else '' }}, the parcel of "
        "order {{ order.external_id }} ({{ order.shipment.carrier }}, tracking number "
        "{{ order.shipment.tracking_number }}) has run into a problem on its way. We are on it "
        "and will write again when we know more.",
    ),
}


@dataclass(frozen=True)
class Message:
    subject: str
    body: str


class Templates:
    def __init__(self, directory: str | None = None) -> None:
        self.env = Environment(undefined=StrictUndefined, autoescape=False)  # noqa: S701 - plain text
        self.sources = dict(BUILT_IN)
        if directory:
            for path in sorted(Path(directory).glob("*.*.txt")):
                event, language, _ = path.name.split(".", 2)
                text = path.read_text("utf-8")
                first, _, rest = text.partition("\n")
                if not first.startswith("Subject:"):
                    raise ValueError(f"{path}: the first line must be 'Subject: ...'")
                self.sources[(event, language)] = (
                    first.removeprefix("Subject:").strip(),
                    rest.lstrip("\n"),
                )
        # Compiled once: a template that does not parse stops the start.
        self.compiled = {
            key: (self.env.from_string(subject), self.env.from_string(body))
            for key, (subject, body) in self.sources.items()
        }

    def render(self, event: str, language: str, context: dict[str, Any]) -> Message:
        key = (event, language) if (event, language) in self.compiled else (event, "en")
        if key not in self.compiled:
            raise KeyError(f"no template for {event!r}")
        subject, body = self.compiled[key]
        try:
            return Message(subject.render(context).strip(), body.render(context).strip())
        except TemplateError as exc:
            raise ValueError(f"template {key[0]}.{key[1]}: {exc}") from exc
