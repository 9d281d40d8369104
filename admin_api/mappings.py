"""Editing the mapping tables (canonical/mapping.py says what they mean):
product mappings and our SKUs' codes in each system, one by one or from a
spreadsheet, each change audited with before and after and raising the
tables' version; and the dry run: which stuck orders would now go through,
and as what.

A spreadsheet (CSV in UTF-8 or GBK, or XLSX) has one row per component:
``channel``, ``shop`` (empty: any), ``platform_sku``, ``internal_sku``,
``quantity`` (default 1), ``share`` (the price weight of one unit, default
1), and optionally ``finance_code`` and ``warehouse_code`` (the internal
SKU's codes in those systems). Rows with the same channel, shop and platform
SKU make one bundle. Chinese headers are read too (渠道, 店铺, 平台SKU,
内部SKU, 数量, 价格权重, ERP物料编码, 仓库商品编码).
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from canonical.errors import SkuNotMapped
from canonical.mapping import MappingSet, map_order
from canonical.order import CanonicalOrder
from infra.audit import audit
from infra.mappings import bump_version, components_of, load
from infra.spreadsheets import Table, read_csv, read_xlsx, safe_cell, xlsx_bytes
from infra.tables import (
    carrier_codes,
    dead_letters,
    holds,
    orders,
    shop_accounts,
    sku_codes,
    sku_mappings,
    warehouse_rules,
)
from infra.topology import Topology
from router.fanout import Fanout
from router.holds import release
from router.mapping_gate import CAUSE as UNMAPPED

HEADERS = {
    "channel": ("channel", "渠道"),
    "shop": ("shop", "店铺"),
    "platform_sku": ("platform_sku", "平台sku", "平台商家编码", "商家编码"),
    "internal_sku": ("internal_sku", "内部sku", "商品编码", "系统sku"),
    "quantity": ("quantity", "数量"),
    "share": ("share", "价格权重", "权重"),
    "finance_code": ("finance_code", "erp物料编码", "物料编码"),
    "warehouse_code": ("warehouse_code", "仓库商品编码", "仓库编码"),
}
CODE_COLUMNS = {"finance_code": "finance", "warehouse_code": "warehouse"}
MAX_COMPONENTS = 50


class MappingError(ValueError):
    """A mapping that cannot be saved; the message says why."""


def _components(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_COMPONENTS:
        raise MappingError(f"a mapping has 1 to {MAX_COMPONENTS} components")
    found: list[dict[str, Any]] = []
    for part in raw:
        if not isinstance(part, dict):
            raise MappingError("each component is {sku, quantity, share}")
        sku = str(part.get("sku", "")).strip()
        try:
            quantity = int(str(part.get("quantity", 1)))
            share = int(str(part.get("share", 1)))
        except (TypeError, ValueError):
            raise MappingError(f"component {sku!r}: quantity and share are whole numbers") from None
        if not sku or quantity < 1 or share < 0:
            raise MappingError(f"component {sku!r}: a SKU, a quantity of 1 or more, a share of 0+")
        found.append({"sku": sku, "quantity": quantity, "share": share})
    if sum(int(p["quantity"]) * int(p["share"]) for p in found) <= 0:
        raise MappingError("at least one component needs a share above 0 (it carries the price)")
    return found


def products(conn: Connection) -> list[dict[str, Any]]:
    c = sku_mappings.c
    rows = conn.execute(select(sku_mappings).order_by(c.channel, c.shop, c.platform_sku))
    return [dict(r) for r in rows.mappings()]


def codes(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(sku_codes).order_by(sku_codes.c.internal_sku, sku_codes.c.target))
    return [dict(r) for r in rows.mappings()]


def put_product(
    conn: Connection,
    *,
    channel: str,
    shop: str,
    platform_sku: str,
    components: Any,
    note: str | None,
    by: str,
) -> int:
    """Create or replace one product mapping; the tables' new version."""
    platform_sku = platform_sku.strip()
    if not platform_sku:
        raise MappingError("the platform SKU is required")
    parts = _components(components)
    c = sku_mappings.c
    key = (c.channel == channel.strip(), c.shop == shop.strip(), c.platform_sku == platform_sku)
    before = conn.execute(select(sku_mappings).where(*key)).mappings().first()
    values = {"components": parts, "note": note, "updated_at": datetime.now(UTC), "updated_by": by}
    if before is None:
        conn.execute(
            insert(sku_mappings).values(
                channel=channel.strip(), shop=shop.strip(), platform_sku=platform_sku, **values
            )
        )
    else:
        conn.execute(update(sku_mappings).where(*key).values(**values))
    version = bump_version(conn)
    audit(
        conn,
        by,
        "mapping.product.put",
        "sku_mapping",
        f"{channel}/{shop}/{platform_sku}",
        {
            "before": None if before is None else {"components": before["components"]},
            "after": {"components": parts, "note": note},
            "version": version,
        },
    )
    return version


