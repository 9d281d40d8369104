"""The made-up order a router routes once at start, in a transaction that is
rolled back (:meth:`router.service.RouterService.rehearse`).

After a start the first batches paid for what later ones find ready: the
pool's connection, the statements built and planned, PostgreSQL's caches of
the tables they touch. With orders arriving meanwhile, the first seconds'
deliveries were the slowest of a run. The rehearsal pays for that before the
router takes its first message; nothing of it stays.
"""

from __future__ import annotations

from decimal import Decimal

from canonical.envelope import REHEARSAL_CHANNEL, Envelope, new_message_id, utcnow
from canonical.order import Address, CanonicalOrder, Customer, LineItem, OrderStatus
from infra.messages import Delivery


def rehearsal_order() -> CanonicalOrder:
    """A paid order of one line, valid, unique each call (its external id)."""
    return CanonicalOrder(
        channel=REHEARSAL_CHANNEL,
        external_id=f"rehearsal-{new_message_id()}",
        status=OrderStatus.PAID,
        currency="CNY",
        customer=Customer(name="演练", phone="13800000000"),
        shipping_address=Address(
            country="CN", province="广东省", city="深圳市", district="南山区", street="演练路 1 号"
        ),
        items=[LineItem(sku="REHEARSAL", quantity=1, unit_price=Decimal("1.00"))],
        total=Decimal("1.00"),
        placed_at=utcnow(),
    )


def rehearsal_delivery(queue: str) -> Delivery:
    """The made-up order as the router queue would deliver it."""
    order = rehearsal_order()
    envelope = Envelope.new(order.channel)
    return Delivery(
        queue=queue,
        body=order.to_wire(),
        message_id=envelope.message_id,
        correlation_id=envelope.correlation_id,
        headers=envelope.headers(),
        exchange="",
        routing_key="",
        redelivered=False,
        content_type="application/json",
        deliveries=1,
    )
