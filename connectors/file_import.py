"""Offline-store file import: CSV and XLSX exports from a POS or a spreadsheet.

- **Encodings**: UTF-8, UTF-8 with BOM, UTF-16 with BOM (Excel's "Unicode
  text"), and GBK / GB18030 (what Excel on Chinese Windows writes), detected
  in that order, or named with ``encoding``.
- **Headers** in Chinese or English are recognised (:data:`ALIASES`); a
  mapping file names other columns and fills what the file lacks:
  ``{"columns": {"external_id": "流水号"}, "defaults": {"status": "paid",
  "currency": "CNY", "province": "浙江省", ...}, "timezone": "Asia/Shanghai"}``.
- **One row per line item**; rows with the same order id form one order, whose
  order-level values (customer, address, totals) come from its first row.
- **Every bad row is reported** with its row number (the header is row 1, as
  in a spreadsheet) and a reason a person can act on. An order with a bad row
  is not imported at all (its other rows say so): half an order must not
  reach the warehouse. Business rules are the router's (:mod:`canonical.validation`),
  checked here too so that the report names the row.
- **After-sales** (售后) ride on the rows of the lines they concern: a row with
  an after-sale id (售后单号/退款单号) gives back its line's units (退货数量; all
  of them when empty) and money (退款金额); rows with the same id form one
  after-sale, of the kind (售后类型: 仅退款, 退货退款, 取消) and status (售后状态:
  待处理, 已同意, 已退款, 已拒绝, 已撤销) of its first row (refund and completed
  when the file has no such column). The same file exported again with a
  refund added is a new revision of the order: the router sends the refund's
  document once.
- **Importing the same file again has no second effect**: each order's message
  id is derived from its content, so the router records it once, and an
  unchanged order is a duplicate anyway.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from canonical.order import CanonicalOrder
from canonical.validation import violations
from connectors.addresses import split_address
from connectors.file_columns import (
    AFTER_SALE_KIND_WORDS,
    AFTER_SALE_STATUS_WORDS,
    ORDER_LEVEL,
    BadCell,
    ColumnMapping,
    Columns,
    FileImportError,
    RowError,
    cell_text,
    money,
    quantity,
    status_of,
    timestamp,
    word_of,
)
from connectors.publishing import PublishMany
from infra.spreadsheets import Table, read_table


@dataclass
class ParsedFile:
    orders: list[tuple[CanonicalOrder, list[int]]]  # each good order and its rows
    errors: list[RowError]
    rows: int
    encoding: str


# -- rows into orders ----------------------------------------------------------
@dataclass
class _Group:
    external_id: str
    first_row: int
    values: dict[str, Any]
    items: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    bad_rows: list[int] = field(default_factory=list)
    after_sales: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


def parse_table(
    table: Table, mapping: ColumnMapping, channel: str, shop: str | None = None
) -> ParsedFile:
    """The file's good orders and a reason for each bad row (sorted by row)."""
    columns = Columns(table.header, mapping)
    groups, errors = _group_rows(table, columns)
    orders: list[tuple[CanonicalOrder, list[int]]] = []
    for group in groups.values():
        order, problems = _order_of(group, columns, channel, shop)
        errors += problems
        if order is not None:
            orders.append((order, sorted(n for n, _ in group.items)))
    errors.sort(key=lambda e: e.row)
    return ParsedFile(orders, errors, len(table.rows), table.encoding)


def _group_rows(table: Table, columns: Columns) -> tuple[dict[str, _Group], list[RowError]]:
    """Rows grouped by order id, each row's line item read (or its reason)."""
    errors: list[RowError] = []
    groups: dict[str, _Group] = {}
    cell, label = columns.cell, columns.label
    for number, cells in table.rows:
        external_id = cell_text(cell(cells, "external_id"))
        if not external_id:
            errors.append(RowError(number, "missing_order_id", f"{label('external_id')} is empty"))
            continue
        group = groups.get(external_id)
        if group is None:
            group = groups[external_id] = _Group(
                external_id, number, {n: cell(cells, n) for n in ORDER_LEVEL}
            )
        try:
            sku = cell_text(cell(cells, "sku"))
            if not sku:
                raise BadCell("missing_sku", f"{label('sku')} is empty")
            item = {
                "sku": sku,
                "name": cell_text(cell(cells, "name")) or None,
                "quantity": quantity(cell(cells, "quantity"), label("quantity")),
                "unit_price": money(cell(cells, "unit_price"), label("unit_price")),
                "discount": money(cell(cells, "discount") or "0", label("discount")),
            }
            sale = _after_sale_cells(cells, columns, item)
        except BadCell as bad:
            errors.append(RowError(number, bad.reason, bad.detail))
            group.bad_rows.append(number)
            continue
        group.items.append((number, item))
        if sale is not None:
            group.after_sales.append((number, sale))
    return groups, errors


