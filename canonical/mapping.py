"""Codes that never match, mapped: what a channel's SKU is in our catalogue,
and what each of our SKUs is called in each system.

- A **product mapping** turns a platform SKU (of a channel and shop, or of
  any) into components: one internal SKU (a plain mapping), one internal SKU
  times N (a multiplier: a "pack of 6" is 6 units), or several (a bundle,
  组合商品). A bundle's line price is split over its components by their
  ``share`` times their quantity, to the fen, the remainder going to the
  largest fractions (so the parts add up to the line exactly).
- A **code** is an internal SKU's name in one target system (the ERP's
  material code, the warehouse's item code).

This module is pure: the tables are read elsewhere (infra/mappings.py) and
handed in as a :class:`MappingSet`. Mapping happens on the way to each target
(targets/consumers.py), so a dead letter retried after a mapping was added
goes out mapped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from canonical.errors import SkuNotMapped
from canonical.money import KNOWN_CURRENCIES
from canonical.order import CanonicalOrder

ANY = ""  # a mapping for every channel, or every shop of its channel


@dataclass(frozen=True)
class Component:
    sku: str
    quantity: int = 1
    share: int = 1  # the weight of one unit in the price split


@dataclass(frozen=True)
class WarehouseRule:
    """Orders of a channel, to a province, or holding a SKU (empty: any)
    ship from ``warehouse``; the first rule that matches, by priority."""

    warehouse: str
    channel: str = ANY
    province: str = ANY
    sku: str = ANY
    priority: int = 100

    def matches(self, order: CanonicalOrder) -> bool:
        province = order.shipping_address.province or ""
        return (
            (not self.channel or self.channel == order.channel)
            and (not self.province or province.startswith(self.province))
            and (not self.sku or any(i.sku == self.sku for i in order.items))
        )


@dataclass(frozen=True)
class MappingSet:
    """The mapping tables at one version."""

    version: int = 0
    products: Mapping[tuple[str, str, str], tuple[Component, ...]] = field(default_factory=dict)
    codes: Mapping[tuple[str, str], str] = field(default_factory=dict)
    required: frozenset[str] = frozenset()  # channels where every SKU needs a mapping; "*": all
    # (channel, shop or "") -> customer, department, settlement_account, warehouse
    shops: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)
    warehouse_rules: tuple[WarehouseRule, ...] = ()
    # (our carrier code or name, a system: a channel for write-back, or a target) -> its code
    carriers: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def carrier_code(self, order: CanonicalOrder, system: str) -> str | None:
        shipment = order.shipment
        if shipment is None:
            return None
        for ours in (shipment.carrier_code, shipment.carrier):
            if ours and (ours, system) in self.carriers:
                return self.carriers[(ours, system)]
        return None

    def accounts(self, order: CanonicalOrder) -> dict[str, str] | None:
        """The shop's accounts, the warehouse from the first matching rule
        (else the shop's); None when no table says anything."""
        found = dict(
            self.shops.get((order.channel, order.shop))
            or self.shops.get((order.channel, ANY))
            or {}
        )
        for rule in sorted(self.warehouse_rules, key=lambda r: r.priority):
            if rule.matches(order):
                found["warehouse"] = rule.warehouse
                break
        return {k: v for k, v in found.items() if v} or None

    def components(self, channel: str, shop: str, sku: str) -> tuple[Component, ...] | None:
        """The most specific mapping of ``sku``: this shop's, the channel's, anyone's."""
        for key in ((channel, shop, sku), (channel, ANY, sku), (ANY, ANY, sku)):
            found = self.products.get(key)
            if found is not None:
                return found
        return None

    def requires(self, channel: str) -> bool:
        return "*" in self.required or channel in self.required

    def unmapped(self, order: CanonicalOrder) -> list[str]:
        """The order's platform SKUs with no mapping (all of them count only
        where the channel requires mappings)."""
        if not self.requires(order.channel):
            return []
        return [
            item.sku
            for item in order.items
            if self.components(order.channel, order.shop, item.sku) is None
        ]


def split_exactly(amount: Decimal, weights: Sequence[int], places: int) -> list[Decimal]:
    """``amount`` in parts proportional to ``weights``, each to ``places``
    decimals, adding up to ``amount`` exactly (largest remainders get the
    leftover minor units)."""
    unit = Decimal(1).scaleb(-places)
    total_weight = sum(weights)
    if total_weight <= 0:
        raise ValueError("the weights must add up to more than 0")
    exact = [amount * w / total_weight for w in weights]
    parts = [e.quantize(unit, rounding=ROUND_FLOOR) for e in exact]
    leftover = int(((amount - sum(parts)) / unit).to_integral_value())
    by_remainder = sorted(range(len(weights)), key=lambda i: (parts[i] - exact[i], i))
    for i in by_remainder[:leftover]:
        parts[i] += unit
    return parts


def map_carrier(order: CanonicalOrder, mappings: MappingSet, system: str) -> CanonicalOrder:
    """``order`` with its shipment's carrier code as ``system`` (a channel's
    write-back, or a target) knows it, where the carrier table says."""
    code = mappings.carrier_code(order, system)
    if code is None or order.shipment is None:
        return order
    return order.model_copy(
        update={"shipment": order.shipment.model_copy(update={"carrier_code": code})}
    )


def map_order(order: CanonicalOrder, mappings: MappingSet, target: str) -> CanonicalOrder:
    """``order`` as ``target`` must receive it: each line's platform SKU
    replaced by its components (quantities multiplied, the price split to the
    fen), each SKU then named by the target's own code where it has one.
    SkuNotMapped when the channel requires mappings and a SKU has none."""
    missing = mappings.unmapped(order)
    if missing:
        raise SkuNotMapped(
            f"channel {order.channel} shop {order.shop}: no mapping for platform SKU "
            + ", ".join(sorted(set(missing)))
        )
    places = KNOWN_CURRENCIES.get(order.currency, 2)
    items = []
    for item in order.items:
        parts = mappings.components(order.channel, order.shop, item.sku) or (Component(item.sku),)
        net = item.unit_price * item.quantity - item.discount
        shares = split_exactly(net, [c.share * c.quantity for c in parts], places)
        for component, part in zip(parts, shares, strict=True):
            units = item.quantity * component.quantity
            unit_price = (part / units).quantize(Decimal(1).scaleb(-places), rounding=ROUND_CEILING)
            items.append(
                {
                    "sku": mappings.codes.get((component.sku, target), component.sku),
                    "name": item.name if len(parts) == 1 else None,
                    "quantity": units,
                    "unit_price": unit_price,
                    "discount": unit_price * units - part,
                    "platform_sku": item.sku,
                }
            )
    data = order.model_dump()
    data["items"] = items
    data["mapping_version"] = mappings.version
    data["accounts"] = mappings.accounts(order)
    return map_carrier(CanonicalOrder.model_validate(data), mappings, target)
