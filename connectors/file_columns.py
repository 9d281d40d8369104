"""A store's file, column by column: which column holds which field (headers
in Chinese or English, or a mapping file), and each cell read as text, money,
a quantity, a time or a status, with a reason a person can act on when it
cannot be (connectors/file_import.py turns the rows into orders)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from connectors.payload import SHANGHAI
from infra.spreadsheets import UnreadableFile

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
    "street": ("详细地址", "收货地址", "收件地址", "地址", "街道", "street", "address"),
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
    # a row's after-sale (售后) of its line: rows with the same id are one after-sale
    "after_sale_id": (
        "售后单号",
        "退款单号",
        "售后编号",
        "after-sale id",
        "refund id",
        "return id",
    ),
    "after_sale_kind": ("售后类型", "退款类型", "after-sale type", "refund type"),
    "after_sale_status": ("售后状态", "退款状态", "after-sale status", "refund status"),
    "refund_amount": ("退款金额", "退回金额", "refund amount", "refunded amount"),
    "return_quantity": ("退货数量", "退款数量", "售后数量", "return quantity", "refund quantity"),
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
AFTER_SALE_KIND_WORDS: dict[str, str] = {
    **dict.fromkeys(("仅退款", "退款", "refund", "money only"), "refund"),
    **dict.fromkeys(("退货退款", "退货", "return", "returned"), "return"),
    **dict.fromkeys(("取消", "未发货取消", "拦截", "cancel", "cancelled", "canceled"), "cancel"),
}
AFTER_SALE_STATUS_WORDS: dict[str, str] = {
    **dict.fromkeys(("待处理", "申请中", "待审核", "requested", "pending"), "requested"),
    **dict.fromkeys(("已同意", "同意", "待退货", "agreed", "approved"), "agreed"),
    **dict.fromkeys(
        ("已退款", "退款成功", "已完成", "完成", "completed", "refunded", "done"), "completed"
    ),
    **dict.fromkeys(("已拒绝", "拒绝", "refused", "rejected"), "refused"),
    **dict.fromkeys(("已撤销", "撤销", "已关闭", "关闭", "withdrawn", "closed"), "withdrawn"),
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
            timezone=zone_named(data.get("timezone")),
        )


def zone_named(name: str | None) -> tzinfo:
    if not name or name in ("Asia/Shanghai", "+08:00"):
        return SHANGHAI
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception as exc:
        raise FileImportError(f"unknown time zone {name!r}") from exc


def header_key(text: str) -> str:
    # spaces, _ - : ( ) and their full-width forms
    return re.sub("[\\s_\\-:\uff1a()\uff08\uff09]", "", text.lower())


def locate_columns(header: list[str], mapping: ColumnMapping) -> dict[str, int]:
    """Field -> column index; FileImportError if a required field has no column."""
    normalised = [header_key(h) for h in header]
    found: dict[str, int] = {}
    for name, column in mapping.columns.items():
        if header_key(column) not in normalised:
            raise FileImportError(
                f"the mapping names column {column!r} for {name}, but the header is {header}"
            )
        found[name] = normalised.index(header_key(column))
    taken = set(found.values())
    for name, aliases in ALIASES.items():
        if name in found:
            continue
        for alias in aliases:
            key = header_key(alias)
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
class BadCell(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def cell_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a spreadsheet's 1001.0 is the id 1001
    return str(value).strip()


def money(value: Any, label: str) -> Decimal:
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))  # the shortest text of the float: what the cell shows
    text = MONEY_MARKS.sub("", str(value))
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise BadCell("invalid_amount", f"{label} {value!r} is not an amount") from None
    if not amount.is_finite():
        raise BadCell("invalid_amount", f"{label} {value!r} is not an amount")
    return amount


def quantity(value: Any, label: str) -> int:
    if isinstance(value, bool):
        raise BadCell("invalid_quantity", f"{label} {value!r} is not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d{1,9}", text):
        return int(text)
    raise BadCell("invalid_quantity", f"{label} {value!r} is not a whole number")


def timestamp(value: Any, label: str, zone: tzinfo) -> datetime:
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
    raise BadCell("invalid_date", f"{label} {value!r} is not a date and time (2026-11-11 10:30)")


def status_of(value: str) -> str:
    status = STATUS_WORDS.get(value.strip().lower()) or STATUS_WORDS.get(value.strip())
    if status is None:
        raise BadCell(
            "unknown_status",
            f"status {value!r} is not one orderbus knows ({', '.join(sorted(set(STATUS_WORDS)))})",
        )
    return status


def word_of(table: dict[str, str], value: str, what: str, reason: str) -> str:
    """The canonical word for a cell (an after-sale's kind or status)."""
    found = table.get(value.strip().lower()) or table.get(value.strip())
    if found is None:
        known = ", ".join(sorted(set(table)))
        raise BadCell(reason, f"{what} {value!r} is not one orderbus knows ({known})")
    return found


class Columns:
    """The file's header located against the mapping: each row's cell for a
    field (the mapping's default when empty), and the column's name for a
    person."""

    def __init__(self, header: list[str], mapping: ColumnMapping) -> None:
        self.header = header
        self.mapping = mapping
        self.located = locate_columns(header, mapping)

    def cell(self, cells: list[Any], name: str) -> str | Any:
        index = self.located.get(name)
        value = cells[index] if index is not None and index < len(cells) else ""
        if (value is None or str(value).strip() == "") and name in self.mapping.defaults:
            return self.mapping.defaults[name]
        return value

    def label(self, name: str) -> str:
        index = self.located.get(name)
        return f"{self.header[index]!r}" if index is not None else name
