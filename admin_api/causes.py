"""Dead letters grouped by business cause, so a person fixes a cause once and
retries its whole group: a SKU the ERP does not know, a bad address, the ERP
refusing the order, an expired token, an endpoint that is down...

The cause is read from what each dead letter already records (its reason and
detail), so it needs no new column and applies to old dead letters as well.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from infra.audit import audit
from infra.tables import dead_letter_investigations, dead_letters

CAUSES = {
    "sku_not_mapped": "a SKU the receiving system does not know",
    "bad_address": "an address that is missing or wrong",
    "token_expired": "credentials refused or expired",
    "endpoint_down": "the receiving system or the platform did not answer",
    "erp_rejected": "the receiving system refused the order",
    "invalid_order": "the order broke a business rule (total, phone, currency...)",
    "unreadable_input": "a message that is not a readable order",
    "platform_refused": "the platform refused the request (no such order, no permission)",
    "other": "anything else",
}
SKU = re.compile(r"\bsku\b|商品编码|物料", re.I)
ADDRESS = re.compile(r"address|province|city|street|district|postal|地址", re.I)
TOKEN = re.compile(r"token|unauthori[sz]ed|\b401\b|expired|过期", re.I)
# what our adapters say when a system names one of our fields: "...; field
# items[].sku (U8 inventorycode)" or "(field items[].sku, Kingdee FMaterialId)"
OUR_FIELD = re.compile(r"\bfield ((?:items\[\]\.|shipping_address\.|customer\.)?[a-z_]+)")
# what our adapters say when a system refuses the credentials, and the status
# a plain HTTP system answered (targets/delivery.py: "rejected the order with 401")
CREDENTIALS = re.compile(
    r"token (?:was )?refused|login failed|check the credentials|no token|\bwith 40[13]\b"
)
DOWN = frozenset(
    {"endpoint_unavailable", "endpoint_timeout", "broker_unavailable", "database_unavailable"}
)
UNREADABLE = frozenset(
    {"malformed_message", "malformed_json", "schema_mismatch", "invalid_encoding"}
)


def cause_of(reason: str, detail: str | None) -> str:
    """The business cause, from the dead letter's reason first (structured:
    what raised it), then the fields our code names in the detail; only a
    system's own refusal, which is all the system said, is read by its words.
    A validation failure is never a mapping problem, whatever its text says
    about a SKU: its fields say what was wrong."""
    text = detail or ""
    if reason in DOWN:
        return "endpoint_down"
    if reason == "sku_not_mapped":
        return "sku_not_mapped"
    if reason in UNREADABLE:
        return "unreadable_input"
    if reason == "validation_failed":
        fields = [part.split(":", 1)[0].strip() for part in text.split("; ")]
        address = any(f.startswith("shipping_address") for f in fields)
        return "bad_address" if address else "invalid_order"
    if reason == "delivery_rejected":
        return _refusal_cause(text, "erp_rejected")
    if reason == "platform_refused":
        return _refusal_cause(text, "platform_refused")
    return "other"


def _refusal_cause(text: str, otherwise: str) -> str:
    """A system's refusal: the field our adapter found it naming, else the
    credentials, else the system's own words."""
    named = OUR_FIELD.findall(text)
    if any(f == "items[].sku" or f == "sku" for f in named):
        return "sku_not_mapped"
    if any(f.startswith("shipping_address") for f in named):
        return "bad_address"
    if CREDENTIALS.search(text) or TOKEN.search(text):
        return "token_expired"
    if named:
        return otherwise  # the system named a field of ours that is neither
    if SKU.search(text):
        return "sku_not_mapped"
    if ADDRESS.search(text):
        return "bad_address"
    return otherwise


def open_ids_by_cause(conn: Connection, cause: str) -> list[int]:
    c = dead_letters.c
    rows = conn.execute(select(c.id, c.reason, c.detail).where(c.status == "open").order_by(c.id))
    return [r.id for r in rows if cause_of(r.reason, r.detail) == cause]


def page_of_cause(
    conn: Connection, conditions: list[Any], cause: str, limit: int, offset: int
) -> tuple[int, list[int]]:
    """How many dead letters matching ``conditions`` have ``cause``, and the
    ids on the page asked for, newest first: by the kept cause, and rows from
    before it was kept classified here. Only ids, reasons and details are
    read, in batches: memory holds one page, however many match."""
    c = dead_letters.c
    query = (
        select(c.id, c.reason, c.detail, c.cause)
        .where(*conditions, (c.cause == cause) | c.cause.is_(None))
        .order_by(c.id.desc())
    )
    total, ids = 0, []
    for row in conn.execution_options(yield_per=1000).execute(query):
        if (row.cause or cause_of(row.reason, row.detail)) != cause:
            continue
        if offset <= total < offset + limit:
            ids.append(row.id)
        total += 1
    return total, ids


def groups(conn: Connection, status: str | None = "open") -> list[dict[str, Any]]:
    """Each cause with its count and latest failure: counted by PostgreSQL or
    SQLite from the kept causes; rows from before they were kept classified
    here."""
    c = dead_letters.c
    where = [c.status == status] if status else []
    counts: Counter[str] = Counter()
    newest: dict[str, datetime] = {}

    def seen(cause: str, count: int, at: datetime) -> None:
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        counts[cause] += count
        newest[cause] = max(newest.get(cause, at), at)

    for cause, count, at in conn.execute(
        select(c.cause, func.count(), func.max(c.last_failed_at))
        .where(*where, c.cause.is_not(None))
        .group_by(c.cause)
    ):
        seen(str(cause), int(count), at)
    for row in conn.execute(
        select(c.reason, c.detail, c.last_failed_at).where(*where, c.cause.is_(None))
    ):
        seen(cause_of(row.reason, row.detail), 1, row.last_failed_at)
    watched = {r.cause: r for r in conn.execute(select(dead_letter_investigations))}
    result = []
    for cause, count in counts.most_common():
        look = watched.get(cause)
        result.append(
            {
                "cause": cause,
                "meaning": CAUSES[cause],
                "count": count,
                "last_failed_at": newest[cause].isoformat(),
                "investigating": None
                if look is None
                else {"owner": look.owner, "note": look.note, "since": look.since.isoformat()},
            }
        )
    return result


def investigate(conn: Connection, cause: str, owner: str, note: str | None, by: str) -> None:
    before = conn.execute(
        select(dead_letter_investigations).where(dead_letter_investigations.c.cause == cause)
    ).first()
    conn.execute(
        delete(dead_letter_investigations).where(dead_letter_investigations.c.cause == cause)
    )
    conn.execute(
        insert(dead_letter_investigations).values(
            cause=cause, owner=owner, note=note, since=datetime.now(UTC), set_by=by
        )
    )
    audit(
        conn,
        by,
        "dead_letter_cause.investigate",
        "dead_letter_cause",
        cause,
        {
            "before": None if before is None else {"owner": before.owner},
            "after": {"owner": owner, "note": note},
        },
    )


def close_investigation(conn: Connection, cause: str, by: str) -> bool:
    gone = conn.execute(
        delete(dead_letter_investigations).where(dead_letter_investigations.c.cause == cause)
    ).rowcount
    if gone:
        audit(
            conn,
            by,
            "dead_letter_cause.close",
            "dead_letter_cause",
            cause,
            {"before": {"investigating": True}, "after": {"investigating": False}},
        )
    return bool(gone)
