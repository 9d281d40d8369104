"""A person's decision on a held order (a suspected duplicate, an order the
approval rules hold: router/approval.py, or one held for a SKU's mapping:
router/mapping_gate.py).

``release``: approved. The order's current revision goes to the systems now,
as any accepted change does: one outbox row per target, in the same
transaction as the decision (the relay publishes them). A hold that needs two
approvals records the first approver and waits for a second, different person.
``reject``: not to be sent. The order is cancelled: no warehouse or finance
system ever hears of it, and the notification system is told, once; later
changes from the channel are older than the cancellation and go nowhere.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, select, update

from canonical.envelope import Envelope, utcnow
from canonical.mapping import MappingSet
from canonical.order import CanonicalOrder, OrderStatus
from infra.audit import audit
from infra.database import insert_all_absent
from infra.tables import holds, orders, outbox
from infra.topology import Topology
from router.fanout import Fanout
from router.mapping_gate import CAUSE as UNMAPPED
from router.order_state import state_values
from router.outbox import delivery_row


class HoldStateError(Exception):
    """The hold is not open (already released or rejected), or the same person
    approves it twice."""


class StillUnmapped(HoldStateError):
    """An order held for its mapping, released while a SKU of it is unmapped."""

    def __init__(self, skus: list[str]) -> None:
        super().__init__(
            f"still no mapping for platform SKU {', '.join(skus)}: add it on the mapping "
            "page first (or reject the order)"
        )
        self.skus = skus


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


def _first_of_two(conn: Connection, hold: Row[Any], actor: str, note: str | None) -> bool:
    """For a hold that needs two approvals: True when this is the first one
    (recorded, nothing sent yet); HoldStateError when the same person
    approves twice."""
    if hold.approved_by is None:
        conn.execute(update(holds).where(holds.c.id == hold.id).values(approved_by=actor))
        audit(
            conn,
            actor,
            "hold.approve",
            "hold",
            str(hold.id),
            {
                "order_number": hold.order_number,
                "note": note,
                "before": {"approvals": 0},
                "after": {"approvals": 1, "needed": hold.approvals_needed},
            },
        )
        return True
    if hold.approved_by == actor:
        raise HoldStateError(
            f"hold {hold.id} was approved by {actor} already: a second person must approve"
        )
    return False


def release(
    conn: Connection,
    topology: Topology,
    hold_id: int,
    actor: str,
    note: str | None,
    fanout: Fanout | None = None,
    mappings: MappingSet | None = None,
) -> list[str]:
    """Release a held order; returns the message ids now in the outbox (none
    when this was the first of two approvals). An order held for its mapping
    is released only when ``mappings`` (the tables now) map every SKU of it:
    sent without, it would only become dead letters."""
    hold = _lock_open(conn, hold_id)
    if hold.approvals_needed >= 2 and _first_of_two(conn, hold, actor, note):
        return []
    order = conn.execute(select(orders).where(orders.c.id == hold.order_id).with_for_update()).one()
    # The revision held, as it is now (a shipment reported meanwhile goes back too).
    held = CanonicalOrder.from_wire(order.body.encode("utf-8"))
    if hold.cause == UNMAPPED and mappings is not None:
        missing = sorted(set(mappings.unmapped(held)))
        if missing:
            raise StillUnmapped(missing)
    _decide(conn, hold, "released", actor, note)
    cause = Envelope.new(order.channel, message_id=f"hold-{hold.id}-release")
    now = utcnow()
    number, version, body = order.order_number, order.version, order.body
    rows = [
        delivery_row(topology, cause, number, version, t, body, now, order_id=order.id)
        for t in (fanout or Fanout()).targets(held, None)
    ]
    insert_all_absent(conn, outbox, rows)
    audit(
        conn,
        actor,
        "hold.release",
        "hold",
        str(hold_id),
        {
            "order_number": order.order_number,
            "note": note,
            "first_approval": hold.approved_by,
            "before": {"status": "open"},
            "after": {"status": "released"},
            "sent": [r["message_id"] for r in rows],
        },
    )
    return [str(r["message_id"]) for r in rows]


def reject(
    conn: Connection,
    topology: Topology,
    hold_id: int,
    actor: str,
    note: str | None,
    fanout: Fanout | None = None,
) -> list[str]:
    """Refuse a held order: it is cancelled, no warehouse or finance system ever
    hears of it, and the notification system is told (the customer learns the
    order will not ship); the note is the reason. The message ids sent."""
    hold = _lock_open(conn, hold_id)
    row = conn.execute(select(orders).where(orders.c.id == hold.order_id).with_for_update()).one()
    _decide(conn, hold, "rejected", actor, note)
    cancelled = CanonicalOrder.from_wire(row.body.encode("utf-8")).model_copy(
        update={"status": OrderStatus.CANCELLED}
    )
    version = row.version + 1
    body = cancelled.to_wire().decode("utf-8")
    now = utcnow()
    conn.execute(
        update(orders)
        .where(orders.c.id == row.id)
        .values(**state_values(cancelled, body, cancelled.content_hash(), version, now))
    )
    cause = Envelope.new(row.channel, message_id=f"hold-{hold.id}-reject")
    # the notification system (and the customer, when told of cancellations)
    rows = [
        delivery_row(topology, cause, row.order_number, version, t, body, now, order_id=row.id)
        for t in (fanout or Fanout()).targets(cancelled, None)
    ]
    insert_all_absent(conn, outbox, rows)
    audit(
        conn,
        actor,
        "hold.reject",
        "hold",
        str(hold_id),
        {
            "order_number": hold.order_number,
            "suspected_of": hold.suspected_of,
            "note": note,
            "before": {"status": "open", "order_status": row.status},
            "after": {"status": "rejected", "order_status": "cancelled"},
            "sent": [r["message_id"] for r in rows],
        },
    )
    return [str(r["message_id"]) for r in rows]
