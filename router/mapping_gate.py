"""Unmapped means held: an order whose platform SKUs have no mapping, in a
channel that requires one (``ORDERBUS_SKU_MAPPING.required``), waits before
the systems that take our codes (``ORDERBUS_SKU_MAPPING.targets``) hear of it.

The router asks the gate when a change would be the first of the order that
goes to one of those systems (a new paid order, or an unpaid one becoming
paid). The hold's cause is ``sku_not_mapped`` and its reason names the
platform SKUs; once they are mapped, ``POST /mappings/retry-passing`` (or the
console's mapping page) releases every such hold the dry run says now passes,
and the order goes out once, mapped. A later revision of an order the systems
already have is not held: if it brings a new unmapped SKU, the system's
delivery stops as a ``sku_not_mapped`` dead letter, which the same dry run and
retry cover.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection

from canonical.mapping import MappingSet
from canonical.order import CanonicalOrder, OrderStatus
from infra.mappings import MappingCache
from router.fanout import Fanout, targets_for

CAUSE = "sku_not_mapped"


@dataclass(frozen=True)
class MappingGate:
    cache: MappingCache | None = None  # None: no channel requires mappings
    targets: frozenset[str] = frozenset({"warehouse", "finance"})
    fanout: Fanout = field(default_factory=Fanout)

    @classmethod
    def configured(
        cls, cache: MappingCache, required: Iterable[str], targets: Iterable[str], fanout: Fanout
    ) -> MappingGate:
        return cls(cache if frozenset(required) else None, frozenset(targets), fanout)

    def tables(self, conn: Connection) -> MappingSet | None:
        """The tables for one routing batch, read in its transaction (None:
        nothing is ever held)."""
        return self.cache.current(conn=conn) if self.cache is not None else None

    def unmapped(
        self,
        conn: Connection,
        tables: MappingSet | None,
        order: CanonicalOrder,
        targets: list[str],
        previous: OrderStatus | None,
    ) -> list[str]:
        """The platform SKUs that hold this change of ``order``, sorted (none:
        it goes on). Only a change that is the first to reach a system taking
        our codes is held; a SKU found unmapped is looked up once more in the
        tables as they are now (it may have been mapped a moment ago)."""
        if tables is None or self.cache is None or not tables.requires(order.channel):
            return []
        if not self.targets.intersection(targets) or self._reached(previous):
            return []
        missing = tables.unmapped(order)
        if missing:
            missing = self.cache.current(fresh=True, conn=conn).unmapped(order)
        return sorted(set(missing))

    def _reached(self, previous: OrderStatus | None) -> bool:
        """Whether an earlier revision (in ``previous``) went to one of the targets."""
        if previous is None:
            return False
        return bool(self.targets.intersection(targets_for(previous, None, self.fanout.routes)))


def reason(skus: list[str]) -> str:
    """The hold's reason, as the console reads it (console/hold_reasons.py)."""
    return "SKU not mapped: " + ", ".join(skus)
