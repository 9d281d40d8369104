"""What a target adapter is: it puts a canonical order into one system with
the calls that system's API documents (a login or token, the create, a result
to wait for), and reads the system's answers.

The delivery consumer (targets/consumers.py) does the rest alike for every
target: the inbox, retries with backoff for what an adapter calls transient
(:class:`~canonical.errors.EndpointUnavailable`: down, rate-limited), a dead
letter for what it calls a business refusal
(:class:`~canonical.errors.DeliveryRejected`, its detail naming our field when
the system names its own).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal, Protocol

from canonical.errors import DeliveryRejected
from infra.transports import Transport


class TargetAdapter(Protocol):
    """A system's own API. An adapter that can make after-sales documents
    lists them in ``documents`` (intercept, reversal, refund, return: the
    ``X-Orderbus-Document`` header of the message) and makes them in
    ``deliver_document(order, document, after_sale_id, message_id, http)``;
    without, such a message becomes a ``document_not_supported`` dead
    letter for a person."""

    name: str

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        """Put ``order`` (its canonical JSON, with its number) into the system,
        with as many calls as its API needs (a login, a token, the create, a
        result); return the HTTP status of the answer that took it. Raise
        EndpointUnavailable to be tried again, DeliveryRejected for a person."""
        ...


def value_at(order: Mapping[str, Any], path: str) -> Any:
    """``order["a"]["b"]`` for ``"a.b"``; list indexes as numbers (``items.0.sku``)."""
    value: Any = order
    for step in path.split("."):
        if isinstance(value, list) and step.isdigit():
            index = int(step)
            value = value[index] if index < len(value) else None
        elif isinstance(value, Mapping):
            value = value.get(step)
        else:
            return None
    return value


def as_number(value: Any, where: str) -> int | float:
    """A money string as a JSON number, only when the number says exactly the
    same (money is exact; a system that wants numbers gets exact ones)."""
    amount = Decimal(str(value))
    number: int | float = int(amount) if amount == amount.to_integral_value() else float(amount)
    if Decimal(repr(number)) != amount:
        raise DeliveryRejected(
            f"{where}: {value} cannot be sent as an exact number", status_code=0, response_body=""
        )
    return number


class Pacer:
    """At most ``rate`` requests a second from this process (0: no limit)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            time.sleep(delay)


PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)(?:\|(number|text|date))?\s*\}\}")


def filtered(value: Any, kind: str, where: str) -> Any:
    """``number``: money as an exact JSON number; ``text``: the value as a
    JSON string (a count, for a system that wants every number as text);
    ``date``: the ``YYYY-MM-DD`` of an ISO time, as the order's offset says."""
    if kind == "number":
        return as_number(value, where)
    if kind == "text":
        return str(value)
    return str(value)[:10]


def render(template: Any, order: Mapping[str, Any]) -> Any:
    """A JSON template with the order's values put in.

    ``"{{path}}"`` as the whole string is the value as it is (a list, an
    object, a money string); inside a longer string it is written out
    (``"SO-{{external_id}}"``); ``"{{total|number}}"`` is money as an exact
    JSON number, ``"{{quantity|text}}"`` a count as a JSON string and
    ``"{{placed_at|date}}"`` the order's date. ``{"$each": "items", "$item": {...}}`` is a list, one
    rendered ``$item`` per element, where paths name the element's fields
    and ``order.`` reaches the order's."""
    if isinstance(template, dict):
        if "$each" in template:
            rows = value_at(order, str(template["$each"])) or []
            if not isinstance(rows, list):
                raise ValueError(f"{template['$each']} is not a list")
            return [render(template.get("$item", {}), {**row, "order": order}) for row in rows]
        return {k: render(v, order) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, order) for v in template]
    if not isinstance(template, str):
        return template
    whole = PLACEHOLDER.fullmatch(template.strip())
    if whole:
        value = value_at(order, whole.group(1))
        if whole.group(2) and value is not None:
            return filtered(value, whole.group(2), whole.group(1))
        return value
    return PLACEHOLDER.sub(lambda m: str(value_at(order, m.group(1)) or ""), template)


