"""Stock back to the channels: the quantities the intake recorded
(router/stock.py, ``stock_pushes``) sent to each channel, coalescing bursts.

Every ``ORDERBUS_STOCK.interval`` seconds the pusher reads the listings whose
quantity differs from what was last sent, and sends each its latest quantity,
at most ``rate`` requests a second per channel. A listing that changed again
meanwhile is sent once, with its newest quantity: the one row per listing is
the coalescing. A send is recorded only for the quantity it sent (if the
quantity moved during the call, the listing stays due). A channel that is
down is tried again next round; a listing refused keeps the reason
(``last_error``) and is tried again next round, up to ``MAX_ATTEMPTS``
times; then it waits for its next change (nothing is retried forever).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Engine, or_, select, update

from canonical.errors import PermanentError, TransientError
from canonical.stock import MAX_PUSH_ATTEMPTS as MAX_ATTEMPTS
from infra.database import translate_db_errors
from infra.setting_specs import StockSettings
from infra.tables import stock_pushes
from targets.adapters.base import Pacer

log = logging.getLogger(__name__)


class StockWriter(Protocol):
    def send(self, platform_sku: str, quantity: int, as_of: datetime) -> None:
        """Set the listing's available quantity; TransientError or PermanentError."""


class StockPusher:
    def __init__(
        self, engine: Engine, settings: StockSettings, writers: Mapping[str, StockWriter]
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.writers = writers
        self.pacers = {name: Pacer(spec.rate) for name, spec in settings.channels.items()}

    def due(self, limit: int = 1000) -> list[tuple[str, str, int, datetime]]:
        p = stock_pushes.c
        with translate_db_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                select(p.channel, p.platform_sku, p.quantity, p.as_of)
                .where(
                    or_(p.pushed_quantity.is_(None), p.pushed_quantity != p.quantity),
                    p.attempts < MAX_ATTEMPTS,
                )
                .order_by(p.as_of)
                .limit(limit)
            ).all()
        return [(r.channel, r.platform_sku, r.quantity, r.as_of) for r in rows]

    def push_once(self) -> int:
        """Send each listing due; how many were sent."""
        sent = 0
        down: set[str] = set()
        for channel, platform_sku, quantity, as_of in self.due():
            writer = self.writers.get(channel)
            if writer is None or channel in down:
                continue
            self.pacers[channel].wait()
            try:
                writer.send(platform_sku, quantity, as_of)
            except TransientError as exc:
                down.add(channel)  # the rest of this channel waits for the next round
                self._failed(channel, platform_sku, quantity, exc.detail)
                continue
            except PermanentError as exc:
                self._failed(channel, platform_sku, quantity, exc.detail)
                continue
            self._sent(channel, platform_sku, quantity)
            sent += 1
        if sent:
            log.info("stock: %d listings sent to their channels", sent)
        return sent

    def _sent(self, channel: str, platform_sku: str, quantity: int) -> None:
        p = stock_pushes.c
        with translate_db_errors(), self.engine.begin() as conn:
            conn.execute(
                update(stock_pushes)
                .where(p.channel == channel, p.platform_sku == platform_sku, p.quantity == quantity)
                .values(
                    pushed_quantity=quantity, pushed_at=datetime.now(UTC), attempts=0,
                    last_error=None,
                )
            )  # fmt: skip

    def _failed(self, channel: str, platform_sku: str, quantity: int, why: str) -> None:
        log.warning("stock: %s %s = %d not sent: %s", channel, platform_sku, quantity, why)
        p = stock_pushes.c
        with translate_db_errors(), self.engine.begin() as conn:
            conn.execute(
                update(stock_pushes)
                .where(p.channel == channel, p.platform_sku == platform_sku)
                .values(attempts=p.attempts + 1, last_error=why[:2000])
            )

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.push_once()
            except Exception:  # logged; the next round tries again
                log.exception("stock pusher failed")
            stop.wait(self.settings.interval)
