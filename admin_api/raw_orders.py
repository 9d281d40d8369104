"""The platform's own order beside ours: the webhook bodies that became an
order's revisions, and the dry run of reading them again with the connectors
as they are now (what would change, before anything is sent)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, select

from canonical.errors import SkuNotMapped
from canonical.mapping import MappingSet, map_order
from canonical.order import CanonicalOrder
from infra import raw_payloads
from infra.stored_bodies import decode_body
from infra.tables import arrivals, orders
from infra.tables import raw_payloads as raw_table

Replay = Callable[[str, Mapping[str, Any], bytes], list[CanonicalOrder]]
COMPARED_AWAY = {"order_number", "version", "mapping_version"}


def of_order(conn: Connection, number: str) -> list[dict[str, Any]]:
    """The stored bodies of the arrivals that made this order, oldest first."""
    order_id = conn.scalar(select(orders.c.id).where(orders.c.order_number == number))
    if order_id is None:
        return []
    ids = conn.scalars(select(arrivals.c.message_id).where(arrivals.c.order_id == order_id))
    return raw_payloads.of_messages(conn, ids)


def _differences(before: Any, after: Any, where: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[str] = []
        for key in sorted(set(before) | set(after)):
            if key in COMPARED_AWAY:
                continue
            found += _differences(before.get(key), after.get(key), f"{where}{key}.")
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            d for i, (b, a) in enumerate(zip(before, after, strict=True))
            for d in _differences(b, a, f"{where}{i}.")
        ]  # fmt: skip
    return [] if before == after else [where.rstrip(".")]


def replay_dry(
    conn: Connection,
    replay: Replay,
    channel: str,
    limit: int,
    mapped_for: tuple[MappingSet, str] | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The newest ``limit`` bodies of ``channel`` (after the newest
    ``offset``) read again: per body, the order it made, and the fields that
    would now read differently (or why it can no longer be read); with
    ``mapped_for`` (the mapping tables and a target), also the lines that
    system would receive, or why it would not."""
    c = raw_table.c
    rows = conn.execute(
        select(raw_table, arrivals.c.order_id)
        .join(arrivals, arrivals.c.message_id == c.message_id, isouter=True)
        .where(c.channel == channel)
        .order_by(c.received_at.desc(), c.message_id)
        .limit(limit)
        .offset(offset)
    ).mappings()
    found = []
    for row in rows:
        stored = None
        if row["order_id"] is not None:
            stored = conn.execute(
                select(orders.c.order_number, orders.c.body).where(orders.c.id == row["order_id"])
            ).first()
        entry: dict[str, Any] = {
            "message_id": row["message_id"],
            "order_number": stored.order_number if stored else None,
        }
        try:
            now = replay(channel, row["headers"], decode_body(row["body"], row["body_encoding"]))
        except Exception as exc:  # the connector refuses it now: that is the answer
            found.append({**entry, "readable": False, "why": str(exc)[:500], "changed": []})
            continue
        before = json.loads(stored.body) if stored else {}
        changed = sorted(
            {d for order in now for d in _differences(before, order.model_dump(mode="json"))}
        )
        result = {**entry, "readable": True, "why": "", "changed": changed}
        if mapped_for is not None:
            result["mapped"] = [_mapped_lines(order, *mapped_for) for order in now]
        found.append(result)
    return found


def _mapped_lines(order: CanonicalOrder, tables: MappingSet, target: str) -> dict[str, Any]:
    try:
        mapped = map_order(order, tables, target)
    except SkuNotMapped as exc:
        return {"passes": False, "why": exc.detail, "lines": []}
    lines = [
        {"platform_sku": i.platform_sku, "sku": i.sku, "quantity": i.quantity,
         "unit_price": str(i.unit_price), "discount": str(i.discount)}
        for i in mapped.items
    ]  # fmt: skip
    return {"passes": True, "why": "", "lines": lines}
