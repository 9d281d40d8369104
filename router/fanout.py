"""Fan-out by content: which systems must hear about an accepted change.

Declared as data: a target gets the change when the order's new status is in
``statuses``, or in ``if_previously_reached`` and the order had earlier reached
one of the statuses in ``previous`` (a warehouse need not hear that an order
it never saw was cancelled).
"""

from __future__ import annotations

from dataclasses import dataclass

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
