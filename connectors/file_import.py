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
- **Importing the same file again has no second effect**: each order's message
  id is derived from its content, so the router records it once, and an
  unchanged order is a duplicate anyway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from canonical.order import CanonicalOrder
from canonical.validation import violations
from connectors.payload import SHANGHAI
from connectors.publishing import PublishMany
from infra.spreadsheets import Table, UnreadableFile, read_table

# Recognised headers for each field, compared without case, spaces, underscores,
# hyphens, colons or brackets. The first matching column wins.
ALIASES: dict[str, tuple[str, ...]] = {
    "external_id": (
        "订单号",
        "订单编号",
        "单号",
        "小票号",
        "流水号",
        "order id",
        "order no",
        "order number",
        "external id",
    ),
    "shop": ("门店", "店铺", "门店编号", "store", "shop"),
    "status": ("订单状态", "状态", "status"),
    "sku": ("商品编码", "商品编号", "sku", "货号", "条码", "product code", "item code"),
    "name": ("商品名称", "品名", "product name", "item name", "product", "item"),
    "quantity": ("数量", "qty", "quantity"),
    "unit_price": ("单价", "售价", "unit price", "price"),
    "discount": ("优惠", "优惠金额", "折扣金额", "商品优惠", "discount", "line discount"),
    "shipping_fee": ("运费", "shipping", "shipping fee"),
    "order_discount": ("整单优惠", "订单优惠", "order discount"),
    "tax": ("税额", "税费", "tax"),
    "total": (
        "订单金额",
        "实付金额",
        "应付金额",
        "实收金额",
        "合计",
        "总金额",
        "total",
        "order total",
    ),
    "currency": ("币种", "货币", "currency"),
    "customer_name": ("收货人", "客户姓名", "顾客", "姓名", "customer", "customer name"),
    "phone": ("手机", "手机号", "手机号码", "联系电话", "电话", "phone", "mobile"),
    "email": ("邮箱", "电子邮件", "email", "e-mail"),
    "country": ("国家", "country"),
    "province": ("省", "省份", "province", "state"),
    "city": ("市", "城市", "city"),
    "district": ("区", "区县", "district"),
    "street": ("详细地址", "地址", "街道", "street", "address"),
    "postal_code": ("邮编", "邮政编码", "postal code", "postcode", "zip"),
    "placed_at": (
        "下单时间",
        "订单时间",
        "销售时间",
        "交易时间",
        "日期",
        "时间",
        "order date",
        "date",
        "time",
        "placed at",
        "created at",
    ),
    "note": ("备注", "note", "remark"),
}
REQUIRED = ("external_id", "sku", "quantity", "unit_price")
ORDER_LEVEL = (
    "shop", "status", "shipping_fee", "order_discount", "tax", "total", "currency",
    "customer_name", "phone", "email", "country", "province", "city", "district", "street",
    "postal_code", "placed_at", "note",
)  # fmt: skip

STATUS_WORDS: dict[str, str] = {
    **dict.fromkeys(("待付款", "未付款", "新建", "created", "pending", "unpaid"), "created"),
    **dict.fromkeys(("已付款", "已支付", "付款", "已收款", "paid"), "paid"),
    **dict.fromkeys(("已发货", "发货", "shipped"), "shipped"),
    **dict.fromkeys(
        ("已完成", "已签收", "交易成功", "完成", "delivered", "completed", "done"), "delivered"
    ),
    **dict.fromkeys(("已取消", "取消", "作废", "cancelled", "canceled", "void"), "cancelled"),
    **dict.fromkeys(("已退款", "退款", "退货", "refunded", "returned"), "refunded"),
}
DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M",
    "%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d %H:%M:%S", "%Y.%m.%d", "%Y年%m月%d日 %H:%M:%S",
    "%Y年%m月%d日 %H:%M", "%Y年%m月%d日",
)  # fmt: skip
# currency signs, thousands separators (ASCII and full-width) and spaces
MONEY_MARKS = re.compile("[\u00a5\uffe5$,\uff0c\\s]|^(?:CNY|RMB|USD)", re.IGNORECASE)


class FileImportError(UnreadableFile):
    """The file as a whole cannot be read (format, encoding, no header)."""


@dataclass(frozen=True)
class RowError:
    row: int
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.reason}: {self.detail}"


