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
import time
from collections.abc import Callable
from dataclasses import replace

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from canonical.envelope import Envelope
from canonical.errors import TransientError
from canonical.order import CanonicalOrder
from canonical.validation import validate
from infra.counters import ARRIVALS, Counters
from infra.crashpoints import crash_point
from infra.database import translate_db_errors
from infra.messages import Delivery, parse_delivery
from infra.topology import Topology
from infra.tracing import close_span, open_span, traceparent_of
from router.approval import HoldRules
from router.batch import BatchRouting
from router.fanout import Fanout
from router.mapping_gate import MappingGate
from router.order_state import RouteResult
from router.rehearsal import rehearsal_delivery
from router.suspicion import Suspicion

log = logging.getLogger(__name__)


class RouterService:
    def __init__(
        self,
        engine: Engine,
        topology: Topology,
        on_commit: Callable[[], None] | None = None,
        suspicion: Suspicion | None = None,
        hold_rules: HoldRules | None = None,
        fanout: Fanout | None = None,
        mapping_gate: MappingGate | None = None,
        counters: Counters | None = None,
    ) -> None:
        self.counters = counters  # arrivals counted after their commit (metrics)
        self.engine = engine
        self.topology = topology
        self.on_commit = on_commit  # e.g. wake the outbox relay
        self.suspicion = suspicion or Suspicion()
        self.hold_rules = hold_rules or HoldRules()
        self.fanout = fanout or Fanout()
        self.mapping_gate = mapping_gate or MappingGate(fanout=self.fanout)

    def rehearse(self) -> None:
        """Route a made-up order once, in a transaction that is rolled back,
        before the first message (:mod:`router.rehearsal`): the first batch
        then finds the connection, the statements and the database's caches
        ready. Nothing of it is kept, published or counted. A failure (the
        database not up yet) is logged, not raised: the first batch meets the
        same trouble and is retried as any batch is."""
        started = time.perf_counter()
        delivery = rehearsal_delivery(self.topology.router_queue)
        try:
            envelope, order = parse_delivery(delivery)
            validate(order)
            with self.engine.connect() as conn, conn.begin() as transaction:
                self._routing(conn, rehearsal=True).route([(envelope, order)])
                transaction.rollback()
        except Exception as exc:
            log.warning("router: the rehearsal before the first message failed: %s", exc)
            return
        took_ms = (time.perf_counter() - started) * 1000
        log.info("router: rehearsed a made-up order in %.0f ms, rolled back", took_ms)

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
            spans = [
                open_span("route", e.traceparent, channel=o.channel, message_id=e.message_id)
                for _, e, o in valid
            ]
            valid = [
                (index, _traced(e, traceparent_of(sp)), o)
                for (index, e, o), sp in zip(valid, spans, strict=True)
            ]
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
            finally:
                for (index, _, _), sp in zip(valid, spans, strict=True):
                    error = results[index]
                    close_span(sp, error if isinstance(error, Exception) else None)
            if self.on_commit is not None:
                self.on_commit()
        crash_point("router.after_commit")
        return results

    def _routing(self, conn: Connection, rehearsal: bool = False) -> BatchRouting:
        return BatchRouting(
            conn,
            self.topology,
            self.suspicion,
            self.hold_rules,
            self.fanout,
            self.mapping_gate,
            rehearsal=rehearsal,
        )

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
                    results = self._routing(conn).route(items)
            except IntegrityError:
                if attempt == 2:
                    raise
                log.info("router: lost a race on a batch of %d, retrying", len(items))
                continue
            if self.counters is not None:  # committed: each arrival recorded counts
                for (_, order), result in zip(items, results, strict=True):
                    if result.outcome is not None:
                        self.counters.add(ARRIVALS, (order.channel, result.outcome.value))
            return results
        raise AssertionError("unreachable")


def _traced(envelope: Envelope, traceparent: str | None) -> Envelope:
    """The envelope with the span that routes it, when tracing made one
    (a copy only then: most runs trace nothing)."""
    if traceparent is None or traceparent == envelope.traceparent:
        return envelope
    return replace(envelope, traceparent=traceparent)