def _after_sale_cells(
    cells: list[Any], columns: Columns, item: dict[str, Any]
) -> dict[str, Any] | None:
    """The row's after-sale of its line (None: the row has no after-sale id):
    its units (the line's when not given), its money, kind and status."""
    cell, label = columns.cell, columns.label
    sale_id = cell_text(cell(cells, "after_sale_id"))
    if not sale_id:
        return None
    units = cell(cells, "return_quantity")
    kind = cell_text(cell(cells, "after_sale_kind")) or "refund"
    if kind in ("换货", "exchange", "补寄", "维修"):
        raise BadCell(
            "unknown_after_sale_kind",
            f"{label('after_sale_kind')} {kind!r}: an exchange, resend or repair undoes no sale; "
            "leave this row's after-sale columns empty",
        )
    return {
        "id": sale_id,
        "kind": word_of(
            AFTER_SALE_KIND_WORDS, kind, label("after_sale_kind"), "unknown_after_sale_kind"
        ),
        "status": word_of(
            AFTER_SALE_STATUS_WORDS,
            cell_text(cell(cells, "after_sale_status")) or "completed",
            label("after_sale_status"),
            "unknown_after_sale_status",
        ),
        "sku": item["sku"],
        "quantity": quantity(units, label("return_quantity")) if cell_text(units) else None,
        "amount": money(cell(cells, "refund_amount") or "0", label("refund_amount")),
    }


def _after_sales(group: _Group) -> list[dict[str, Any]]:
    """The group's after-sales: the rows of one id are its lines; its kind and
    status those of its first row."""
    sales: dict[str, dict[str, Any]] = {}
    quantities = {item["sku"]: item["quantity"] for _, item in group.items}
    for _, row in group.after_sales:
        sale = sales.setdefault(
            row["id"],
            {"id": row["id"], "kind": row["kind"], "status": row["status"], "lines": []},
        )
        units = row["quantity"] or quantities[row["sku"]]
        sale["lines"].append({"sku": row["sku"], "quantity": units, "amount": row["amount"]})
    for sale in sales.values():
        sale["amount"] = sum((line["amount"] for line in sale["lines"]), Decimal("0"))
    return list(sales.values())


def _order_of(
    group: _Group, columns: Columns, channel: str, shop: str | None
) -> tuple[CanonicalOrder | None, list[RowError]]:
    """The group's order, or why each of its rows is not imported: an order
    with a bad row is not imported at all; a broken business rule names the
    row of the line it concerns."""
    rows = sorted([n for n, _ in group.items] + group.bad_rows)
    if group.bad_rows:
        bad = ", ".join(map(str, group.bad_rows))
        detail = f"order {group.external_id} is not imported: row {bad} of it is bad"
        return None, [RowError(n, "order_incomplete", detail) for n, _ in group.items]
    try:
        order = _order(group, columns.mapping, channel, shop, columns.label)
    except BadCell as bad:
        return None, [RowError(n, bad.reason, bad.detail) for n in rows]
    errors = []
    for v in violations(order):
        at = group.first_row
        match = re.match(r"items\[(\d+)\]", v.field)
        if match and int(match.group(1)) < len(group.items):
            at = group.items[int(match.group(1))][0]
        sale = re.match(r"after_sales\[(\d+)\]", v.field)
        if sale and int(sale.group(1)) < len(order.after_sales):
            sale_id = order.after_sales[int(sale.group(1))].id
            at = next(n for n, row in group.after_sales if row["id"] == sale_id)
        errors.append(RowError(at, v.code, f"{v.field}: {v.message}"))
    return (None, errors) if errors else (order, [])


