"""A configurable field mapping from another system's JSON order to the canonical one.

For a system orderbus has no module for (a legacy ERP publishing on AMQP, a
REST API to poll), a mapping says where each canonical field is, as a path
(a JSONPath subset: ``$.a.b``, ``$.lines[0]``, ``$['a key']``; ``[*]`` only in
``items``) or as an object:

.. code-block:: json

    {
      "external_id": "$.orderNo",
      "status": {"path": "$.state", "values": {"10": "created", "20": "paid"}},
      "currency": {"value": "CNY"},
      "customer.phone": "$.buyer.mobile",
      "shipping_address.city": "$.receiver.city",
      "items": {"path": "$.lines[*]",
                "fields": {"sku": "$.code", "quantity": "$.qty",
                           "unit_price": {"path": "$.priceFen", "minor_units": true}}},
      "total": {"path": "$.payAmountFen", "minor_units": true},
      "placed_at": {"path": "$.createTime", "timezone": "Asia/Shanghai"}
    }

An object may have ``path`` or ``value`` (a constant), ``default`` (when the
path finds nothing), ``values`` (a table from the system's codes to ours; a
code not in it is an error naming it), ``minor_units`` (an integer amount in
fen/cents) and ``timezone`` (for times without an offset; Unix seconds and
milliseconds are UTC). Dotted names nest (``customer.phone``). A required field
whose path finds nothing is an error that names the field and the path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.base import unreadable
from connectors.payload import SHANGHAI, amount, minor_units, timestamp

MONEY = frozenset({"unit_price", "discount", "shipping_fee", "order_discount", "tax", "total"})
TIMES = frozenset({"placed_at", "updated_at"})
ITEM_FIELDS = frozenset({"sku", "name", "quantity", "unit_price", "discount"})
TOP_FIELDS = frozenset(
    {
        "shop",
        "external_id",
        "status",
        "version",
        "currency",
        "items",
        "shipping_fee",
        "order_discount",
        "tax",
        "total",
        "placed_at",
        "updated_at",
        "note",
        "customer.name",
        "customer.phone",
        "customer.email",
        "shipping_address.country",
        "shipping_address.province",
        "shipping_address.city",
        "shipping_address.district",
        "shipping_address.street",
        "shipping_address.postal_code",
    }
)
_TOKEN = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]|\[\*\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")
MISSING = object()


class MappingError(ValueError):
    """The mapping itself is wrong (found when it is loaded, not per message)."""


def path_steps(path: str) -> list[str | int | None]:
    """``$.a[0]['b c'][*]`` -> ["a", 0, "b c", None] (None: every element)."""
    if not path.startswith("$"):
        raise MappingError(f"path {path!r} must start with $")
    steps: list[str | int | None] = []
    position = 1
    while position < len(path):
        match = _TOKEN.match(path, position)
        if match is None:
            raise MappingError(f"path {path!r}: cannot read from {path[position:]!r}")
        name, index, quoted, double = match.groups()
        if name is not None:
            steps.append(name)
        elif index is not None:
            steps.append(int(index))
        elif quoted is not None or double is not None:
            steps.append(quoted if quoted is not None else double)
        else:
            steps.append(None)
        position = match.end()
    return steps


def value_at(data: Any, steps: list[str | int | None]) -> Any:
    value = data
    for step in steps:
        if isinstance(step, str) and isinstance(value, Mapping) and step in value:
            value = value[step]
        elif isinstance(step, int) and isinstance(value, list) and -len(value) <= step < len(value):
            value = value[step]
        else:
            return MISSING
    return value


class FieldMapping:
    """A mapping, checked when loaded; :meth:`apply` reads one message."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        unknown = set(spec) - TOP_FIELDS
        if unknown:
            raise MappingError(f"unknown fields {sorted(unknown)}; known: {sorted(TOP_FIELDS)}")
        for required in ("external_id", "items", "total", "placed_at"):
            if required not in spec:
                raise MappingError(f"the mapping must say where {required} is")
        items = spec["items"]
        if not isinstance(items, Mapping) or "path" not in items or "fields" not in items:
            raise MappingError('items must be {"path": "$.lines[*]", "fields": {...}}')
        steps = path_steps(items["path"])
        if steps.count(None) != 1 or steps[-1] is not None:
            raise MappingError("the items path must end with [*] and have no other [*]")
        if set(items["fields"]) - ITEM_FIELDS or not {"sku", "quantity", "unit_price"} <= set(
            items["fields"]
        ):
            raise MappingError(
                f"item fields must include sku, quantity and unit_price, from {sorted(ITEM_FIELDS)}"
            )
        self.spec = dict(spec)
        self._items_steps = steps[:-1]
        self._fields = {k: self._rule(k, v) for k, v in spec.items() if k != "items"}
        self._item_fields = {k: self._rule(k, v) for k, v in items["fields"].items()}

    @staticmethod
    def _rule(name: str, rule: Any) -> dict[str, Any]:
        if isinstance(rule, str):
            rule = {"path": rule}
        if not isinstance(rule, Mapping) or ("path" in rule) == ("value" in rule):
            raise MappingError(f"{name}: give a path, or an object with path or value")
        known = {"path", "value", "default", "values", "minor_units", "timezone"}
        if set(rule) - known:
            raise MappingError(f"{name}: unknown keys {sorted(set(rule) - known)}")
        parsed = dict(rule)
        if "path" in parsed:
            parsed["steps"] = path_steps(parsed["path"])
            if None in parsed["steps"]:
                raise MappingError(f"{name}: [*] is only for items")
        if parsed.get("timezone") not in (None, "Asia/Shanghai", "UTC", "+08:00"):
            raise MappingError(f"{name}: time zone must be Asia/Shanghai or UTC")
        return parsed

    def _value(self, name: str, rule: dict[str, Any], data: Any, required: bool) -> Any:
        if "value" in rule:
            raw = rule["value"]
        else:
            raw = value_at(data, rule["steps"])
            if raw is MISSING or raw is None or raw == "":
                if "default" in rule:
                    raw = rule["default"]
                elif required:
                    raise unreadable(f"{name}: nothing at {rule['path']}")
                else:
                    return None
        if "values" in rule:
            table = rule["values"]
            if str(raw) not in table:
                raise unreadable(f"{name}: {raw!r} is not in the mapping's values {sorted(table)}")
            raw = table[str(raw)]
        base = name.rsplit(".", 1)[-1]
        if base in MONEY:
            if rule.get("minor_units"):
                return minor_units(raw, name)
            return amount(raw, name)
        if base in TIMES:
            return _time(raw, name, rule.get("timezone"))
        if base in ("quantity", "version"):
            if isinstance(raw, bool) or not re.fullmatch(r"-?\d+", str(raw).strip()):
                raise unreadable(f"{name}: {raw!r} is not a whole number")
            return int(str(raw).strip())
        return raw if isinstance(raw, str) else str(raw)

    def apply(self, data: Any, channel: str) -> dict[str, Any]:
        """The canonical order's fields from one message (ConnectorError(422) if a
        required value is missing or unreadable)."""
        result: dict[str, Any] = {"channel": channel}
        for name, rule in self._fields.items():
            value = self._value(name, rule, data, name in ("external_id", "total", "placed_at"))
            if value is None:
                continue
            target = result
            *parents, leaf = name.split(".")
            for parent in parents:
                target = target.setdefault(parent, {})
            target[leaf] = value
        lines = value_at(data, self._items_steps)
        if not isinstance(lines, list) or not lines:
            raise unreadable(f"items: no list at {self.spec['items']['path']}")
        result["items"] = []
        for index, line in enumerate(lines):
            item: dict[str, Any] = {}
            for name, rule in self._item_fields.items():
                value = self._value(
                    f"items[{index}].{name}", rule, line, name in ("sku", "quantity", "unit_price")
                )
                if value is not None:
                    item[name] = value
            result["items"].append(item)
        result.setdefault("status", "paid")
        return result


def _time(raw: Any, name: str, zone: str | None) -> datetime:
    tz = UTC if zone == "UTC" else SHANGHAI
    text = str(raw).strip()
    if re.fullmatch(r"\d{13}", text):  # milliseconds since the epoch
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    return timestamp(raw, name, tz)
