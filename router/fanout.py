"""Fan-out by content: which systems must hear about an accepted change.

Declared as data: a target gets the change when the order's new status is in
``statuses``, or in ``if_previously_reached`` and the order had earlier reached
one of the statuses in ``previous`` (a warehouse need not hear that an order
it never saw was cancelled).
"""

from __future__ import annotations

from dataclasses import dataclass

from canonical.order import CanonicalOrder
from canonical.order import OrderStatus as S


@dataclass(frozen=True)
class Route:
    target: str
    statuses: frozenset[S]
    if_previously_reached: frozenset[S] = frozenset()
    previous: frozenset[S] = frozenset()


ROUTES: tuple[Route, ...] = (
    Route(
        "warehouse",
        statuses=frozenset({S.PAID}),
        if_previously_reached=frozenset({S.CANCELLED, S.REFUNDED}),
        previous=frozenset({S.PAID, S.SHIPPED, S.DELIVERED}),
    ),
    Route(
        "finance",
        statuses=frozenset({S.PAID, S.SHIPPED, S.DELIVERED, S.REFUNDED}),
        if_previously_reached=frozenset({S.CANCELLED}),
        previous=frozenset({S.PAID, S.SHIPPED, S.DELIVERED}),
    ),
    Route("notification", statuses=frozenset(S)),
)


def targets_for(status: S, previous: S | None, routes: tuple[Route, ...] = ROUTES) -> list[str]:
    targets: list[str] = []
    for route in routes:
        if status in route.statuses or (
            status in route.if_previously_reached and previous in route.previous
        ):
            if route.target not in targets:
                targets.append(route.target)
    return targets


@dataclass(frozen=True)
class Fanout:
    """The routes in force: the three systems', and the optional targets'.

    - ``channel`` (write-back, ORDERBUS_WRITEBACK) hears of a shipment the
      warehouse reported, for channels that have write-back configured;
    - ``customer`` (ORDERBUS_NOTIFY) hears of the statuses it has events for.
    """

    routes: tuple[Route, ...] = ROUTES
    writeback_channels: frozenset[str] = frozenset()

    @classmethod
    def configured(
        cls, writeback_channels: frozenset[str], notify_events: frozenset[str] | None
    ) -> Fanout:
        routes = list(ROUTES)
        if writeback_channels:
            routes.append(Route("channel", statuses=frozenset({S.SHIPPED})))
        if notify_events is not None:
            statuses = frozenset(s for s in S if s.value in notify_events)
            routes.append(Route("customer", statuses=statuses))
        return cls(tuple(routes), writeback_channels)

    def targets(self, order: CanonicalOrder, previous: S | None) -> list[str]:
        """Who hears of this revision of ``order`` (its status, after ``previous``)."""
        targets = targets_for(order.status, previous, self.routes)
        writes_back = order.shipment is not None and order.channel in self.writeback_channels
        if "channel" in targets and not writes_back:
            targets.remove("channel")
        return targets
