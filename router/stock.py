"""Stock levels from the warehouse, turned into what each channel listing
should show (``POST /stock`` on the ingest, signed like a shipment report, or
the same JSON on ``{ns}.stock`` with routing key ``stock.report``).

In one transaction the intake:

1. keeps each SKU's level only if it is newer than the one it has
   (``stock_levels``: a level counted earlier but sent late changes nothing);
2. finds each channel listing (``ORDERBUS_STOCK.channels``) that sells a
   SKU whose level changed: a listing mapped to it (a pack, a bundle:
   the mapping tables), or the SKU itself where no mapping names it;
3. works out what the listing can sell (its scarcest component) and the
   channel's share (``ratio``, less ``safety``), and records it in
   ``stock_pushes`` with the newest level's time.

The pusher (targets/stock_push.py) sends what changed, coalescing a burst:
only the latest quantity of each listing is sent, once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, select

from canonical.errors import MalformedMessage, PermanentError
from canonical.mapping import Component, MappingSet
from canonical.stock import StockLevel, StockReport, allocated, listing_units
from infra.database import dialect_insert, translate_db_errors
from infra.mappings import load
from infra.messages import Delivery
from infra.setting_specs import StockSettings
from infra.tables import stock_levels, stock_pushes

log = logging.getLogger(__name__)


def read_stock(body: bytes) -> StockReport:
    try:
        return StockReport.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise MalformedMessage(f"not a stock report: {problems}") from exc


def listings_of(
    tables: MappingSet, channel: str, skus: Iterable[str]
) -> dict[str, tuple[Component, ...]]:
    """The channel's listings that sell one of ``skus``: platform SKU -> its components."""
    wanted = set(skus)
    found: dict[str, tuple[Component, ...]] = {}
    named: set[str] = set()  # our SKUs some listing of the channel is mapped to
    for (ch, _shop, platform_sku), parts in tables.products.items():
        if ch not in ("", channel):
            continue
        named.update(part.sku for part in parts)
        if any(part.sku in wanted for part in parts):
            found.setdefault(platform_sku, parts)
    for sku in wanted - named:  # sold under our own code where no mapping names it
        found.setdefault(sku, (Component(sku),))
    return found


class StockIntake:
    def __init__(self, engine: Engine, settings: StockSettings) -> None:
        self.engine = engine
        self.settings = settings

    def accept_body(self, body: bytes) -> int:
        return self.accept(read_stock(body))

    def handle_batch(self, deliveries: list[Delivery]) -> list[BaseException | None]:
        """Bus handler for ``{ns}.stock`` (routing key ``stock.report``): a
        report that is not one is a dead letter with its reason; a database
        outage is raised, so the bus retries."""
        results: list[BaseException | None] = []
        for delivery in deliveries:
            try:
                self.accept_body(delivery.body)
                results.append(None)
            except PermanentError as exc:
                results.append(exc)
        return results

    def accept(self, report: StockReport) -> int:
        """Keep the newer levels and the listings' quantities; how many
        listings' quantities changed."""
        now = datetime.now(UTC)
        with translate_db_errors(), self.engine.begin() as conn:
            changed = self._keep_newer(conn, report, now)
            if not changed or not self.settings.channels:
                return 0
            tables = load(conn)
            return self._listings(conn, tables, changed)

    def _keep_newer(self, conn: Connection, report: StockReport, now: datetime) -> set[str]:
        """The SKUs whose level this report moved (newer than the one kept)."""
        newest: dict[str, StockLevel] = {}
        for level in report.levels:  # a report naming a SKU twice: its newest level
            if level.sku not in newest or level.as_of > newest[level.sku].as_of:
                newest[level.sku] = level
        c = stock_levels.c
        changed = set()
        for level in newest.values():
            upsert = dialect_insert(conn, stock_levels).values(
                sku=level.sku, available=level.available, as_of=level.as_of, updated_at=now
            )
            written = conn.execute(
                upsert.on_conflict_do_update(  # type: ignore[attr-defined]
                    index_elements=["sku"],
                    set_={"available": level.available, "as_of": level.as_of, "updated_at": now},
                    where=c.as_of < level.as_of,
                ).returning(c.sku)
            ).first()
            if written is not None:
                changed.add(level.sku)
            else:
                log.info("stock: %s as of %s is older than the level kept", level.sku, level.as_of)
        return changed

    def _listings(self, conn: Connection, tables: MappingSet, changed: set[str]) -> int:
        plans = {
            channel: listings_of(tables, channel, changed) for channel in self.settings.channels
        }
        skus = {
            part.sku for listings in plans.values() for parts in listings.values() for part in parts
        }
        c = stock_levels.c
        rows = conn.execute(select(c.sku, c.available, c.as_of).where(c.sku.in_(sorted(skus))))
        levels: dict[str, int] = {}
        times: dict[str, datetime] = {}
        for sku, available, as_of in rows:
            levels[sku] = available
            times[sku] = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
        written = 0
        for channel, listings in plans.items():
            spec = self.settings.channels[channel]
            for platform_sku, parts in listings.items():
                units = listing_units(parts, levels)
                if units is None:
                    continue  # a component has no level yet
                quantity = allocated(units, spec.ratio, spec.safety)
                as_of = max(times[part.sku] for part in parts)
                written += self._record(conn, channel, platform_sku, quantity, as_of)
        return written

    @staticmethod
    def _record(
        conn: Connection, channel: str, platform_sku: str, quantity: int, as_of: datetime
    ) -> int:
        p = stock_pushes.c
        upsert = dialect_insert(conn, stock_pushes).values(
            channel=channel, platform_sku=platform_sku, quantity=quantity, as_of=as_of, attempts=0
        )
        done = conn.execute(
            upsert.on_conflict_do_update(  # type: ignore[attr-defined]
                index_elements=["channel", "platform_sku"],
                set_={"quantity": quantity, "as_of": as_of, "attempts": 0, "last_error": None},
                where=(p.as_of <= as_of) & (p.quantity != quantity),
            ).returning(p.channel)
        ).first()
        return 0 if done is None else 1