@dataclass(frozen=True)
class ColumnMapping:
    """Which column holds which field, what the file lacks, and its time zone."""

    columns: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    timezone: tzinfo = SHANGHAI

    @classmethod
    def load(cls, path: Path | None) -> ColumnMapping:
        if path is None:
            return cls()
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise FileImportError(f"mapping file {path}: {exc}") from exc
        unknown = set(data) - {"columns", "defaults", "timezone"}
        unknown |= {k for k in data.get("columns", {}) if k not in ALIASES}
        unknown |= {k for k in data.get("defaults", {}) if k not in ALIASES}
        if unknown:
            raise FileImportError(
                f"mapping file {path}: unknown keys {sorted(unknown)}; fields are "
                f"{', '.join(ALIASES)}"
            )
        return cls(
            columns=dict(data.get("columns", {})),
            defaults={k: str(v) for k, v in data.get("defaults", {}).items()},
            timezone=_zone(data.get("timezone")),
        )


def _zone(name: str | None) -> tzinfo:
    if not name or name in ("Asia/Shanghai", "+08:00"):
        return SHANGHAI
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception as exc:
        raise FileImportError(f"unknown time zone {name!r}") from exc


@dataclass
class ParsedFile:
    orders: list[tuple[CanonicalOrder, list[int]]]  # each good order and its rows
    errors: list[RowError]
    rows: int
    encoding: str


# -- columns ------------------------------------------------------------------
def _norm(text: str) -> str:
    # spaces, _ - : ( ) and their full-width forms
    return re.sub("[\\s_\\-:\uff1a()\uff08\uff09]", "", text.lower())


def locate_columns(header: list[str], mapping: ColumnMapping) -> dict[str, int]:
    """Field -> column index; FileImportError if a required field has no column."""
    normalised = [_norm(h) for h in header]
    found: dict[str, int] = {}
    for name, column in mapping.columns.items():
        if _norm(column) not in normalised:
            raise FileImportError(
                f"the mapping names column {column!r} for {name}, but the header is {header}"
            )
        found[name] = normalised.index(_norm(column))
    taken = set(found.values())
    for name, aliases in ALIASES.items():
        if name in found:
            continue
        for alias in aliases:
            key = _norm(alias)
            if key in normalised and normalised.index(key) not in taken:
                found[name] = normalised.index(key)
                taken.add(found[name])
                break
    missing = [f for f in REQUIRED if f not in found and f not in mapping.defaults]
    if missing:
        raise FileImportError(
            f"no column for {', '.join(missing)} in the header {header}; name them in a "
            'mapping file: {"columns": {"sku": "your column"}}'
        )
    return found


# -- cells --------------------------------------------------------------------
class _Bad(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a spreadsheet's 1001.0 is the id 1001
    return str(value).strip()


def _money(value: Any, label: str) -> Decimal:
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))  # the shortest text of the float: what the cell shows
    text = MONEY_MARKS.sub("", str(value))
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise _Bad("invalid_amount", f"{label} {value!r} is not an amount") from None
    if not amount.is_finite():
        raise _Bad("invalid_amount", f"{label} {value!r} is not an amount")
    return amount


def _quantity(value: Any, label: str) -> int:
    if isinstance(value, bool):
        raise _Bad("invalid_quantity", f"{label} {value!r} is not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d{1,9}", text):
        return int(text)
    raise _Bad("invalid_quantity", f"{label} {value!r} is not a whole number")


def _timestamp(value: Any, label: str, zone: tzinfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=zone)
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)
    except ValueError:
        pass
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=zone)
        except ValueError:
            continue
    raise _Bad("invalid_date", f"{label} {value!r} is not a date and time (2026-11-11 10:30)")


def _status(value: str) -> str:
    status = STATUS_WORDS.get(value.strip().lower()) or STATUS_WORDS.get(value.strip())
    if status is None:
        raise _Bad(
            "unknown_status",
            f"status {value!r} is not one orderbus knows ({', '.join(sorted(set(STATUS_WORDS)))})",
        )
    return status


# -- rows into orders ----------------------------------------------------------
@dataclass
class _Group:
    external_id: str
    first_row: int
    values: dict[str, Any]
    items: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    bad_rows: list[int] = field(default_factory=list)