def delete_product(conn: Connection, mapping_id: int, by: str) -> int:
    row = (
        conn.execute(select(sku_mappings).where(sku_mappings.c.id == mapping_id)).mappings().first()
    )
    if row is None:
        raise LookupError(mapping_id)
    conn.execute(delete(sku_mappings).where(sku_mappings.c.id == mapping_id))
    version = bump_version(conn)
    audit(
        conn,
        by,
        "mapping.product.delete",
        "sku_mapping",
        f"{row['channel']}/{row['shop']}/{row['platform_sku']}",
        {"before": {"components": row["components"]}, "after": None, "version": version},
    )
    return version


def put_code(conn: Connection, internal_sku: str, target: str, code: str, by: str) -> int:
    internal_sku, target, code = internal_sku.strip(), target.strip(), code.strip()
    if not (internal_sku and target and code):
        raise MappingError("an internal SKU, a system and its code are required")
    key = (sku_codes.c.internal_sku == internal_sku, sku_codes.c.target == target)
    before = conn.scalar(select(sku_codes.c.code).where(*key))
    now = datetime.now(UTC)
    if before is None:
        conn.execute(
            insert(sku_codes).values(
                internal_sku=internal_sku, target=target, code=code, updated_at=now, updated_by=by
            )
        )
    else:
        conn.execute(update(sku_codes).where(*key).values(code=code, updated_at=now, updated_by=by))
    version = bump_version(conn)
    audit(
        conn,
        by,
        "mapping.code.put",
        "sku_code",
        f"{internal_sku}/{target}",
        {"before": before, "after": code, "version": version},
    )
    return version


def _column(header: list[str], name: str) -> int | None:
    wanted = HEADERS[name]
    for index, text in enumerate(header):
        if text.strip().lower().replace(" ", "") in wanted:
            return index
    return None


@dataclass
class Imported:
    mappings: int
    codes: int
    version: int


def read_sheet(data: bytes) -> Table:
    return read_xlsx(data) if data.startswith(b"PK\x03\x04") else read_csv(data)


def import_sheet(conn: Connection, data: bytes, by: str) -> Imported:
    """Every row of the sheet, in one transaction: all or nothing."""
    table = read_sheet(data)
    at = {name: _column(table.header, name) for name in HEADERS}
    for needed in ("platform_sku", "internal_sku"):
        if at[needed] is None:
            raise MappingError(f"the sheet has no {needed} column (columns: {table.header})")

    def cell(cells: list[Any], name: str) -> str:
        index = at[name]
        return str(cells[index]).strip() if index is not None and index < len(cells) else ""

    bundles: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    wanted_codes: dict[tuple[str, str], str] = {}
    for line, cells in table.rows:
        key = (cell(cells, "channel"), cell(cells, "shop"), cell(cells, "platform_sku"))
        internal = cell(cells, "internal_sku")
        if not key[2] or not internal:
            raise MappingError(f"row {line}: platform_sku and internal_sku are required")
        part = {"sku": internal, "quantity": cell(cells, "quantity") or 1}
        part["share"] = cell(cells, "share") or 1
        bundles[key].append(part)
        for column, target in CODE_COLUMNS.items():
            if code := cell(cells, column):
                wanted_codes[(internal, target)] = code
    for (channel, shop, platform_sku), parts in bundles.items():
        put_product(
            conn, channel=channel, shop=shop, platform_sku=platform_sku, components=parts,
            note="imported", by=by,
        )  # fmt: skip
    for (internal, target), code in wanted_codes.items():
        put_code(conn, internal, target, code, by)
    return Imported(len(bundles), len(wanted_codes), load(conn).version)