def template_fields(template: Any, prefix: str = "", each: str = "") -> dict[str, str]:
    """The system's field name -> the order field it is filled from, for
    saying which of our fields a refusal is about. A field nested in another
    (``{"FCustId": {"FNumber": "{{customer.code}}"}}``) is known by both names."""
    names: dict[str, str] = {}
    if isinstance(template, dict):
        if "$each" in template:
            return template_fields(template.get("$item", {}), prefix, f"{template['$each']}[].")
        for key, value in template.items():
            for name, field in template_fields(value, key, each).items():
                names.setdefault(name, field)
                names.setdefault(key, field)
    elif isinstance(template, str):
        found = PLACEHOLDER.search(template)
        if found and prefix:
            path = found.group(1)
            names[prefix] = path[len("order.") :] if path.startswith("order.") else each + path
    return names


def fields_named(names: Mapping[str, str], message: str, system: str) -> str:
    """``"; field items[].sku (U8 inventorycode)"`` for each of the system's
    field names that ``message`` mentions as a word, or ``""``."""
    found = [
        f"{ours} ({system} {name})"
        for name, ours in names.items()
        if re.search(rf"(?<![A-Za-z_]){re.escape(name)}(?![A-Za-z_])", message)
    ]
    return f"; field {', '.join(found)}" if found else ""


# -- after-sales documents ------------------------------------------------------

DocumentKind = Literal["intercept", "reversal", "refund", "return"]
DOCUMENT_CODES = {"intercept": "IC", "reversal": "RV", "refund": "RF", "return": "RT"}


def document_number(order_number: str, document: str, after_sale_id: str) -> str:
    """The document's own bill number, the same on every delivery of it (the
    ERP's unique bill number is what makes a second save a duplicate):
    ``<order number>-<RV|RF|RT|IC>-<8 hex of the after-sale id>``."""
    digest = hashlib.sha256(after_sale_id.encode("utf-8")).hexdigest()[:8]
    return f"{order_number}-{DOCUMENT_CODES.get(document, 'DOC')}-{digest}"


def document_view(order: Mapping[str, Any], document: str, after_sale_id: str) -> dict[str, Any]:
    """What a document's template is filled from: the order, with
    ``document`` (its kind), ``document_number``, and ``after_sale`` (the
    after-sale it is about), whose lines carry the order line's ``name`` and
    ``unit_price`` and, for red-letter (红字) vouchers, ``minus_quantity``
    and ``minus_amount``; a whole-order after-sale's lines are the order's."""
    sales = [s for s in order.get("after_sales") or [] if s.get("id") == after_sale_id]
    if not sales:
        raise DeliveryRejected(
            f"the order has no after-sale {after_sale_id}", status_code=0, response_body=""
        )
    sale = dict(sales[0])
    items = {item["sku"]: item for item in order.get("items") or []}
    lines = sale.get("lines") or [
        {"sku": i["sku"], "quantity": i["quantity"], "amount": _paid(i)} for i in items.values()
    ]
    sale["lines"] = [
        {
            **line,
            "name": items.get(line["sku"], {}).get("name"),
            "unit_price": items.get(line["sku"], {}).get("unit_price"),
            "minus_quantity": -int(line["quantity"]),
            "minus_amount": str(-Decimal(str(line["amount"]))),
        }
        for line in lines
    ]
    sale["minus_amount"] = str(-Decimal(str(sale.get("amount") or "0")))
    number = str(order.get("order_number") or order.get("external_id") or "")
    return {
        **order,
        "document": document,
        "document_number": document_number(number, document, after_sale_id),
        "after_sale": sale,
    }


def _paid(item: Mapping[str, Any]) -> str:
    price, quantity = Decimal(str(item["unit_price"])), int(item["quantity"])
    return str(price * quantity - Decimal(str(item.get("discount") or "0")))
