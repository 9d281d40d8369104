"""One transaction's worth of routing (:class:`BatchRouting`): a few statements
for the whole batch (read arrivals, lock orders, write orders, holds, outbox
and arrivals), with the arrivals decided in order in between, as if one at a
time.

Deciding and writing are apart: :meth:`BatchRouting._decide` only reads and
changes the in-memory :class:`OrderState` of each order (what it becomes,
whether it is held, which targets hear of it); :meth:`BatchRouting._write`
then writes every state, outbox row and arrival of the batch at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select

from canonical.envelope import Envelope, utcnow
from canonical.order import CanonicalOrder, OrderStatus, content_hash_of, wire_of
from canonical.tracking import PARCEL_NOTICE_SUFFIX, ParcelState
from infra.database import KEY_LOOKUPS, RESERVE_IDS, insert_pipelined, pipelined
from infra.logs import about_envelope
from infra.tables import arrivals, holds, orders, outbox
from infra.topology import Topology
from router.aftersales import documents, merged, with_status_after_sale
from router.approval import HoldRules, customer_key
from router.dedup import Known, Outcome, classify, order_number
from router.fanout import Fanout
from router.mapping_gate import CAUSE as UNMAPPED
from router.mapping_gate import MappingGate
from router.mapping_gate import reason as unmapped_reason
from router.order_state import (
    BusinessKey,
    HoldDecision,
    Lookalike,
    OrderState,
    RouteResult,
    lock_known_orders,
    state_values,
)
from router.outbox import delivery_row, document_row
from router.suspicion import Suspicion, fingerprint, within
from router.tracking import only_tracking_changed

# the latest stored lookalikes of one fingerprint read from each channel
LOOKALIKES_PER_CHANNEL = 20
# PostgreSQL: what a batch reads, in two round trips: the arrivals seen and the
# known orders first (_read_pg, with KNOWN_ORDERS), then what its new orders need
# (_read_for_new_orders: LOCK_PRINTS, LOOKALIKES, KNOWN_CUSTOMERS, their ids).
ARRIVED = "SELECT message_id FROM arrivals WHERE message_id = ANY(%(ids)s)"
LOCK_PRINTS = (
    "SELECT count(pg_advisory_xact_lock(hashtextextended(f, 20261125)))"
    " FROM unnest(%(prints)s::text[]) AS f"
)
KNOWN_CUSTOMERS = (  # one index probe a customer, however many orders each has had
    "SELECT k FROM unnest(%(keys)s::text[]) AS k"
    " WHERE EXISTS (SELECT 1 FROM orders WHERE customer_key = k)"
)
LOOKALIKES = (
    "WITH RECURSIVE seen(fingerprint, channel) AS ("
    " SELECT f, (SELECT min(channel) FROM orders WHERE fingerprint = f)"
    " FROM unnest(%(prints)s::text[]) AS f"
    " UNION ALL"
    " SELECT s.fingerprint, (SELECT min(channel) FROM orders"
    "  WHERE fingerprint = s.fingerprint AND channel > s.channel)"
    " FROM seen AS s WHERE s.channel IS NOT NULL)"
    " SELECT s.fingerprint, s.channel, o.order_number, o.placed_at"
    " FROM seen AS s CROSS JOIN LATERAL ("
    "  SELECT order_number, placed_at FROM orders"
    "  WHERE fingerprint = s.fingerprint AND channel = s.channel"
    "  AND placed_at BETWEEN %(since)s AND %(until)s"
    "  ORDER BY placed_at DESC LIMIT %(cap)s) AS o"
)
KNOWN_ORDERS = (  # as router.order_state.lock_known_orders, the columns a state needs
    "SELECT id, order_number, channel, shop, external_id, status, status_rank, source_version,"
    " source_updated_at, content_hash, version, hold_status, body, parcel_noticed_at"
    " FROM orders WHERE order_number = ANY(%(numbers)s)"
    " ORDER BY channel, shop, external_id FOR UPDATE"
)

log = logging.getLogger(__name__)
AFTER_SALE_STATUSES = frozenset({OrderStatus.CANCELLED, OrderStatus.REFUNDED})


class BatchRouting:
    def __init__(
        self,
        conn: Connection,
        topology: Topology,
        suspicion: Suspicion,
        hold_rules: HoldRules | None = None,
        fanout: Fanout | None = None,
        mapping_gate: MappingGate | None = None,
        *,
        rehearsal: bool = False,
    ) -> None:
        self.conn = conn
        # a rehearsal (RouterService.rehearse): the last round trip does not
        # commit (the caller rolls the transaction back) and no decision is logged
        self.rehearsal = rehearsal
        self.topology = topology
        self.suspicion = suspicion
        self.hold_rules = hold_rules or HoldRules()
        self.fanout = fanout or Fanout()
        self.mapping_gate = mapping_gate or MappingGate()
        self.tables = self.mapping_gate.tables(conn)  # the mapping tables, read once a batch
        self.now = utcnow()
        self.lookalikes: dict[str, list[Lookalike]] = {}  # fingerprint -> orders having it
        self.prints: dict[BusinessKey, str] = {}  # a new order's fingerprint
        self.known_customers: set[str] = set()  # customer keys with an order already
        self.reserved_ids: list[int] = []  # PostgreSQL: ids for the batch's new orders
        self.states: dict[BusinessKey, OrderState] = {}
        # each with its order's state: a new order's id is known only as the
        # batch is written (_write sets each row's order_id then)
        self.outbox_rows: list[tuple[OrderState, dict[str, object]]] = []
        self.parcels_noticed: list[OrderState] = []  # told of a parcel's problem in this batch

    def route(self, items: list[tuple[Envelope, CanonicalOrder]]) -> list[RouteResult]:
        ids = [envelope.message_id for envelope, _ in items]
        keys = {order.business_key for _, order in items}
        if self.conn.dialect.name == "postgresql":
            seen = self._read_pg(ids, keys)
        else:
            seen = set(
                self.conn.scalars(
                    select(arrivals.c.message_id).where(arrivals.c.message_id.in_(ids))
                )
            )
            self._load_states(keys, self.conn.execute(lock_known_orders(keys)))
        self._read_for_new_orders([order for _, order in items])
        results: list[RouteResult] = []
        for envelope, order in items:
            if envelope.message_id in seen:
                log.info("router: message %s was processed before", envelope.message_id)
                results.append(RouteResult(None, None))
                continue
            seen.add(envelope.message_id)
            results.append(self._decide(envelope, order))
        self._write()
        return results

    # -- reading what the batch needs -------------------------------------
    def _read_pg(self, ids: list[str], keys: set[BusinessKey]) -> set[str]:
        """PostgreSQL, one round trip: which of the messages arrived before,
        and the batch's known orders, locked (as :func:`lock_known_orders`),
        their lookups held on their indexes."""
        numbers = sorted({order_number(*key) for key in keys})
        _, arrived, known = pipelined(
            self.conn,
            [
                (KEY_LOOKUPS, {}),
                (ARRIVED, {"ids": ids}),
                (KNOWN_ORDERS, {"numbers": numbers}),
            ],
        )
        self._load_states(keys, known)
        return {row.message_id for row in arrived}

    def _load_states(self, keys: set[BusinessKey], rows: Iterable[Any]) -> None:
        for row in rows:
            key = (row.channel, row.shop, row.external_id)
            if key in keys:  # the number is the key's hash
                self.states[key] = OrderState.loaded(row)

    def _read_for_new_orders(self, batch: list[CanonicalOrder]) -> None:
        """What the batch's new orders need, read together (one round trip on
        PostgreSQL): the stored orders sharing a fingerprint with one of them
        (its lookalikes), whether their customers ordered before, and on
        PostgreSQL their ids (reserved here, used in :meth:`_new_orders`).

        On PostgreSQL each fingerprint is locked for the transaction first
        (an advisory lock, in sorted order): two routers taking the two halves
        of a duplicate pair at once see each other's order, not neither.
        """
        new = [order for order in batch if order.business_key not in self.states]
        if not new:
            return
        prints = self._new_fingerprints(new) if self.suspicion.enabled else []
        span = self._placed_span(batch) if prints else None
        customers = self._new_customers(new) if self.hold_rules.first_order else []
        if self.conn.dialect.name != "postgresql":
            if span is not None:
                self._keep_lookalikes(self._read_lookalikes(prints, span))
            if customers:
                self._keep_known_customers(
                    self.conn.execute(
                        select(orders.c.customer_key)
                        .where(orders.c.customer_key.in_(customers))
                        .distinct()
                    )
                )
            return
        reads: list[tuple[str, dict[str, Any], Any]] = []  # statement, parameters, reader
        if prints:
            reads.append((LOCK_PRINTS, {"prints": prints}, None))
        if prints and span is not None:
            since, until = span
            bounds = {"since": since, "until": until, "cap": LOOKALIKES_PER_CHANNEL}
            reads.append((LOOKALIKES, {"prints": prints, **bounds}, self._keep_lookalikes))
        if customers:
            reads.append((KNOWN_CUSTOMERS, {"keys": customers}, self._keep_known_customers))
        count = len({order.business_key for order in new})
        reads.append((RESERVE_IDS, {"table": orders.name, "count": count}, self._keep_ids))
        answers = pipelined(self.conn, [(sql, params) for sql, params, _ in reads])
        for (_, _, reader), rows in zip(reads, answers, strict=True):
            if reader is not None:
                reader(rows)

    def _new_fingerprints(self, new: list[CanonicalOrder]) -> list[str]:
        """Each new order's fingerprint (its first arrival in the batch), sorted."""
        for order in new:
            key = order.business_key
            if key not in self.prints:
                fp = fingerprint(order, self.suspicion.by)
                if fp is not None:
                    self.prints[key] = fp
        return sorted(set(self.prints.values()))

    def _placed_span(self, batch: list[CanonicalOrder]) -> tuple[datetime, datetime] | None:
        """Only orders placed within the window of one of the batch's orders
        can be lookalikes (suspicion.within); of those only the latest few of
        each channel are read: one is enough to suspect a new order, and a
        store's placeholder phone may have entered hundreds within the window."""
        placed = [o.placed_at for o in batch if o.placed_at is not None]
        if not placed:
            return None
        window = self.suspicion.window
        return min(placed) - window, max(placed) + window

    @staticmethod
    def _new_customers(new: list[CanonicalOrder]) -> list[str]:
        return sorted({key for order in new if (key := customer_key(order)) is not None})

    def _keep_lookalikes(self, rows: Iterable[Any]) -> None:
        for row in rows:
            at = row.placed_at
            if at is not None and at.tzinfo is None:  # SQLite keeps no offset
                at = at.replace(tzinfo=UTC)
            self.lookalikes.setdefault(row.fingerprint, []).append(
                Lookalike(row.order_number, row.channel, at)
            )

    def _keep_known_customers(self, rows: Iterable[Any]) -> None:
        self.known_customers = {row[0] for row in rows}

    def _keep_ids(self, rows: Iterable[Any]) -> None:
        self.reserved_ids = sorted(int(row[0]) for row in rows)

    def _read_lookalikes(self, prints: list[str], span: tuple[datetime, datetime]) -> Any:
        """At most LOOKALIKES_PER_CHANNEL stored orders of each (fingerprint,
        channel), the latest placed within ``span`` (SQLite)."""
        c = orders.c
        latest = (
            select(
                c.order_number,
                c.channel,
                c.fingerprint,
                c.placed_at,
                func.row_number()
                .over(partition_by=(c.fingerprint, c.channel), order_by=c.placed_at.desc())
                .label("nth"),
            )
            .where(c.fingerprint.in_(prints), c.placed_at.between(*span))
            .subquery()
        )
        return self.conn.execute(
            select(
                latest.c.order_number, latest.c.channel, latest.c.fingerprint, latest.c.placed_at
            ).where(latest.c.nth <= LOOKALIKES_PER_CHANNEL)
        )

    # -- deciding, one arrival at a time ----------------------------------
    def _decide(self, envelope: Envelope, order: CanonicalOrder) -> RouteResult:
        """What this arrival does to its order: recorded in ``self.states`` and
        ``self.outbox_rows`` only; nothing is written here."""
        state = self.states.get(order.business_key)
        known = Known(state.precedence, state.content_hash) if state else None
        # The hash ignores the order number, so the accepted copy has the same;
        # the order is dumped once, for its hash and (accepted) its body.
        dumped = order.model_dump(mode="json")
        digest = content_hash_of(dumped)
        outcome, detail = classify(known, order, digest)
        number = state.number if state else order_number(*order.business_key)
        accepted = order.model_copy(update={"order_number": number})
        previous = state.status if state else None
        changed = outcome in (Outcome.NEW, Outcome.UPDATE)
        version = (state.version if state else 0) + (1 if changed else 0)
        was_held = state is not None and state.held
        if state is None:
            state = self._new_state(order, accepted, digest, version)
        if changed and not was_held and (state.hold_status is None or state.new_hold):
            # (one hold an order: after a person's decision, a SKU still
            # unmapped stops its delivery as a dead letter instead)
            self._hold_if_unmapped(state, accepted, previous)
        if was_held:
            hold_note = f"; held ({state.hold_status}): not sent until a person releases it"
        else:
            hold_note = f"; held: {state.new_hold['reason']}" if state.new_hold else ""
        targets: list[str] = []
        if changed:
            dumped["order_number"] = number
            targets = self._accept(state, envelope, accepted, dumped, previous, digest, version)
            if state.held:
                outcome = Outcome.HELD
        state.arrival_rows.append(
            self._arrival_row(envelope, order, outcome, detail + hold_note, version, number)
        )
        if not self.rehearsal:
            self._log_decision(envelope, order, outcome, number, detail, targets)
        return RouteResult(outcome, number, tuple(targets))

    @staticmethod
    def _log_decision(
        envelope: Envelope,
        order: CanonicalOrder,
        outcome: Outcome,
        number: str,
        detail: str,
        targets: list[str],
    ) -> None:
        log.info(
            "router: %s %s/%s -> %s (%s) targets=%s",
            outcome.value,
            order.channel,
            order.external_id,
            number,
            detail,
            ",".join(targets) or "-",
            extra=about_envelope(envelope, order_number=number, channel=order.channel),
        )

    def _new_state(
        self, order: CanonicalOrder, accepted: CanonicalOrder, digest: str, version: int
    ) -> OrderState:
        """A new order's state, held when a hold rule says so."""
        fp = self.prints.get(order.business_key)
        state = self.states[order.business_key] = OrderState(
            id=None,
            number=str(accepted.order_number),
            status=accepted.status,
            precedence=accepted.precedence(),
            content_hash=digest,
            version=version,
            is_new=True,
            fingerprint=fp,
            placed_at=order.placed_at,
            customer_key=customer_key(order),
        )
        decision = self._hold_decision(order, fp, state.customer_key)
        if decision.reasons:
            state.hold_status = "open"
            state.new_hold = {
                "order_number": state.number,
                "suspected_of": decision.twin.number if decision.twin is not None else None,
                "reason": "; ".join(decision.reasons),
                "status": "open",
                "created_at": self.now,
                "approvals_needed": max(decision.approvals, 1),
                "cause": None,
            }
        if fp is not None:
            self.lookalikes.setdefault(fp, []).append(
                Lookalike(state.number, order.channel, order.placed_at)
            )
        return state

    def _parcel_problem(self, state: OrderState, accepted: CanonicalOrder) -> bool:
        """Whether to tell the customer now of a problem with the parcel: the
        carrier's first exception, where customers are told anything; once."""
        if state.parcel_noticed or accepted.tracking is None:
            return False
        if accepted.tracking.state != ParcelState.EXCEPTION:
            return False
        if not any(route.target == "customer" for route in self.fanout.routes):
            return False
        state.parcel_noticed = True
        self.parcels_noticed.append(state)
        return True

    def _hold_if_unmapped(
        self, state: OrderState, accepted: CanonicalOrder, previous: OrderStatus | None
    ) -> None:
        """Hold the order when this change would be the first to take platform
        SKUs with no mapping to a system that needs our codes (router/mapping_gate.py).
        An order this batch holds for approval says so in its reason instead:
        its approver sees it, and the mapping is still needed after release."""
        targets = self.fanout.targets(accepted, previous)
        missing = self.mapping_gate.unmapped(self.conn, self.tables, accepted, targets, previous)
        if not missing:
            return
        if state.new_hold:
            state.new_hold["reason"] = f"{state.new_hold['reason']}; {unmapped_reason(missing)}"
            return
        state.hold_status = "open"
        state.new_hold = {
            "order_number": state.number,
            "suspected_of": None,
            "reason": unmapped_reason(missing),
            "status": "open",
            "created_at": self.now,
            "approvals_needed": 1,
            "cause": UNMAPPED,
        }

    def _hold_decision(
        self, order: CanonicalOrder, fp: str | None, customer: str | None
    ) -> HoldDecision:
        """The hold rules (amounts, address), a new customer's first order, and
        a suspected duplicate, which goes first among the reasons."""
        twin = self._suspected(order, fp)
        reasons, approvals = self.hold_rules.check(order)
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
        return HoldDecision(reasons, approvals, twin)

    def _suspected(self, order: CanonicalOrder, fp: str | None) -> Lookalike | None:
        """The order this new one seems to repeat, if any."""
        if fp is None:
            return None
        for other in self.lookalikes.get(fp, []):
            if self.suspicion.across_channels_only and other.channel == order.channel:
                continue
            if within(self.suspicion.window, other.placed_at, order.placed_at):
                return other
        return None

    def _accept(
        self,
        state: OrderState,
        envelope: Envelope,
        accepted: CanonicalOrder,
        dumped: dict[str, Any],
        previous: OrderStatus | None,
        digest: str,
        version: int,
    ) -> list[str]:
        """The accepted revision becomes the order's state, and one outbox row
        goes to each target that must hear of it (none while held).
        ``dumped``: the accepted revision's ``model_dump(mode="json")``."""
        before = state.after_sales()
        if before or accepted.after_sales or accepted.status in AFTER_SALE_STATUSES:
            accepted = with_status_after_sale(
                accepted.model_copy(update={"after_sales": merged(before, accepted.after_sales)}),
                previous,
            )
            dumped = accepted.model_dump(mode="json")
        tracking_only = (
            accepted.tracking is not None
            and state.body is not None
            and previous == accepted.status
            and only_tracking_changed(state.body, accepted)
        )
        body = wire_of(dumped).decode("utf-8")
        state.status = accepted.status
        state.precedence = accepted.precedence()
        state.content_hash = digest
        state.version = version
        state.body = body
        state.values = state_values(accepted, body, digest, version, self.now)
        if state.held:
            return []
        papers = documents(before, accepted, previous)
        # a system that gets a document (an intercept, a reversal...) gets it
        # instead of the plain revision; a change of the parcel's tracking
        # alone goes to none (they heard of the shipment)
        served = {paper.target for paper in papers}
        targets = [] if tracking_only else self.fanout.targets(accepted, previous)
        targets = [t for t in targets if t not in served]
        topology, number, now = self.topology, state.number, self.now
        rows = [delivery_row(topology, envelope, number, version, t, body, now) for t in targets]
        rows += [document_row(topology, envelope, number, version, p, body, now) for p in papers]
        if self._parcel_problem(state, accepted):
            notice = f"{number}{PARCEL_NOTICE_SUFFIX}"
            told = delivery_row(
                topology, envelope, number, version, "customer", body, now, message_id=notice
            )
            rows.append(told)
            targets.append("customer:parcel")
        self.outbox_rows += [(state, row) for row in rows]
        return targets + [f"{paper.target}:{paper.kind}" for paper in papers]

    def _arrival_row(
        self,
        envelope: Envelope,
        order: CanonicalOrder,
        outcome: Outcome,
        detail: str,
        version: int,
        number: str,
    ) -> dict[str, object]:
        return {
            "message_id": envelope.message_id,
            "channel": order.channel,
            "external_id": order.external_id,
            "outcome": outcome.value,
            "detail": detail,
            "order_version": version,
            "correlation_id": envelope.correlation_id,
            "received_at": envelope.received_at,
            "processed_at": self.now,
            "order_number": number,
        }

    # -- writing the whole batch ------------------------------------------
    def _write(self) -> None:
        new_orders = self._new_orders()
        changed = [s for s in self.states.values() if not s.is_new and s.values]
        updated = [{"id": s.id, "hold_status": s.hold_status, **(s.values or {})} for s in changed]
        noticed = [{"id": s.id, "parcel_noticed_at": self.now} for s in self.parcels_noticed]
        newly_held = [{"order_id": s.id, **s.new_hold} for s in changed if s.new_hold]
        arrival_rows = [
            {"order_id": s.id, **row} for s in self.states.values() for row in s.arrival_rows
        ]
        outbox_rows = []
        for s, row in self.outbox_rows:
            row["order_id"] = s.id
            outbox_rows.append(row)
        insert_pipelined(
            self.conn,
            [
                *new_orders,
                (holds, newly_held),
                (outbox, outbox_rows),
                (arrivals, arrival_rows),
            ],
            updates=[(orders, updated), (orders, noticed)],  # after: a new order's notice too
            commit=not self.rehearsal,  # the batch's last statements: committed in their round trip
        )

    def _new_orders(self) -> list[tuple[Any, list[dict[str, Any]]]]:
        """The batch's new orders given their ids (reserved on PostgreSQL, where
        their rows, and their holds', are returned to go in with the batch's
        other rows; inserted here elsewhere)."""
        new = [(key, s) for key, s in sorted(self.states.items()) if s.is_new and s.values]
        if not new:
            return []
        rows = [
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
        ]
        reserved = self.conn.dialect.name == "postgresql"
        if reserved:  # ids read with the lookalikes; the rows go in with the batch's others
            if len(self.reserved_ids) < len(rows):  # one was reserved for each new order
                raise AssertionError(f"{len(rows)} new orders, {len(self.reserved_ids)} ids")
            ids = self.reserved_ids[: len(rows)]
            for row, id_ in zip(rows, ids, strict=True):
                row["id"] = id_
        else:
            returned = self.conn.execute(
                insert(orders).returning(orders.c.id, sort_by_parameter_order=True), rows
            ).all()
            ids = [r.id for r in returned]
        for (_, s), id_ in zip(new, ids, strict=True):
            s.id = id_
        held = [{"order_id": s.id, **s.new_hold} for _, s in new if s.new_hold]
        return [(orders, rows if reserved else []), (holds, held)]