EXPORT_HEADER = [
    "channel", "shop", "platform_sku", "internal_sku", "quantity", "share",
    "finance_code", "warehouse_code",
]  # fmt: skip


def export_rows(conn: Connection) -> list[list[object]]:
    known = {(r["internal_sku"], r["target"]): r["code"] for r in codes(conn)}
    rows: list[list[object]] = []
    for m in products(conn):
        for part in m["components"]:
            rows.append(
                [
                    m["channel"], m["shop"], m["platform_sku"], part["sku"], part["quantity"],
                    part.get("share", 1), known.get((part["sku"], "finance"), ""),
                    known.get((part["sku"], "warehouse"), ""),
                ]
            )  # fmt: skip
    return rows


def export_csv(conn: Connection) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_HEADER)
    writer.writerows([[safe_cell(c) for c in row] for row in export_rows(conn)])
    return "\ufeff" + out.getvalue()


def export_xlsx(conn: Connection) -> bytes:
    return xlsx_bytes(EXPORT_HEADER, export_rows(conn), "sku mappings")


@dataclass
class Preview:
    """One stuck delivery (an order held for its mapping, to one system, or a
    dead letter) and what it would be with the tables given."""

    order_number: str | None
    target: str
    passes: bool
    why: str
    lines: list[dict[str, Any]]
    dead_letter_id: int | None = None
    hold_id: int | None = None


@dataclass(frozen=True)
class Scope:
    """Who takes our codes, and who hears of a released order."""

    targets: frozenset[str] = frozenset({"warehouse", "finance"})
    fanout: Fanout = field(default_factory=Fanout)


def with_proposal(
    tables: MappingSet, channel: str, shop: str, platform_sku: str, components: Any
) -> MappingSet:
    """The tables as they would be with one more product mapping (not saved)."""
    parts = components_of(_components(components))
    merged = {**tables.products, (channel.strip(), shop.strip(), platform_sku.strip()): parts}
    return replace(tables, products=merged)


def _preview(order: CanonicalOrder, tables: MappingSet, target: str, **where: int) -> Preview:
    """What ``target`` would receive of ``order`` with ``tables``."""
    number = order.order_number
    try:
        mapped = map_order(order, tables, target)
    except SkuNotMapped as exc:
        return Preview(number, target, False, exc.detail, [], **where)
    except ValueError as exc:
        return Preview(number, target, False, str(exc), [], **where)
    unchanged = [i.sku for i in mapped.items if i.platform_sku == i.sku]
    lines = [
        {
            "platform_sku": i.platform_sku,
            "sku": i.sku,
            "quantity": i.quantity,
            "unit_price": str(i.unit_price),
            "discount": str(i.discount),
        }
        for i in mapped.items
    ]
    passes = not unchanged or tables.requires(order.channel)
    why = "" if passes else "still the channel's SKU: " + ", ".join(sorted(set(unchanged)))
    return Preview(number, target, passes, why, lines, **where)


def _held(conn: Connection, tables: MappingSet, scope: Scope) -> list[Preview]:
    """Each order held for its mapping, once per system that takes our codes."""
    rows = conn.execute(
        select(holds.c.id, orders.c.order_number, orders.c.body)
        .join(orders, orders.c.id == holds.c.order_id)
        .where(holds.c.status == "open", holds.c.cause == UNMAPPED)
        .order_by(holds.c.id)
    )
    previews = []
    for row in rows:
        order = CanonicalOrder.from_wire(row.body.encode("utf-8"))
        for target in scope.fanout.targets(order, None):
            if target in scope.targets:
                previews.append(_preview(order, tables, target, hold_id=row.id))
    return previews


