"""The daily digest: yesterday's numbers in the team's chat, every morning
(``ORDERBUS_DIGEST``), for the people who will not open a dashboard.

After ``at`` (local time) the admin process sums up the day before: orders
and amounts per channel, cancellations and refunds, exceptions by cause,
orders still held, exceptions still open, and whether the day balances
(reconciliation). The day is claimed in the ``digests`` table before the
robot is called and marked sent after, so several admin processes send it
once; a claim left by a crash is taken over after ``stale`` seconds (the
robot may then get that day twice, never zero times). A robot that does not
take it is tried again at the next check.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from admin_api import reconcile
from console import advice, figures
from console.i18n import Formats, gettext_for
from infra.database import translate_db_errors
from infra.setting_specs import DigestSettings
from infra.tables import digests

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Digest:
    day: date
    title: str
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join([self.title, *self.lines])


def compose(
    engine: Engine, day: date, settings: DigestSettings, router_queue: str | None
) -> Digest:
    """The digest of ``day`` in the settings' language and zone."""
    zone = ZoneInfo(settings.timezone)
    _ = gettext_for(settings.language)
    fmt = Formats(settings.language, zone)
    start, end = figures.day_window(day, zone)
    with translate_db_errors(), engine.connect() as conn:
        sales = figures.sales(conn, start, end, zone, "day", "channel")
        by_cause = figures.exceptions_by_cause(conn, start, end)
        waiting = figures.waiting(conn)
        report = reconcile.reconcile(
            conn, day, timezone=settings.timezone, router_queue=router_queue
        )
    orders = sum(b.orders for b in sales.values())
    amounts: dict[str, Decimal] = {}
    for bucket in sales.values():
        for currency, value in bucket.amounts.items():
            amounts[currency] = amounts.get(currency, Decimal("0")) + value
    money = " + ".join(fmt.money(v, c) for c, v in sorted(amounts.items())) or fmt.money(0, "CNY")
    lines = [
        _("Orders: %(n)s, %(amount)s", n=orders, amount=money),
        *(
            "  · " + _("%(channel)s: %(n)s orders", channel=key, n=bucket.orders)
            for (_day, key), bucket in sales.items()
        ),
        _(
            "Cancelled: %(c)s, refunded: %(r)s",
            c=sum(b.cancelled for b in sales.values()),
            r=sum(b.refunded for b in sales.values()),
        ),
        _("Exceptions: %(n)s", n=sum(by_cause.values())),
        *(
            "  · " + _("%(cause)s: %(n)s", cause=advice.title(_, cause), n=n)
            for cause, n in by_cause.most_common()
        ),
        _(
            "Now waiting: %(holds)s held for approval, %(letters)s exceptions open",
            holds=waiting["holds"],
            letters=waiting["dead_letters"],
        ),
    ]
    counts = report.counts()
    if counts["unexplained"]:
        lines.append(_("Reconciliation: NOT balanced, %(n)s unexplained", n=counts["unexplained"]))
    else:
        lines.append(_("Reconciliation: balanced (%(n)s received)", n=counts["received"]))
    if settings.console_url:
        lines.append(_("Console: %(url)s", url=settings.console_url))
    title = _("orderbus daily digest for %(day)s", day=day.isoformat())
    return Digest(day, title, lines)


def payload(digest: Digest, kind: str) -> dict[str, Any]:
    """The robot's message: WeCom and DingTalk markdown, Feishu text, or JSON."""
    if kind == "wecom":
        return {
            "msgtype": "markdown",
            "markdown": {"content": f"**{digest.title}**\n" + "\n".join(digest.lines)},
        }
    if kind == "dingtalk":
        return {
            "msgtype": "markdown",
            "markdown": {
                "title": digest.title,
                "text": f"### {digest.title}\n\n" + "\n\n".join(digest.lines),
            },
        }
    if kind == "feishu":
        return {"msg_type": "text", "content": {"text": digest.text}}
    return {"day": digest.day.isoformat(), "title": digest.title, "lines": digest.lines}


class DailyDigest:
    def __init__(
        self,
        engine: Engine,
        settings: DigestSettings,
        client: httpx.Client,
        router_queue: str | None = None,
        interval: float = 60.0,
        stale: float = 600.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.client = client
        self.router_queue = router_queue
        self.interval = interval
        self.stale = timedelta(seconds=stale)
        self.clock = clock
        hours, minutes = (int(part) for part in settings.at.split(":"))
        self.at = time(hours, minutes)
        self.zone = ZoneInfo(settings.timezone)

    def due(self) -> date | None:
        """The day whose digest is due now (yesterday, once ``at`` has passed)."""
        local = self.clock().astimezone(self.zone)
        return local.date() - timedelta(days=1) if local.time() >= self.at else None

    def send_once(self) -> bool:
        """Send the due digest unless it was sent; True when this call sent it."""
        day = self.due()
        if day is None or not self._claim(day):
            return False
        digest = compose(self.engine, day, self.settings, self.router_queue)
        try:
            answer = self.client.post(
                self.settings.webhook_url, json=payload(digest, self.settings.format)
            )
            taken = answer.is_success
        except httpx.HTTPError as exc:
            log.warning(
                "digest: the robot at %s did not answer: %s", self.settings.webhook_url, exc
            )
            taken = False
        with translate_db_errors(), self.engine.begin() as conn:
            if taken:
                conn.execute(
                    update(digests)
                    .where(digests.c.day == day.isoformat())
                    .values(status="sent", sent_at=self.clock())
                )
            else:  # let the next check try again
                conn.execute(
                    delete(digests).where(
                        digests.c.day == day.isoformat(), digests.c.status == "sending"
                    )
                )
        if taken:
            log.info("digest for %s sent", day)
        return taken

    def _claim(self, day: date) -> bool:
        now = self.clock()
        key = day.isoformat()
        with translate_db_errors(), self.engine.begin() as conn:
            row = conn.execute(select(digests).where(digests.c.day == key)).first()
            if row is not None:
                claimed = (
                    row.claimed_at if row.claimed_at.tzinfo else row.claimed_at.replace(tzinfo=UTC)
                )
                if row.status == "sent" or now - claimed < self.stale:
                    return False
                taken = conn.execute(
                    update(digests)
                    .where(digests.c.day == key, digests.c.claimed_at == row.claimed_at)
                    .values(claimed_at=now)
                ).rowcount
                return bool(taken)
        try:
            with translate_db_errors(), self.engine.begin() as conn:
                conn.execute(insert(digests).values(day=key, status="sending", claimed_at=now))
        except IntegrityError:  # another admin process claimed it first
            return False
        return True

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.send_once()
            except Exception:  # logged; tried again at the next check
                log.exception("digest failed")
            stop.wait(self.interval)
