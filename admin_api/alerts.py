"""Alerts: rules checked every ``interval`` seconds against what the database
holds, each finding an incident that is sent to a webhook once when it starts
and once when it is over (``ORDERBUS_ALERTS``), and logged.

Rules (each optional):

- ``silence``: a channel that sent nothing for longer than its expected
  interval (``{"channels": {"web-shop": 3600}}``);
- ``reject_rate``: in the last ``window`` seconds, more than ``threshold`` of
  a channel's inputs refused (at the ingest, or by the router), once at least
  ``min_count`` arrived;
- ``undelivered_paid``: a paid order not delivered to the warehouse ``after``
  seconds after the router sent it;
- ``dead_letters``: more than ``open_above`` dead letters open;
- ``parcel_problems``: more than ``above`` shipped parcels in trouble: the
  carrier reports an exception, or has said nothing for ``stalled_hours``;
- ``outbox_lag``: the oldest unpublished outbox row older than ``seconds``;
- ``queue_depth``: more than ``above`` messages waiting in a queue (the consumers
  are not keeping up, or are stopped);
- ``credentials``: a channel's credentials expiring within ``warn_days``
  (``{"expires": {"pdd": "2026-12-31T00:00:00+08:00"}}``).

An incident is a row in ``alerts`` (rule, subject) while open: a condition
that stays true sends nothing more; when it clears the row is resolved and a
resolve message sent. A webhook that does not answer is tried again at the
next check (``notified`` records what it was told), never lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, and_, false, func, insert, literal, or_, select, update

from infra.database import in_chunks, prefer_key_lookups
from infra.setting_specs import (
    AlertSettings,
    ParcelProblems,
    RejectRate,
    Silence,
    UndeliveredPaid,
)
from infra.tables import (
    alerts,
    arrivals,
    dead_letters,
    inbox,
    orders,
    outbox,
    rejected_requests,
)
from infra.topology import delivery_routing_key

log = logging.getLogger(__name__)


# a transaction that made a message may commit this long after the message's time
LATE_COMMIT = timedelta(minutes=10)
# how many of the look-back's messages the undelivered-paid rule reads a check after a start
READ_BACK_PAGE = 2000


@dataclass(frozen=True)
class Finding:
    rule: str
    subject: str
    summary: str


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class AlertRules:
    def __init__(
        self,
        settings: AlertSettings,
        started: datetime,
        queue_depths: Callable[[], list[tuple[str, int]]] | None = None,
        read_back_page: int = READ_BACK_PAGE,
    ) -> None:
        self.settings = settings
        self.started = started  # a channel never heard from is silent since then
        self.queue_depths = queue_depths
        # the undelivered-paid check's memory (see _undelivered)
        self._scanned_until: datetime | None = None  # read up to here
        # the look-back is read back from here, a page a check; None once read
        self._read_back_from: tuple[datetime, int | None] | None = None
        self._read_back_page = read_back_page
        self._not_delivered: dict[str, datetime] = {}  # warehouse message id -> made at

    @staticmethod
    def _parcel_problems(conn: Connection, now: datetime, rule: ParcelProblems) -> list[Finding]:
        """Shipped parcels the carrier reports an exception for, or says nothing of."""
        c = orders.c
        quiet = now - timedelta(hours=rule.stalled_hours)
        last_news = func.coalesce(c.parcel_updated_at, c.updated_at)
        in_trouble = conn.scalar(
            select(func.count())
            .select_from(orders)
            .where(
                c.status == "shipped",
                (c.parcel_state == "exception") | (last_news < quiet),
            )
        )
        count = int(in_trouble or 0)
        if count <= rule.above:
            return []
        return [
            Finding(
                "parcel_problems",
                "parcels",
                f"{count} shipped parcels in trouble (an exception, or no news for "
                f"{rule.stalled_hours:g} h; more than {rule.above})",
            )
        ]

    def findings(self, conn: Connection, now: datetime) -> list[Finding]:
        s = self.settings
        found: list[Finding] = []
        if s.silence:
            found += self._silence(conn, now, s.silence)
        if s.reject_rate:
            found += self._reject_rate(conn, now, s.reject_rate)
        if s.undelivered_paid:
            found += self._undelivered(conn, now, s.undelivered_paid)
        if s.dead_letters:
            count = conn.scalar(
                select(func.count())
                .select_from(dead_letters)
                .where(dead_letters.c.status == "open")
            )
            if int(count or 0) > s.dead_letters.open_above:
                found.append(
                    Finding(
                        "dead_letters",
                        "open",
                        f"{count} dead letters open (more than {s.dead_letters.open_above})",
                    )
                )
        if s.parcel_problems:
            found += self._parcel_problems(conn, now, s.parcel_problems)
        if s.outbox_lag:
            oldest = _utc(
                conn.scalar(
                    select(func.min(outbox.c.created_at)).where(outbox.c.published_at.is_(None))
                )
            )
            if oldest is not None and (now - oldest).total_seconds() > s.outbox_lag.seconds:
                age = int((now - oldest).total_seconds())
                found.append(
                    Finding(
                        "outbox_lag", "outbox", f"the oldest unpublished message is {age} s old"
                    )
                )
        if s.queue_depth and self.queue_depths is not None:
            try:
                depths = self.queue_depths()
            except Exception as exc:  # the broker down is the readiness check's news
                log.warning("alerts: queue depths unavailable: %s", exc)
                depths = []
            limit = s.queue_depth.above
            for queue, count in depths:
                if count > limit:
                    summary = f"{count} messages waiting in {queue} (more than {limit})"
                    found.append(Finding("queue_depth", queue, summary))
        if s.credentials:
            for channel, expires in sorted(s.credentials.expires.items()):
                left = (_utc(expires) or now) - now
                if left < timedelta(days=s.credentials.warn_days):
                    found.append(
                        Finding(
                            "credentials",
                            channel,
                            f"channel {channel}'s credentials expire {expires.isoformat()} "
                            f"({left.total_seconds() / 86400:.1f} days)",
                        )
                    )
        return found

    def _silence(self, conn: Connection, now: datetime, rule: Silence) -> list[Finding]:
        found = []
        for channel, limit in sorted(rule.channels.items()):
            last = _utc(
                conn.scalar(
                    select(func.max(arrivals.c.received_at)).where(arrivals.c.channel == channel)
                )
            )
            since = last or self.started
            quiet = (now - since).total_seconds()
            if quiet > limit:
                heard = f"last order {last.isoformat()}" if last else "no order yet"
                found.append(
                    Finding(
                        "silence",
                        channel,
                        f"channel {channel} silent for {int(quiet)} s (expected within "
                        f"{int(limit)} s; {heard})",
                    )
                )
        return found

    def _reject_rate(self, conn: Connection, now: datetime, rule: RejectRate) -> list[Finding]:
        since = now - timedelta(seconds=rule.window)
        accepted: dict[str, int] = dict(
            conn.execute(
                select(arrivals.c.channel, func.count())
                .where(arrivals.c.received_at >= since)
                .group_by(arrivals.c.channel)
            ).all()
        )
        refused: dict[str, int] = {}
        for channel, count in conn.execute(
            select(rejected_requests.c.channel, func.count())
            .where(
                rejected_requests.c.received_at >= since, rejected_requests.c.reason != "ignored"
            )
            .group_by(rejected_requests.c.channel)
        ):
            refused[channel] = refused.get(channel, 0) + int(count)
        for channel, count in conn.execute(
            select(dead_letters.c.channel, func.count())
            .where(
                dead_letters.c.first_failed_at >= since,
                dead_letters.c.order_number.is_(None),
                dead_letters.c.channel.is_not(None),
            )
            .group_by(dead_letters.c.channel)
        ):
            refused[channel] = refused.get(channel, 0) + int(count)
        found = []
        for channel in sorted(set(accepted) | set(refused)):
            bad = refused.get(channel, 0)
            total = bad + int(accepted.get(channel, 0))
            if total >= rule.min_count and bad / total > rule.threshold:
                found.append(
                    Finding(
                        "reject_rate",
                        channel,
                        f"{bad} of {total} inputs from {channel} refused in the last "
                        f"{int(rule.window)} s ({bad / total:.0%}, above {rule.threshold:.0%})",
                    )
                )
        return found

    def _scan(
        self,
        conn: Connection,
        since: datetime,
        before: tuple[datetime, int | None],
        page: int | None = None,
    ) -> tuple[datetime, int] | None:
        """Remember the warehouse messages made from ``since`` up to
        ``before`` (a time, or a time and an outbox id: the key a page
        stopped at) that the warehouse's inbox lacks.

        With ``page``, only the newest ``page`` of them are read; the key of
        the last one read is returned when there are older ones to read.

        Each message's inbox row is probed by its key: a subquery with a
        ``LIMIT`` is run for each message, never turned into a hash of every
        warehouse inbox row (PostgreSQL's choice for a few thousand messages
        in a table of 100,000 rows, two to three times slower than the probes)."""
        o, i = outbox.c, inbox.c
        until, last_id = before
        newer_first = (o.created_at.desc(), o.id.desc())
        # a page's place of each message (its last one's key is where the next
        # page starts); the read since the previous check needs none
        nth = literal(0) if page is None else func.row_number().over(order_by=newer_first)
        read = (
            select(o.id, o.message_id, o.created_at)
            .add_columns(nth.label("nth"))
            .where(
                o.routing_key == delivery_routing_key("warehouse"),
                o.created_at >= since,
                o.created_at < until
                if last_id is None
                else and_(o.created_at <= until, or_(o.created_at < until, o.id < last_id)),
            )
        )
        if page is not None:
            read = read.order_by(*newer_first).limit(page)
        messages = read.subquery()
        delivered = (
            select(literal(1))
            .where(i.consumer == "warehouse", i.message_id == messages.c.message_id)
            .limit(1)
            .scalar_subquery()
        )
        last = messages.c.nth == page if page is not None else false()
        prefer_key_lookups(conn)
        stopped_at: tuple[datetime, int] | None = None
        for message_id, created, id_, nth, missing in conn.execute(
            select(
                messages.c.message_id,
                messages.c.created_at,
                messages.c.id,
                messages.c.nth,
                delivered.is_(None),
            ).where(or_(delivered.is_(None), last))
        ):
            made_at = _utc(created) or created
            if missing:
                self._not_delivered[message_id] = made_at
            if page is not None and nth == page:
                stopped_at = (made_at, id_)
        return stopped_at

    def _undelivered(self, conn: Connection, now: datetime, rule: UndeliveredPaid) -> list[Finding]:
        """Warehouse messages made between ``within_days`` and ``after`` ago
        that the warehouse's inbox lacks and no open dead letter explains.

        Incremental: each check reads the messages made since the previous
        one (with an overlap for transactions that committed late) and looks
        again at those still not delivered; a delivered message stays
        delivered. After a start the look-back is read a page at a time,
        newest first (``READ_BACK_PAGE`` messages a check, however many the
        shop sends a day), so no check reads a week of messages at once: an
        order left undelivered for days before a start is named within
        (messages in the look-back ÷ the page) checks."""
        cutoff = now - timedelta(seconds=rule.after)
        oldest = cutoff - timedelta(days=rule.within_days)
        if self._scanned_until is None:  # the first check: read back from the cutoff
            self._read_back_from = (cutoff, None)
        else:  # what was made since the previous check
            self._scan(conn, max(oldest, self._scanned_until - LATE_COMMIT), (cutoff, None))
        if self._read_back_from is not None:  # and a page more of the look-back
            self._read_back_from = self._scan(
                conn, oldest, self._read_back_from, self._read_back_page
            )
        if self._scanned_until is None or cutoff > self._scanned_until:
            self._scanned_until = cutoff
        i = inbox.c
        for message_id, created in list(self._not_delivered.items()):
            if created < oldest:
                del self._not_delivered[message_id]
        if self._not_delivered:
            for chunk in in_chunks(sorted(self._not_delivered)):
                for message_id in conn.scalars(
                    select(i.message_id).where(i.consumer == "warehouse", i.message_id.in_(chunk))
                ):
                    del self._not_delivered[message_id]
        missing = [m for m, at in self._not_delivered.items() if at < cutoff]
        failing: set[str] = set()
        for chunk in in_chunks(sorted(missing)):
            d = dead_letters.c
            failing |= set(
                conn.scalars(
                    select(d.message_id).where(d.status == "open", d.message_id.in_(chunk))
                )
            )
        numbers = sorted({m.split("-v", 1)[0] for m in missing if m not in failing})
        if numbers:
            paid = list(
                conn.scalars(
                    select(orders.c.order_number).where(orders.c.order_number.in_(numbers))
                )
            )
            if paid:
                return [
                    Finding(
                        "undelivered_paid",
                        "warehouse",
                        f"{len(paid)} order(s) sent to the warehouse more than "
                        f"{int(rule.after)} s ago and not delivered: {', '.join(paid[:20])}",
                    )
                ]
        return []


Notify = Callable[[dict[str, Any]], bool]


def webhook(client: httpx.Client, url: str) -> Notify:
    """POST the alert as JSON; True when the webhook took it (2xx)."""

    def send(message: dict[str, Any]) -> bool:
        try:
            return client.post(url, json=message).is_success
        except httpx.HTTPError as exc:
            log.warning("alert webhook %s: %s", url, exc)
            return False

    return send


class AlertEvaluator:
    def __init__(
        self,
        engine: Engine,
        settings: AlertSettings,
        notify: Notify | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        queue_depths: Callable[[], list[tuple[str, int]]] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.notify = notify
        self.clock = clock
        self.rules = AlertRules(settings, clock(), queue_depths)

    def check(self) -> list[dict[str, Any]]:
        """One pass: open new incidents, resolve cleared ones, send what the
        webhook has not been told. The messages it sent."""
        now = self.clock()
        sent: list[dict[str, Any]] = []
        with self.engine.begin() as conn:
            findings = {(f.rule, f.subject): f for f in self.rules.findings(conn, now)}
            open_rows = {
                (r.rule, r.subject): r
                for r in conn.execute(select(alerts).where(alerts.c.status == "open"))
            }
            for key, finding in findings.items():
                if key not in open_rows:
                    conn.execute(
                        insert(alerts).values(
                            rule=finding.rule,
                            subject=finding.subject,
                            status="open",
                            summary=finding.summary,
                            opened_at=now,
                        )
                    )
                    log.warning("alert %s/%s: %s", finding.rule, finding.subject, finding.summary)
            for key, row in open_rows.items():
                if key not in findings:
                    conn.execute(
                        update(alerts)
                        .where(alerts.c.id == row.id)
                        .values(status="resolved", resolved_at=now)
                    )
                    log.warning("alert %s/%s resolved", row.rule, row.subject)
            pending = list(
                conn.execute(
                    select(alerts).where(
                        ((alerts.c.status == "open") & alerts.c.notified.is_(None))
                        | ((alerts.c.status == "resolved") & (alerts.c.notified != "resolved"))
                    )
                )
            )
        for row in pending:
            state = "firing" if row.status == "open" else "resolved"
            message = {
                "status": state,
                "rule": row.rule,
                "subject": row.subject,
                "summary": row.summary,
                "opened_at": (_utc(row.opened_at) or now).isoformat(),
                "resolved_at": row.resolved_at and (_utc(row.resolved_at) or now).isoformat(),
                "id": row.id,
            }
            if self.notify is None or self.notify(message):
                with self.engine.begin() as conn:
                    conn.execute(update(alerts).where(alerts.c.id == row.id).values(notified=state))
                sent.append(message)
        return sent

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.check()
            except Exception:  # a check that fails is logged; the next one runs
                log.exception("alert check failed")
            stop.wait(self.settings.interval)