def _dead_letters(conn: Connection, tables: MappingSet) -> list[Preview]:
    """Each open dead letter stuck on a SKU (not mapped here, or refused by a
    system for its SKU)."""
    from admin_api.causes import cause_of

    c = dead_letters.c
    rows = conn.execute(
        select(c.id, c.order_number, c.routing_key, c.reason, c.detail, c.body)
        .where(c.status == "open", c.routing_key.like("deliver.%"))
        .order_by(c.id)
    )
    previews = []
    for row in rows:
        if cause_of(row.reason, row.detail) != "sku_not_mapped":
            continue
        target = row.routing_key.removeprefix("deliver.")
        try:
            order = CanonicalOrder.model_validate(json.loads(row.body))
        except ValueError as exc:
            previews.append(
                Preview(row.order_number, target, False, str(exc), [], dead_letter_id=row.id)
            )
            continue
        previews.append(_preview(order, tables, target, dead_letter_id=row.id))
    return previews


def dry_run(conn: Connection, tables: MappingSet, scope: Scope | None = None) -> list[Preview]:
    """Every order stuck on a SKU (held for its mapping, or a dead letter),
    and what it would become with ``tables``: passes or not, and the lines
    the system would receive. Changes nothing."""
    return _held(conn, tables, scope or Scope()) + _dead_letters(conn, tables)


SHOP_FIELDS = ("customer", "department", "settlement_account", "warehouse")


def shops(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(shop_accounts).order_by(shop_accounts.c.channel, shop_accounts.c.shop)
    )
    return [dict(r) for r in rows.mappings()]


def put_shop(
    conn: Connection, channel: str, shop: str, values: dict[str, str | None], by: str
) -> int:
    """A shop's ERP customer, department, settlement account and warehouse
    (shop '': every shop of the channel)."""
    channel, shop = channel.strip(), shop.strip()
    if not channel:
        raise MappingError("the channel is required")
    given = {k: (values.get(k) or "").strip() or None for k in SHOP_FIELDS}
    key = (shop_accounts.c.channel == channel, shop_accounts.c.shop == shop)
    before = conn.execute(select(shop_accounts).where(*key)).mappings().first()
    stamp = {"updated_at": datetime.now(UTC), "updated_by": by}
    if before is None:
        conn.execute(insert(shop_accounts).values(channel=channel, shop=shop, **given, **stamp))
    else:
        conn.execute(update(shop_accounts).where(*key).values(**given, **stamp))
    version = bump_version(conn)
    audit(
        conn, by, "mapping.shop.put", "shop_accounts", f"{channel}/{shop}",
        {
            "before": None if before is None else {k: before[k] for k in SHOP_FIELDS},
            "after": given, "version": version,
        },
    )  # fmt: skip
    return version


def rules(conn: Connection) -> list[dict[str, Any]]:
    c = warehouse_rules.c
    return [
        dict(r) for r in conn.execute(select(warehouse_rules).order_by(c.priority, c.id)).mappings()
    ]


def add_rule(
    conn: Connection,
    *,
    warehouse: str,
    channel: str,
    province: str,
    sku: str,
    priority: int,
    by: str,
) -> int:
    if not warehouse.strip():
        raise MappingError("the warehouse is required")
    values = {
        "warehouse": warehouse.strip(), "channel": channel.strip(), "province": province.strip(),
        "sku": sku.strip(), "priority": priority,
    }  # fmt: skip
    conn.execute(
        insert(warehouse_rules).values(**values, updated_at=datetime.now(UTC), updated_by=by)
    )
    version = bump_version(conn)
    audit(
        conn, by, "mapping.rule.add", "warehouse_rule", None, {"after": values, "version": version}
    )
    return version