def parse_table(
    table: Table, mapping: ColumnMapping, channel: str, shop: str | None = None
) -> ParsedFile:
    columns = locate_columns(table.header, mapping)
    errors: list[RowError] = []
    groups: dict[str, _Group] = {}

    def cell(cells: list[Any], name: str) -> str | Any:
        index = columns.get(name)
        value = cells[index] if index is not None and index < len(cells) else ""
        if (value is None or str(value).strip() == "") and name in mapping.defaults:
            return mapping.defaults[name]
        return value

    def label(name: str) -> str:
        index = columns.get(name)
        return f"{table.header[index]!r}" if index is not None else name

    for number, cells in table.rows:
        external_id = _text(cell(cells, "external_id"))
        if not external_id:
            errors.append(RowError(number, "missing_order_id", f"{label('external_id')} is empty"))
            continue
        group = groups.get(external_id)
        if group is None:
            group = groups[external_id] = _Group(
                external_id, number, {n: cell(cells, n) for n in ORDER_LEVEL}
            )
        try:
            sku = _text(cell(cells, "sku"))
            if not sku:
                raise _Bad("missing_sku", f"{label('sku')} is empty")
            item = {
                "sku": sku,
                "name": _text(cell(cells, "name")) or None,
                "quantity": _quantity(cell(cells, "quantity"), label("quantity")),
                "unit_price": _money(cell(cells, "unit_price"), label("unit_price")),
                "discount": _money(cell(cells, "discount") or "0", label("discount")),
            }
        except _Bad as bad:
            errors.append(RowError(number, bad.reason, bad.detail))
            group.bad_rows.append(number)
            continue
        group.items.append((number, item))

    orders: list[tuple[CanonicalOrder, list[int]]] = []
    for group in groups.values():
        rows = sorted([n for n, _ in group.items] + group.bad_rows)
        if group.bad_rows:
            for number, _ in group.items:
                errors.append(
                    RowError(
                        number,
                        "order_incomplete",
                        f"order {group.external_id} is not imported: row "
                        f"{', '.join(map(str, group.bad_rows))} of it is bad",
                    )
                )
            continue
        try:
            order = _order(group, mapping, channel, shop, label)
        except _Bad as bad:
            errors.extend(RowError(n, bad.reason, bad.detail) for n in rows)
            continue
        problems = violations(order)
        if problems:
            for v in problems:
                at = group.first_row
                match = re.match(r"items\[(\d+)\]", v.field)
                if match and int(match.group(1)) < len(group.items):
                    at = group.items[int(match.group(1))][0]
                errors.append(RowError(at, v.code, f"{v.field}: {v.message}"))
            continue
        orders.append((order, rows))
    errors.sort(key=lambda e: e.row)
    return ParsedFile(orders, errors, len(table.rows), table.encoding)


def _order(
    group: _Group,
    mapping: ColumnMapping,
    channel: str,
    shop: str | None,
    label: Callable[[str], str],
) -> CanonicalOrder:
    v = {k: _text(x) for k, x in group.values.items() if k != "placed_at"}
    items = [item for _, item in group.items]
    shipping_fee = _money(v["shipping_fee"] or "0", label("shipping_fee"))
    order_discount = _money(v["order_discount"] or "0", label("order_discount"))
    tax = _money(v["tax"] or "0", label("tax"))
    if v["total"]:
        total = _money(v["total"], label("total"))
    else:  # a file without totals: the lines are the order
        total = sum(
            (i["unit_price"] * i["quantity"] - i["discount"] for i in items), Decimal("0")
        ) + (shipping_fee + tax - order_discount)
    if not _text(group.values["placed_at"]):
        raise _Bad("missing_date", f"{label('placed_at')} is empty (when was it sold?)")
    address = {k: v[k] or None for k in ("province", "city", "district", "street", "postal_code")}
    if v["country"]:
        address["country"] = v["country"]
    data = {
        "channel": channel,
        "shop": shop or v["shop"] or "default",
        "external_id": group.external_id,
        "status": _status(v["status"] or "paid"),
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
        "placed_at": _timestamp(group.values["placed_at"], label("placed_at"), mapping.timezone),
        "note": v["note"] or None,
    }
    try:
        return CanonicalOrder.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _Bad("schema_mismatch", f"{where}: {first['msg']}") from None


def row_text(table: Table, number: int) -> str:
    """A row as comma-separated text, for the record of a bad row."""
    for n, cells in table.rows:
        if n == number:
            return ",".join(_text(c) for c in cells)
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