def _order(
    group: _Group,
    mapping: ColumnMapping,
    channel: str,
    shop: str | None,
    label: Callable[[str], str],
) -> CanonicalOrder:
    v = {k: cell_text(x) for k, x in group.values.items() if k != "placed_at"}
    items = [item for _, item in group.items]
    shipping_fee = money(v["shipping_fee"] or "0", label("shipping_fee"))
    order_discount = money(v["order_discount"] or "0", label("order_discount"))
    tax = money(v["tax"] or "0", label("tax"))
    if v["total"]:
        total = money(v["total"], label("total"))
    else:  # a file without totals: the lines are the order
        total = sum(
            (i["unit_price"] * i["quantity"] - i["discount"] for i in items), Decimal("0")
        ) + (shipping_fee + tax - order_discount)
    if not cell_text(group.values["placed_at"]):
        raise BadCell("missing_date", f"{label('placed_at')} is empty (when was it sold?)")
    address = {k: v[k] or None for k in ("province", "city", "district", "street", "postal_code")}
    if v["country"]:
        address["country"] = v["country"]
    one_line = not (v["province"] or v["city"] or v["district"])
    if one_line and v["street"] and (v["country"] or "CN").upper() in ("CN", "CHINA", "中国"):
        parts = split_address(v["street"])  # "浙江省杭州市西湖区文三路90号" in one cell
        address.update(
            province=parts.province, city=parts.city, district=parts.district, street=parts.street
        )
    data = {
        "channel": channel,
        "shop": shop or v["shop"] or "default",
        "external_id": group.external_id,
        "status": status_of(v["status"] or "paid"),
        "currency": (v["currency"] or "CNY").upper(),
        "customer": {
            "name": v["customer_name"] or None,
            "phone": v["phone"] or None,
            "email": v["email"] or None,
        },
        "shipping_address": address,
        "items": items,
        "shipping_fee": shipping_fee,
        "order_discount": order_discount,
        "tax": tax,
        "total": total,
        "placed_at": timestamp(group.values["placed_at"], label("placed_at"), mapping.timezone),
        "note": v["note"] or None,
        "after_sales": _after_sales(group),
    }
    try:
        return CanonicalOrder.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadCell("schema_mismatch", f"{where}: {first['msg']}") from None


def row_text(table: Table, number: int) -> str:
    """A row as comma-separated text, for the record of a bad row."""
    for n, cells in table.rows:
        if n == number:
            return ",".join(cell_text(c) for c in cells)
    return ""


# -- publishing ----------------------------------------------------------------
@dataclass
class ImportReport:
    file: str
    encoding: str
    rows: int
    orders: int = 0
    published: int = 0
    errors: list[RowError] = field(default_factory=list)
    failure: str | None = None  # the broker refused: run the import again

    def summary(self) -> str:
        lines = [
            f"{self.file} ({self.encoding}): {self.rows} rows, {self.orders} good orders, "
            f"{self.published} published, {len(self.errors)} bad rows"
        ]
        lines += [f"  {e}" for e in self.errors]
        if self.failure:
            lines.append(f"  not finished: {self.failure}; importing the file again is safe")
        return "\n".join(lines)


def import_message_id(channel: str, order: CanonicalOrder) -> str:
    """The same for the same order content on every import of the file."""
    return f"{channel}.import.{order.content_hash()[:40]}"


def run_import(
    path: Path,
    channel: str,
    publish_many: PublishMany,
    record_bad_row: Callable[[RowError, str], None],
    *,
    mapping: ColumnMapping | None = None,
    shop: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    batch: int = 200,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Read, check and publish a file; every bad row recorded and reported.

    ``publish_many`` publishes orders under the given message ids and says,
    for each, None once the broker confirmed it, else the error.
    """
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", channel):
        raise FileImportError(
            f"channel {channel!r} must be lower-case letters, digits, - and _ (e.g. store-sh01)"
        )
    table = read_table(path, encoding, sheet)
    parsed = parse_table(table, mapping or ColumnMapping(), channel, shop)
    report = ImportReport(str(path), parsed.encoding, parsed.rows, len(parsed.orders))
    report.errors = parsed.errors
    for error in parsed.errors:
        record_bad_row(error, row_text(table, error.row))
    orders = [order for order, _ in parsed.orders]
    for start in range(0, len(orders), batch):
        chunk = orders[start : start + batch]
        results = publish_many(chunk, [import_message_id(channel, o) for o in chunk])
        failed = [(o, r) for o, r in zip(chunk, results, strict=True) if r is not None]
        report.published += len(chunk) - len(failed)
        if progress is not None:
            progress(report.published, len(orders))
        if failed:
            order, exc = failed[0]
            report.failure = f"order {order.external_id} was not confirmed by the broker: {exc}"
            break
    return report
