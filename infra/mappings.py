"""Reading the mapping tables (canonical/mapping.py says what they mean).

``load`` reads them whole into a :class:`~canonical.mapping.MappingSet`;
:class:`MappingCache` keeps the last one and reads them again only when the
version in ``mapping_state`` moved (every change raises it in its own
transaction), at most once per ``interval`` seconds, so a consumer pays one
small query per batch, not a table scan.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from canonical.mapping import Component, MappingSet, WarehouseRule
from infra.database import dialect_insert, translate_db_errors
from infra.tables import (
    carrier_codes,
    mapping_state,
    shop_accounts,
    sku_codes,
    sku_mappings,
    warehouse_rules,
)

STATE = "mappings"


def current_version(conn: Connection) -> int:
    found = conn.scalar(select(mapping_state.c.version).where(mapping_state.c.name == STATE))
    return int(found or 0)


def bump_version(conn: Connection) -> int:
    """Raise the version (in the caller's transaction, with its change)."""
    changed = conn.execute(
        update(mapping_state)
        .where(mapping_state.c.name == STATE)
        .values(version=mapping_state.c.version + 1)
    ).rowcount
    if not changed:  # the first change: two at once both insert, one wins, one waits
        conn.execute(
            dialect_insert(conn, mapping_state)  # type: ignore[attr-defined]
            .values(name=STATE, version=1)
            .on_conflict_do_update(
                index_elements=["name"], set_={"version": mapping_state.c.version + 1}
            )
        )
    return current_version(conn)


def components_of(raw: Iterable[Any]) -> tuple[Component, ...]:
    return tuple(
        Component(str(c["sku"]), int(c.get("quantity", 1)), int(c.get("share", 1))) for c in raw
    )


def load(conn: Connection, required: Iterable[str] = ()) -> MappingSet:
    products = {
        (r.channel, r.shop, r.platform_sku): components_of(r.components)
        for r in conn.execute(select(sku_mappings))
    }
    codes = {(r.internal_sku, r.target): r.code for r in conn.execute(select(sku_codes))}
    shops = {
        (r.channel, r.shop): {
            "customer": r.customer or "",
            "department": r.department or "",
            "settlement_account": r.settlement_account or "",
            "warehouse": r.warehouse or "",
        }
        for r in conn.execute(select(shop_accounts))
    }
    rules = tuple(
        WarehouseRule(r.warehouse, r.channel, r.province, r.sku, r.priority)
        for r in conn.execute(select(warehouse_rules).order_by(warehouse_rules.c.priority))
    )
    carriers = {(r.carrier, r.system): r.code for r in conn.execute(select(carrier_codes))}
    return MappingSet(
        current_version(conn), products, codes, frozenset(required), shops, rules, carriers
    )


class MappingCache:
    def __init__(
        self,
        engine: Engine,
        required: Iterable[str] = (),
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.required = frozenset(required)
        self.interval = interval
        self.clock = clock
        self._held = MappingSet(-1, required=self.required)
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def current(self, *, fresh: bool = False, conn: Connection | None = None) -> MappingSet:
        """The tables, read again if their version moved (checked at most
        once per ``interval``, or now when ``fresh``: a SKU found unmapped
        may have been mapped a moment ago). ``conn``: read on the caller's
        connection, in its transaction (the router's, on SQLite's one writer)."""
        with self._lock:
            now = self.clock()
            if not fresh and now - self._checked < self.interval:
                return self._held
            if conn is not None:
                self._refresh(conn)
            else:
                with translate_db_errors(), self.engine.connect() as own:
                    self._refresh(own)
            self._checked = now
            return self._held

    def _refresh(self, conn: Connection) -> None:
        if current_version(conn) != self._held.version:
            self._held = load(conn, self.required)