def delete_rule(conn: Connection, rule_id: int, by: str) -> int:
    row = (
        conn.execute(select(warehouse_rules).where(warehouse_rules.c.id == rule_id))
        .mappings()
        .first()
    )
    if row is None:
        raise LookupError(rule_id)
    conn.execute(delete(warehouse_rules).where(warehouse_rules.c.id == rule_id))
    version = bump_version(conn)
    before = {k: row[k] for k in ("warehouse", "channel", "province", "sku", "priority")}
    audit(
        conn, by, "mapping.rule.delete", "warehouse_rule", str(rule_id),
        {"before": before, "after": None, "version": version},
    )  # fmt: skip
    return version


def carriers(conn: Connection) -> list[dict[str, Any]]:
    c = carrier_codes.c
    return [
        dict(r)
        for r in conn.execute(select(carrier_codes).order_by(c.carrier, c.system)).mappings()
    ]


def put_carrier(conn: Connection, carrier: str, system: str, code: str, by: str) -> int:
    """A carrier's code in one system: a channel (its write-back) or a target."""
    carrier, system, code = carrier.strip(), system.strip(), code.strip()
    if not (carrier and system and code):
        raise MappingError("a carrier, a system and its code are required")
    key = (carrier_codes.c.carrier == carrier, carrier_codes.c.system == system)
    before = conn.scalar(select(carrier_codes.c.code).where(*key))
    stamp = {"updated_at": datetime.now(UTC), "updated_by": by}
    if before is None:
        conn.execute(
            insert(carrier_codes).values(carrier=carrier, system=system, code=code, **stamp)
        )
    else:
        conn.execute(update(carrier_codes).where(*key).values(code=code, **stamp))
    version = bump_version(conn)
    audit(
        conn, by, "mapping.carrier.put", "carrier_code", f"{carrier}/{system}",
        {"before": before, "after": code, "version": version},
    )  # fmt: skip
    return version


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def export(conn: Connection, kind: str) -> tuple[bytes, str, str]:
    """The mappings as a download: (content, media type, file name)."""
    if kind == "xlsx":
        return export_xlsx(conn), XLSX, "sku-mappings.xlsx"
    return export_csv(conn).encode("utf-8"), "text/csv; charset=utf-8", "sku-mappings.csv"


def passing_orders(previews: list[Preview]) -> set[tuple[str, int]]:
    """What "send those that pass" would send: each held order passing for
    every system, and each passing dead letter."""
    held = {p.hold_id for p in previews if p.hold_id is not None}
    stuck = {p.hold_id for p in previews if p.hold_id is not None and not p.passes}
    letters = {p.dead_letter_id for p in previews if p.dead_letter_id is not None and p.passes}
    return {("hold", i) for i in held - stuck} | {("dead_letter", i) for i in letters}


@dataclass
class Retried:
    released: list[int]  # holds
    retried: list[int]  # dead letters


def retry_passing(
    conn: Connection, tables: MappingSet, by: str, topology: Topology, scope: Scope | None = None
) -> Retried:
    """Release every hold and retry every dead letter the dry run says now
    passes (a hold when it passes for every system): each goes out once."""
    from admin_api import deadletters

    scope = scope or Scope()
    previews = dry_run(conn, tables, scope)
    stuck_holds = {p.hold_id for p in previews if p.hold_id is not None and not p.passes}
    passing_holds = sorted({p.hold_id for p in previews if p.hold_id is not None} - stuck_holds)
    for hold_id in passing_holds:
        release(conn, topology, hold_id, by, "mapping added", scope.fanout, tables)
    letters = [p.dead_letter_id for p in previews if p.dead_letter_id is not None and p.passes]
    for dead_letter_id in letters:
        deadletters.retry(conn, dead_letter_id, by, "mapping added")
    audit(
        conn, by, "mapping.retry_passing", "dead_letter", None,
        {"released": passing_holds, "retried": letters, "version": tables.version},
    )  # fmt: skip
    return Retried(passing_holds, letters)
