"""A person's decision on an order held as a suspected duplicate.

``release``: not a duplicate after all. The order's current revision goes to
the systems now, as any accepted change does: one outbox row per target, in
the same transaction as the decision (the relay publishes them).
``reject``: it is a duplicate. Nothing of it is ever sent; later changes to it
are recorded and held too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, select, update

from canonical.envelope import Envelope, utcnow
from canonical.order import OrderStatus
from router.database import insert_all_absent
from router.deadletters import audit
from router.fanout import targets_for
from router.tables import holds, orders, outbox
from router.topology import Topology, delivery_routing_key


class HoldStateError(Exception):
    """The hold is not open (already released or rejected)."""


def _lock_open(conn: Connection, hold_id: int) -> Row[Any]:
    row = conn.execute(select(holds).where(holds.c.id == hold_id).with_for_update()).first()
    if row is None:
        raise KeyError(hold_id)
    if row.status != "open":
        raise HoldStateError(f"hold {hold_id} is {row.status}, not open")
    return row


def _decide(conn: Connection, hold: Row[Any], status: str, actor: str, note: str | None) -> None:
    now = utcnow()
    conn.execute(
        update(holds)
        .where(holds.c.id == hold.id)
        .values(status=status, decided_by=actor, decided_at=now, note=note)
    )
    conn.execute(update(orders).where(orders.c.id == hold.order_id).values(hold_status=status))


def release(
    conn: Connection, topology: Topology, hold_id: int, actor: str, note: str | None
) -> list[str]:
    """Release a held order; returns the message ids now in the outbox."""
    hold = _lock_open(conn, hold_id)
    order = conn.execute(select(orders).where(orders.c.id == hold.order_id).with_for_update()).one()
    _decide(conn, hold, "released", actor, note)
    cause = Envelope.new(order.channel, message_id=f"hold-{hold.id}-release")
    rows = []
    for target in targets_for(OrderStatus(order.status), None):
        message_id = f"{order.order_number}-v{order.version}-{target}"
        child = cause.caused(
            message_id,
            order_number=order.order_number,
            order_version=order.version,
            target=target,
        )
        rows.append(
            {
                "message_id": message_id,
                "exchange": topology.exchange,
                "routing_key": delivery_routing_key(target),
                "headers": child.headers(),
                "correlation_id": child.correlation_id,
                "body": order.body,
                "created_at": utcnow(),
                "attempts": 0,
            }
        )
    insert_all_absent(conn, outbox, rows)
    audit(
        conn,
        actor,
        "hold.release",
        "hold",
        str(hold_id),
        {"order_number": order.order_number, "note": note, "sent": [r["message_id"] for r in rows]},
    )
    return [str(r["message_id"]) for r in rows]


def reject(conn: Connection, hold_id: int, actor: str, note: str | None) -> None:
    """Confirm a held order as a duplicate: it is never sent."""
    hold = _lock_open(conn, hold_id)
    _decide(conn, hold, "rejected", actor, note)
    audit(
        conn,
        actor,
        "hold.reject",
        "hold",
        str(hold_id),
        {"order_number": hold.order_number, "suspected_of": hold.suspected_of, "note": note},
    )
