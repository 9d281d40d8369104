"""The router: one input message in, one database transaction out.

For each delivery from the router queue it parses and validates the order,
classifies it against the ``orders`` table, and commits together: the
tracking record (``arrivals``, keyed by message id), the order's state, and
one outbox row per target. The bus acks the input only after this returns,
so a crash anywhere leaves either nothing (the message is redelivered) or
everything (the redelivery finds its arrival and has no second effect).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from canonical.envelope import Envelope, utcnow
from canonical.errors import TransientError
from canonical.order import CanonicalOrder, OrderStatus
from canonical.validation import validate
from infra.crashpoints import crash_point
from infra.database import prefer_key_lookups, translate_db_errors
from infra.messages import Delivery, parse_delivery
from infra.tables import arrivals, holds, orders, outbox
from infra.topology import Topology, delivery_routing_key
from router.approval import HoldRules, customer_key
from router.dedup import Known, Outcome, classify, order_number
from router.fanout import Fanout
from router.suspicion import Suspicion, fingerprint, within

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouteResult:
    outcome: Outcome | None  # None: this message was processed before
    order_number: str | None
    targets: tuple[str, ...] = ()


class RouterService:
    def __init__(
        self,
        engine: Engine,
        topology: Topology,
        on_commit: Callable[[], None] | None = None,
        suspicion: Suspicion | None = None,
        hold_rules: HoldRules | None = None,
        fanout: Fanout | None = None,
    ) -> None:
        self.engine = engine
        self.topology = topology
        self.on_commit = on_commit  # e.g. wake the outbox relay
        self.suspicion = suspicion or Suspicion()
        self.hold_rules = hold_rules or HoldRules()
        self.fanout = fanout or Fanout()

    def handle(self, delivery: Delivery) -> None:
        """Handle one delivery. Raises PermanentError (dead letter) or a transient error."""
        error = self.handle_batch([delivery])[0]
        if error is not None:
            raise error

    def handle_batch(self, deliveries: list[Delivery]) -> list[BaseException | None]:
        """Bus batch handler: every valid order of the batch in one transaction.

        Each delivery's result is None (routed: ack it) or the PermanentError
        that makes it a dead letter. A transient error (the database is down)
        is raised for the whole batch, which is then retried as a whole.
        """
        results: list[BaseException | None] = [None] * len(deliveries)
        valid: list[tuple[int, Envelope, CanonicalOrder]] = []
        for index, delivery in enumerate(deliveries):
            try:
                envelope, order = parse_delivery(delivery)
                validate(order)
            except Exception as exc:  # permanent: dead letter; a bug: requeued alone
                results[index] = exc
                continue
            valid.append((index, envelope, order))
        if valid:
            try:
                self.route_many([(envelope, order) for _, envelope, order in valid])
            except TransientError:
                raise
            except Exception as exc:
                if len(valid) == 1:
                    results[valid[0][0]] = exc
                else:
                    # Something in the batch breaks it: route one at a time, so
                    # only the culprit fails and its neighbours go through.
                    log.warning("router: batch of %d failed (%r); one at a time", len(valid), exc)
                    for index, envelope, order in valid:
                        try:
                            self.route(envelope, order)
                        except TransientError:
                            raise
                        except Exception as single:
                            results[index] = single
            if self.on_commit is not None:
                self.on_commit()
        crash_point("router.after_commit")
        return results

    def route(self, envelope: Envelope, order: CanonicalOrder) -> RouteResult:
        return self.route_many([(envelope, order)])[0]

    def route_many(self, items: list[tuple[Envelope, CanonicalOrder]]) -> list[RouteResult]:
        """Classify and record a batch of arrivals in one transaction."""
        # A concurrent router may insert the same order (or arrival) between our
        # read and our write: the unique constraint stops it, the transaction
        # rolls back, and the next pass sees the winner's row.
        for attempt in range(3):
            try:
                with translate_db_errors(), self.engine.begin() as conn:
                    routing = _BatchRouting(
                        conn, self.topology, self.suspicion, self.hold_rules, self.fanout
                    )
                    return routing.route(items)
            except IntegrityError:
                if attempt == 2:
                    raise
                log.info("router: lost a race on a batch of %d, retrying", len(items))
        raise AssertionError("unreachable")


def lock_known_orders(keys: Iterable[tuple[str, str, str]]) -> Select[Any]:
    """The orders with these business keys, locked in key order (so two routers
    never deadlock), found by their order numbers.

    An order number is a function of the business key, and its unique index
    is one column: each number is one index probe, whatever the planner knows.
    (Asked by the three-column key, PostgreSQL without statistics scanned every
    order of the channel and shop for each batch: it grew with the table.)
    """
    numbers = sorted({order_number(*key) for key in keys})
    return (
        select(orders)
        .where(orders.c.order_number.in_(numbers))
        .order_by(orders.c.channel, orders.c.shop, orders.c.external_id)
        .with_for_update()
    )


@dataclass(frozen=True)
class _Lookalike:
    """An order a new one may repeat: stored, or new earlier in this batch."""

    number: str
    channel: str
    placed_at: datetime | None


@dataclass
class _State:
    """An order as this transaction sees it: loaded, or created or changed by
    an earlier arrival of the same batch."""

    id: int | None
    number: str
    status: OrderStatus
    precedence: tuple[int, int, str]
    content_hash: str
    version: int
    values: dict[str, object] | None = None  # to write: the latest accepted revision
    is_new: bool = False
    arrival_rows: list[dict[str, object]] = field(default_factory=list)
    hold_status: str | None = None  # open or rejected: nothing of it goes out
    new_hold: dict[str, object] | None = None  # to write: the hold this batch opened
    customer_key: str | None = None  # a new order's customer (router/approval.py)
    fingerprint: str | None = None
    placed_at: datetime | None = None

    @property
    def held(self) -> bool:
        return self.hold_status in ("open", "rejected")


class _BatchRouting:
    """One transaction's worth of routing: a few statements for the whole batch
    (read arrivals, lock orders, write orders, outbox and arrivals), with the
    arrivals classified in order in between, as if one at a time."""

    def __init__(
        self,
        conn: Connection,
        topology: Topology,
        suspicion: Suspicion,
        hold_rules: HoldRules | None = None,
        fanout: Fanout | None = None,
    ) -> None:
        self.conn = conn
        self.topology = topology
        self.suspicion = suspicion
        self.hold_rules = hold_rules or HoldRules()
        self.fanout = fanout or Fanout()
        self.now = utcnow()
        self.lookalikes: dict[str, list[_Lookalike]] = {}  # fingerprint -> orders having it
        self.prints: dict[tuple[str, str, str], str] = {}  # a new order's fingerprint
        self.known_customers: set[str] = set()  # customer keys with an order already

    def route(self, items: list[tuple[Envelope, CanonicalOrder]]) -> list[RouteResult]:
        conn = self.conn
        prefer_key_lookups(conn)
        ids = [envelope.message_id for envelope, _ in items]
        seen = set(
            conn.scalars(select(arrivals.c.message_id).where(arrivals.c.message_id.in_(ids)))
        )
        keys = {order.business_key for _, order in items}
        rows = [
            row
            for row in conn.execute(lock_known_orders(keys))
            if (row.channel, row.shop, row.external_id) in keys  # the number is the key's hash
        ]
        states: dict[tuple[str, str, str], _State] = {
            (row.channel, row.shop, row.external_id): _State(
                id=row.id,
                number=row.order_number,
                status=OrderStatus(row.status),
                precedence=(row.status_rank, row.source_version, row.source_updated_at),
                content_hash=row.content_hash,
                version=row.version,
                hold_status=row.hold_status,
            )
            for row in rows
        }
        if self.suspicion.enabled:
            for _, order in items:  # each new order's first arrival in the batch
                key = order.business_key
                if key not in states and key not in self.prints:
                    fp = fingerprint(order, self.suspicion.by)
                    if fp is not None:
                        self.prints[key] = fp
            self._load_lookalikes()
        if self.hold_rules.first_order:
            wanted = {customer_key(o) for _, o in items if o.business_key not in states}
            wanted.discard(None)
            if wanted:
                self.known_customers = set(
                    conn.scalars(
                        select(orders.c.customer_key).where(orders.c.customer_key.in_(wanted))
                    )
                )
        results: list[RouteResult] = []
        outbox_rows: list[dict[str, object]] = []
        for envelope, order in items:
            if envelope.message_id in seen:
                log.info("router: message %s was processed before", envelope.message_id)
                results.append(RouteResult(None, None))
                continue
            seen.add(envelope.message_id)
            results.append(self._classify(envelope, order, states, outbox_rows))
        self._write(states, outbox_rows)
        return results

    def _load_lookalikes(self) -> None:
        """Stored orders that share a fingerprint with one of the batch's new ones.

        On PostgreSQL each fingerprint is locked for the transaction first
        (an advisory lock, in sorted order): two routers taking the two halves
        of a duplicate pair at once see each other's order, not neither.
        """
        prints = sorted(set(self.prints.values()))
        if not prints:
            return
        if self.conn.dialect.name == "postgresql":
            self.conn.execute(
                text(
                    "SELECT count(pg_advisory_xact_lock(hashtextextended(f, 20261125))) "
                    "FROM unnest(CAST(:prints AS text[])) AS f"
                ),
                {"prints": prints},
            )
        c = orders.c
        rows = self.conn.execute(
            select(c.order_number, c.channel, c.fingerprint, c.placed_at).where(
                c.fingerprint.in_(prints)
            )
        )
        for row in rows:
            placed = row.placed_at
            if placed is not None and placed.tzinfo is None:  # SQLite keeps no offset
                placed = placed.replace(tzinfo=UTC)
            self.lookalikes.setdefault(row.fingerprint, []).append(
                _Lookalike(row.order_number, row.channel, placed)
            )

    def _suspected(self, order: CanonicalOrder, fp: str | None) -> _Lookalike | None:
        """The order this new one seems to repeat, if any."""
        if fp is None:
            return None
        for other in self.lookalikes.get(fp, []):
            if self.suspicion.across_channels_only and other.channel == order.channel:
                continue
            if within(self.suspicion.window, other.placed_at, order.placed_at):
                return other
        return None

    def _classify(
        self,
        envelope: Envelope,
        order: CanonicalOrder,
        states: dict[tuple[str, str, str], _State],
        outbox_rows: list[dict[str, object]],
    ) -> RouteResult:
        state = states.get(order.business_key)
        known = Known(state.precedence, state.content_hash) if state else None
        # The hash ignores the order number, so the accepted copy has the same.
        digest = order.content_hash()
        outcome, detail = classify(known, order, digest)
        number = state.number if state else order_number(*order.business_key)
        accepted = order.model_copy(update={"order_number": number})
        previous = state.status if state else None
        changed = outcome in (Outcome.NEW, Outcome.UPDATE)
        version = (state.version if state else 0) + (1 if changed else 0)
        hold_note = ""
        if state is None:
            fp = self.prints.get(order.business_key)
            state = states[order.business_key] = _State(
                id=None,
                number=number,
                status=accepted.status,
                precedence=accepted.precedence(),
                content_hash=digest,
                version=version,
                is_new=True,
                fingerprint=fp,
                placed_at=order.placed_at,
            )
            twin = self._suspected(order, fp)
            reasons, approvals = self.hold_rules.check(order)
            customer = customer_key(order)
            state.customer_key = customer
            if self.hold_rules.first_order and customer and customer not in self.known_customers:
                reasons.append("first order from a new customer")
                approvals = max(approvals, 1)
            if customer:
                self.known_customers.add(customer)  # their next order in this batch is not
            if twin is not None:
                gap = order.placed_at - (twin.placed_at or order.placed_at)
                minutes = abs(gap.total_seconds()) / 60
                reasons.insert(
                    0,
                    f"suspected duplicate of {twin.number} from channel {twin.channel}: same "
                    f"{self.suspicion.describe()}, placed {minutes:.0f} min apart",
                )
            if reasons:
                reason = "; ".join(reasons)
                state.hold_status = "open"
                state.new_hold = {
                    "order_number": number,
                    "suspected_of": twin.number if twin is not None else None,
                    "reason": reason,
                    "status": "open",
                    "created_at": self.now,
                    "approvals_needed": max(approvals, 1),
                }
                hold_note = f"; held: {reason}"
            if fp is not None:
                self.lookalikes.setdefault(fp, []).append(
                    _Lookalike(number, order.channel, order.placed_at)
                )
        elif state.held:
            hold_note = f"; held ({state.hold_status}): not sent until a person releases it"
        targets: list[str] = []
        if changed:
            body = accepted.to_wire().decode("utf-8")
            state.status = accepted.status
            state.precedence = accepted.precedence()
            state.content_hash = digest
            state.version = version
            state.values = state_values(accepted, body, digest, version, self.now)
            targets = [] if state.held else self.fanout.targets(accepted, previous)
            for target in targets:
                # Deterministic id: the same change to the same target always
                # has the same id, which is the consumers' inbox key.
                message_id = f"{number}-v{version}-{target}"
                child = envelope.caused(
                    message_id, order_number=number, order_version=version, target=target
                )
                outbox_rows.append(
                    {
                        "message_id": message_id,
                        "exchange": self.topology.exchange,
                        "routing_key": delivery_routing_key(target),
                        "headers": child.headers(),
                        "correlation_id": child.correlation_id,
                        "body": body,
                        "created_at": self.now,
                        "attempts": 0,
                    }
                )
        if state.held and changed:
            outcome = Outcome.HELD
        state.arrival_rows.append(
            {
                "message_id": envelope.message_id,
                "channel": order.channel,
                "external_id": order.external_id,
                "outcome": outcome.value,
                "detail": detail + hold_note,
                "order_version": version,
                "correlation_id": envelope.correlation_id,
                "received_at": envelope.received_at,
                "processed_at": self.now,
            }
        )
        log.info(
            "router: %s %s/%s -> %s (%s) targets=%s",
            outcome.value,
            order.channel,
            order.external_id,
            number,
            detail,
            ",".join(targets) or "-",
        )
        return RouteResult(outcome, number, tuple(targets))

    def _write(
        self, states: dict[tuple[str, str, str], _State], outbox_rows: list[dict[str, object]]
    ) -> None:
        conn = self.conn
        new = [(key, s) for key, s in sorted(states.items()) if s.is_new and s.values]
        if new:
            inserted = conn.execute(
                insert(orders).returning(orders.c.id, sort_by_parameter_order=True),
                [
                    {
                        "order_number": s.number,
                        "channel": key[0],
                        "shop": key[1],
                        "external_id": key[2],
                        "created_at": self.now,
                        "fingerprint": s.fingerprint,
                        "placed_at": s.placed_at,
                        "hold_status": s.hold_status,
                        "customer_key": s.customer_key,
                        **(s.values or {}),
                    }
                    for key, s in new
                ],
            ).all()
            for (_, s), row in zip(new, inserted, strict=True):
                s.id = row.id
            held = [{"order_id": s.id, **s.new_hold} for _, s in new if s.new_hold]
            if held:
                conn.execute(insert(holds), held)
        changed = [s for s in states.values() if not s.is_new and s.values]
        if changed:
            conn.execute(
                update(orders).where(orders.c.id == bindparam("order_id")),
                [{"order_id": s.id, **(s.values or {})} for s in changed],
            )
        if outbox_rows:
            conn.execute(insert(outbox), outbox_rows)
        arrival_rows = [
            {"order_id": s.id, **row} for s in states.values() for row in s.arrival_rows
        ]
        if arrival_rows:
            conn.execute(insert(arrivals), arrival_rows)


def state_values(
    order: CanonicalOrder, body: str, digest: str, version: int, now: datetime
) -> dict[str, object]:
    rank, source_version, stamp = order.precedence()
    return {
        "status": order.status.value,
        "status_rank": rank,
        "source_version": source_version,
        "source_updated_at": stamp,
        "content_hash": digest,
        "version": version,
        "body": body,
        "updated_at": now,
    }
