"""Delivery consumers (warehouse, finance, notification) with an idempotent inbox.

For each message: if ``(consumer, message id)`` is in the inbox, it was
delivered before: ack, no second effect. Otherwise deliver (retrying transient
failures), record the inbox row at once, before the next message is sent, and
only then let the bus ack. A batch of messages shares one read of the inbox;
each delivery's row is committed as soon as its answer is known, so a crash
repeats at most the one delivery whose answer was not yet recorded.

Several consumer processes of one system may hold copies of one message at
once (the relay publishes a batch again when the database failed before it
marked it published; the broker redelivers what a process whose connection
died was still sending). On PostgreSQL each batch first claims its messages
(a session advisory lock per consumer and message id, all in one statement)
and only then reads the inbox: a copy claimed by another process is not sent
but retried shortly (DeliveryInProgress), when the other's inbox row answers
it. The claims end with the batch, or with the process.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from http import HTTPStatus
from typing import Any

from sqlalchemy import Connection, Engine, select

from canonical.envelope import (
    H_AFTER_SALE,
    H_DOCUMENT,
    REHEARSAL_CHANNEL,
    Envelope,
    new_message_id,
    utcnow,
)
from canonical.errors import (
    DatabaseUnavailable,
    DeliveryInProgress,
    DeliveryRejected,
    EndpointUnavailable,
    MalformedMessage,
    SkuNotMapped,
    TransientError,
)
from canonical.json_bytes import glance
from canonical.mapping import map_carrier, map_order
from canonical.order import CanonicalOrder
from infra.counters import Counters
from infra.crashpoints import crash_point
from infra.database import (
    insert_one_absent,
    pipelined,
    prefer_key_lookups,
    translate_db_errors,
)
from infra.logs import about_envelope
from infra.mappings import MappingCache
from infra.messages import Delivery, envelope_of
from infra.tables import inbox
from infra.tracing import mark_failed, span
from targets.delivery import GaveUp, HttpDelivery

log = logging.getLogger(__name__)
WRITEBACK = "channel"


def claims_lost() -> DatabaseUnavailable:
    """The batch's connection was replaced: its claims ended, so the rest of
    the batch is claimed again (the bus retries it at once) before sending."""
    return DatabaseUnavailable("the database connection was replaced; the batch is retried")


# PostgreSQL, one round trip: the batch's messages this session could claim (a
# lock per consumer and message id), then (after the claims: its own snapshot)
# what the inbox has of their orders, read by key. The pipeline is one
# transaction (committed at its end; the claims are the session's and outlast
# it): the claim also turns sequential scans off for it, as prefer_key_lookups
# does, so the read is planned on the inbox's index (set_config: SET LOCAL
# outside BEGIN made PostgreSQL log a warning every batch).
RELEASE_CLAIMS = "SELECT pg_advisory_unlock_all()"
CLAIM_AND_READ: tuple[str, ...] = (
    "SELECT m FROM unnest(%(ids)s::text[]) AS claim(m)"
    " CROSS JOIN (SELECT set_config('enable_seqscan', 'off', true)) AS key_lookups"
    " WHERE pg_try_advisory_lock(hashtextextended(%(consumer)s || m, 0))",
    "SELECT message_id, order_number, order_version, outcome FROM inbox "
    "WHERE consumer = %(target)s AND order_number = ANY(%(numbers)s)",
)  # the write-back target: its system is the order's channel


def parse_outgoing(message: Delivery) -> Envelope:
    """The envelope of a message the router sent, checked cheaply.

    The router validated the order before it wrote the outbox row, so a
    consumer does not validate it again; it checks that this is such a
    message: JSON, with an envelope, and the order number the envelope names.
    """
    envelope = envelope_of(message)
    try:
        body = glance(message.body)
    except ValueError as exc:  # not UTF-8 either
        raise MalformedMessage(f"body is not JSON: {exc}", reason="malformed_json") from exc
    if not envelope.order_number or not isinstance(body, dict):
        raise MalformedMessage(
            "not a message from the router: no order number in its envelope",
            reason="schema_mismatch",
        )
    if body.get("order_number") != envelope.order_number:
        raise MalformedMessage(
            f"the body's order number {body.get('order_number')!r} is not the envelope's "
            f"{envelope.order_number!r}",
            reason="schema_mismatch",
        )
    return envelope


class DeliveryConsumer:
    def __init__(
        self,
        target: str,
        engine: Engine,
        delivery: HttpDelivery,
        mappings: MappingCache | None = None,
        map_skus: bool = True,
        counters: Counters | None = None,
    ) -> None:
        self.counters = counters  # each delivery's latency counted after its commit
        self.target = target
        self.engine = engine
        self.delivery = delivery
        # SKU mapping (canonical/mapping.py), for the targets that want our
        # codes (warehouse, finance): applied here, on the way out, so a dead
        # letter retried after its mapping was added goes out mapped.
        self.mappings = mappings
        # False: only the carrier's code is mapped (write-back, notifications)
        self.map_skus = map_skus

    def rehearse(self) -> None:
        """Look a made-up message up once before the first batch, as a batch
        does (PostgreSQL: claim, read the inbox, end the claim), and read the
        mapping tables, so the first batch finds its connection open, its
        statements ready and the tables in memory (their first reading was
        two-thirds of a first batch's 104 ms, under cProfile). Nothing is
        sent to the system and nothing written; a failure (the database not up
        yet) is logged, not raised: the first batch meets it and is retried."""
        started = time.perf_counter()
        number = f"rehearsal-{new_message_id()}"
        envelope = replace(Envelope.new(REHEARSAL_CHANNEL), order_number=number)
        try:
            if self.engine.dialect.name != "postgresql":
                self._seen([envelope])
            else:
                with translate_db_errors(), self.engine.connect() as conn:
                    keeping = conn.execution_options(isolation_level="AUTOCOMMIT")
                    try:
                        self._claimed(keeping, [(0, envelope, number)], [None])
                    finally:
                        self._release(keeping)
            if self.mappings is not None:  # the tables read once, as the first send would
                self.mappings.current()
        except Exception as exc:
            log.warning("%s: the rehearsal before the first message failed: %s", self.target, exc)
            return
        took_ms = (time.perf_counter() - started) * 1000
        log.info("%s: rehearsed a made-up lookup in %.0f ms", self.target, took_ms)

    def handle(self, message: Delivery) -> None:
        """Handle one delivery; raises what :meth:`handle_batch` would report."""
        error = self.handle_batch([message])[0]
        if error is not None:
            raise error

    def handle_batch(self, messages: list[Delivery]) -> list[BaseException | None]:
        """Bus batch handler: deliver each message in turn, recording each
        one's inbox row as soon as its answer is known (before the next send);
        the bus acks them after.

        A crash between a delivery and its row's commit makes the broker
        redeliver: that one delivery (never the batch) is sent again, with the
        same ``Idempotency-Key``, which the system uses to ignore the copy.
        After a transient failure (the endpoint is down) the rest of the batch
        is not tried; the bus retries those messages.
        """
        results: list[BaseException | None] = [None] * len(messages)
        parsed = self._parse(messages, results)
        if not parsed:
            return results
        with translate_db_errors(), self.engine.connect() as keeping:
            if keeping.dialect.name != "postgresql":
                self._deliver_each(messages, parsed, results, keeping)
                return results
            keeping = keeping.execution_options(isolation_level="AUTOCOMMIT")  # a row a commit
            released = False  # the claims end with the last row, or after the batch
            try:
                parsed, seen = self._claimed(keeping, parsed, results)
                released = self._deliver_each(messages, parsed, results, keeping, seen)
            finally:
                if not released:
                    self._release(keeping)
        return results

    def _claimed(
        self,
        conn: Connection,
        parsed: list[tuple[int, Envelope, str | None]],
        results: list[BaseException | None],
    ) -> tuple[list[tuple[int, Envelope, str | None]], tuple[set[str], dict[str, int]]]:
        """The messages this process may send (a message another process has
        claimed waits: DeliveryInProgress), and what the inbox had of them
        once claimed; one round trip."""
        ids = sorted({envelope.message_id for _, envelope, _ in parsed})
        numbers = sorted({e.order_number for _, e, _ in parsed if e.order_number})
        params = {"ids": ids, "consumer": f"{self.target}:", "target": self.target}
        params["numbers"] = numbers
        statements = [(sql, params) for sql in CLAIM_AND_READ]
        with translate_db_errors():
            claimed, rows = pipelined(conn, statements)
        mine = {row[0] for row in claimed}
        kept = []
        for index, envelope, number in parsed:
            if envelope.message_id in mine:
                kept.append((index, envelope, number))
            else:
                results[index] = DeliveryInProgress(
                    f"{envelope.message_id} is being sent to {self.target} by another "
                    "consumer process right now"
                )
        return kept, self._handled(rows)

    @staticmethod
    def _release(conn: Connection) -> None:
        """End the batch's claims; a connection that cannot is closed (its
        claims end with its session)."""
        try:
            conn.exec_driver_sql(RELEASE_CLAIMS)
        except Exception:
            conn.invalidate()

    def _deliver_each(
        self,
        messages: list[Delivery],
        parsed: list[tuple[int, Envelope, str | None]],
        results: list[BaseException | None],
        keeping: Connection,
        seen: tuple[set[str], dict[str, int]] | None = None,
    ) -> bool:
        """Send each message not handled before, in turn, keeping its inbox
        row before the next; after a transient failure the rest wait. With
        ``seen`` (the claims' reading), the last message's row also ends the
        batch's claims, in its round trip: True when it did."""
        if not parsed:
            return False
        handled, newest = seen or self._seen([envelope for _, envelope, _ in parsed])
        last = parsed[-1][0] if seen is not None else None
        released = False
        failed: BaseException | None = None  # the endpoint is down: the rest waits
        for index, envelope, number in parsed:
            if failed is not None:
                results[index] = failed
                continue
            if envelope.message_id in handled:
                log.info(
                    "%s: %s already handled, skipping",
                    self.target,
                    envelope.message_id,
                    extra=about_envelope(envelope),
                )
                continue
            handled.add(envelope.message_id)
            # an after-sale's document is not a revision: a newer revision
            # delivered first does not make an intercept or a refund moot
            is_document = bool(messages[index].headers.get(H_DOCUMENT))
            release = index == last
            if not is_document and self._superseded(envelope, number, newest):
                superseded = self._record(envelope, number, "superseded", None, 0)
                lost = self._keep(keeping, superseded, release)
                failed = claims_lost() if lost else None
                released = release and not lost  # a new connection holds no claims
                continue
            with span(
                f"deliver {self.target}",
                envelope.traceparent,
                order_number=number,
                message_id=envelope.message_id,
            ):
                outcome = self._deliver(messages[index], envelope, number, newest)
                if outcome[0] is not None:
                    mark_failed(outcome[0])
            results[index], failed, record = outcome
            if record is not None:
                lost = self._keep(keeping, record, release)
                failed = failed or (claims_lost() if lost else None)
                released = release and not lost
                self._count(record)
        return released

    def _count(self, record: dict[str, object]) -> None:
        """The delivery's time since its revision arrived at the router, as kept in its row."""
        latency_ms = record["latency_ms"]
        if self.counters is not None and isinstance(latency_ms, int):
            self.counters.observe_latency(self.target, latency_ms / 1000)

    @staticmethod
    def _keep(conn: Connection, record: dict[str, object], release: bool = False) -> bool:
        """Commit one inbox row now, on the batch's connection (one round trip
        on PostgreSQL): the next send waits for it. A connection lost since
        the last row (the database restarted while a system was answering) is
        replaced once. The database away raises (TransientError), the rest of
        the batch is not sent, and the bus delivers them again; only this
        delivery can be repeated. True when the row went in on a new
        connection (the batch's claims ended with the old one). ``release``:
        the row is the batch's last, and the claims end with it (PostgreSQL)."""
        for last_try in (False, True):
            try:
                with translate_db_errors():
                    then = RELEASE_CLAIMS if release and not last_try else None
                    insert_one_absent(conn, inbox, record, then=then)
                    conn.commit()
                return last_try
            except DatabaseUnavailable:
                conn.rollback()  # an invalidated connection reconnects on next use
                if last_try:
                    raise
        return True

    @staticmethod
    def _parse(
        messages: list[Delivery], results: list[BaseException | None]
    ) -> list[tuple[int, Envelope, str | None]]:
        """Each readable message's envelope; what cannot be read is its result."""
        parsed: list[tuple[int, Envelope, str | None]] = []
        for index, message in enumerate(messages):
            try:
                envelope = parse_outgoing(message)
            except Exception as exc:
                results[index] = exc
                continue
            parsed.append((index, envelope, envelope.order_number))
        return parsed

    def _superseded(self, envelope: Envelope, number: str | None, newest: dict[str, int]) -> bool:
        """A newer version reached this system first (a retry, a redelivery):
        sending this one now would move the order backwards there."""
        latest = newest.get(number) if number else None
        if latest is None or envelope.order_version is None or envelope.order_version >= latest:
            return False
        log.info(
            "%s: %s superseded by version %d already delivered",
            self.target,
            envelope.message_id,
            latest,
        )
        return True

    def _deliver(
        self, message: Delivery, envelope: Envelope, number: str | None, newest: dict[str, int]
    ) -> tuple[BaseException | None, BaseException | None, dict[str, object] | None]:
        """Send one message: (its result, what the rest of the batch gets when
        the endpoint is down, its inbox row when delivered)."""
        document = message.headers.get(H_DOCUMENT)
        try:
            body, version = self._mapped(message.body)
            headers = self._headers(envelope)
            headers["X-Orderbus-Attempt"] = str(self._first_attempt(envelope, message))
            if version is not None:
                headers["X-Orderbus-Mapping-Version"] = str(version)
            if document:
                headers["X-Orderbus-Document"] = str(document)
                headers["X-Orderbus-After-Sale"] = str(message.headers.get(H_AFTER_SALE, ""))
            sent = self.delivery.send(body, headers)
        except TransientError as exc:
            return exc, exc, None
        except DeliveryRejected as exc:
            if document == "intercept" and exc.status_code == HTTPStatus.CONFLICT:
                # "too late, already shipped": recorded, not a dead letter; the
                # warehouse's shipment report then turns it into a return
                # (router/shipments.py)
                log.info("%s: intercept %s too late: %s", self.target, number, exc.detail)
                return None, None, self._record(envelope, number, "too_late", 409, 1)
            return exc, None, None
        except GaveUp as exc:
            # The endpoint stayed down through this message's retries: it
            # becomes a dead letter; the rest of the batch waits for the
            # endpoint (the bus retries them) instead of each giving up too.
            return exc, EndpointUnavailable(f"not tried, the endpoint is down: {exc.detail}"), None
        except Exception as exc:
            return exc, None, None
        crash_point("consumer.after_delivery")
        if number and envelope.order_version is not None and not document:
            newest[number] = max(newest.get(number, 0), envelope.order_version)
        log.info(
            "%s: delivered %s (%s) in %d attempt(s)",
            self.target,
            number,
            envelope.message_id,
            sent.attempts,
            extra=about_envelope(envelope),
        )
        record = self._record(envelope, number, "delivered", sent.status_code, sent.attempts)
        record["mapping_version"] = version
        return None, None, record

    def _mapped(self, body: bytes) -> tuple[bytes, int | None]:
        """The body this target receives, and the mapping version applied
        (None: this target takes the channel's SKUs as they are)."""
        if self.mappings is None:
            return body, None
        tables = self.mappings.current()
        if not self.map_skus:
            if not tables.carriers:
                return body, None
            order = CanonicalOrder.from_wire(body)
            system = order.channel if self.target == WRITEBACK else self.target
            mapped = map_carrier(order, tables, system)
            return (body, None) if mapped is order else (mapped.to_wire(), tables.version)
        if not (
            tables.products or tables.codes or tables.required or tables.shops
            or tables.warehouse_rules or tables.carriers
        ):  # fmt: skip
            return body, None  # no tables: the body as it is, and no version to show
        order = CanonicalOrder.from_wire(body)
        try:
            mapped = map_order(order, tables, self.target)
        except SkuNotMapped:
            newer = self.mappings.current(fresh=True)  # mapped a moment ago?
            if newer.version == tables.version:
                raise
            tables, mapped = newer, map_order(order, newer, self.target)
        return mapped.to_wire(), tables.version

    def _seen(self, envelopes: list[Envelope]) -> tuple[set[str], dict[str, int]]:
        """The messages handled before, and per order the newest version
        already delivered to this system."""
        c = inbox.c
        # Every message from the router names its order, and an inbox row
        # carries its message's order number: one lookup by order finds both.
        numbers = sorted({e.order_number for e in envelopes if e.order_number})
        with translate_db_errors(), self.engine.connect() as conn:
            prefer_key_lookups(conn)
            rows = conn.execute(
                select(c.message_id, c.order_number, c.order_version, c.outcome).where(
                    c.consumer == self.target, c.order_number.in_(numbers)
                )
            ).all()
        return self._handled([tuple(r) for r in rows])

    @staticmethod
    def _handled(rows: list[tuple[Any, ...]]) -> tuple[set[str], dict[str, int]]:
        """From inbox rows (message id, order number, order version, outcome):
        the messages handled, and per order the newest version delivered."""
        handled = {message_id for message_id, _, _, _ in rows}
        newest: dict[str, int] = {}
        for _, number, version, outcome in rows:
            if outcome == "delivered" and version and number:
                newest[number] = max(newest.get(number, 0), version)
        return handled, newest

    def _record(
        self,
        envelope: Envelope,
        order_number: str | None,
        outcome: str,
        status: int | None,
        attempts: int,
    ) -> dict[str, object]:
        now = utcnow()
        return {
            "consumer": self.target,
            "message_id": envelope.message_id,
            "order_number": order_number,
            "order_version": envelope.order_version,
            "outcome": outcome,
            "response_status": status,
            "attempts": attempts,
            "delivered_at": now,
            "mapping_version": None,
            "latency_ms": max(0, round((now - envelope.received_at).total_seconds() * 1000)),
        }

    def _headers(self, envelope: Envelope) -> dict[str, str]:
        return {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": envelope.message_id,
            "X-Orderbus-Message-Id": envelope.message_id,
            "X-Orderbus-Correlation-Id": envelope.correlation_id,
            "X-Orderbus-Order-Number": envelope.order_number or "",
            "X-Orderbus-Target": self.target,
        }

    def _first_attempt(self, envelope: Envelope, message: Delivery) -> int:
        """The number of this delivery's first try: 1 the first time; each
        earlier round (a retry from the dead letters: the envelope's attempt;
        a redelivery by the broker after a crash or a requeue) counts as the
        tries one round may make. More than 1: the system may have had it."""
        rounds = max(envelope.attempt, 1) - 1 + max(message.deliveries, 1) - 1
        return rounds * self.delivery.policy.attempts + 1
