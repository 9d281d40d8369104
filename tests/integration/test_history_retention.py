"""History retention, on both backends: the arrivals, outbox and inbox rows
older than the retention go in small batches; the reconciliation of their
days is kept first and answered, entry for entry, after they went; newer
rows stay, and an old order arriving again is not counted twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select

from admin_api import reconcile
from admin_api.retention import HistoryRetention
from infra.settings import Settings
from infra.tables import arrivals, inbox, outbox, reconciled_orders
from infra.topology import build_topology
from router.service import RouterService
from tests.factories import delivery_for, order
from tests.unit.test_reconciliation import deliver_all, number_of, shift_every_time

ZONE = ZoneInfo("Asia/Shanghai")


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


def _states(report: reconcile.Report) -> dict[str | None, str]:
    return {e.external_id: e.state for e in report.entries}


def test_old_rows_go_and_their_days_are_still_reconciled(engine: Engine) -> None:
    router = RouterService(engine, build_topology(Settings(namespace="t")))
    for n in range(1, 8):
        router.handle(delivery_for(order(external_id=f"OLD-{n}"), message_id=f"m-old-{n}"))
        if n != 7:  # OLD-7's messages never reached a system
            deliver_all(engine, number_of(engine, f"OLD-{n}"), datetime.now(UTC))
    shift_every_time(engine, -timedelta(days=40))
    now = datetime.now(UTC)
    old_day = (now - timedelta(days=40)).astimezone(ZONE).date()
    with engine.connect() as conn:
        before = reconcile.reconcile(conn, old_day, router_queue="t.router", now=now)
    assert _states(before)["OLD-7"] == "unexplained" and len(before.entries) == 7
    router.handle(delivery_for(order(external_id="NEW-1"), message_id="m-new-1"))
    router.handle(delivery_for(order(external_id="OLD-1"), message_id="m-old-1-again"))

    retention = HistoryRetention(engine, 30, router_queue="t.router", batch=4, clock=lambda: now)
    deleted = retention.purge_once()

    assert deleted == {"arrivals": 7, "outbox": 0, "inbox": 18}  # outbox: never published
    batches = {name: len(times) for name, times in retention.batch_seconds.items()}
    assert batches == {"arrivals": 2, "outbox": 1, "inbox": 5}  # 4 rows each, not one delete
    with engine.connect() as conn:
        kept = reconcile.reconcile(conn, old_day, router_queue="t.router", now=now)
        today = reconcile.reconcile(conn, now.astimezone(ZONE).date(), now=now)
        kept_page = reconcile.reconcile(
            conn, old_day, router_queue="t.router", now=now, every_order=False
        )
    assert kept.kept and _states(kept) == _states(before)
    assert kept.as_csv() == before.as_csv()
    assert kept_page.as_dict() == kept.as_dict() and _states(kept_page) == {"OLD-7": "unexplained"}
    assert kept_page.delivered_unlisted == {"web-shop": 6}
    assert [e.external_id for e in today.entries] == ["NEW-1"]  # OLD-1 again is the old day's
    assert _count(engine, arrivals) == 2 and _count(engine, inbox) == 0
    assert _count(engine, outbox) == 21 + 3  # unpublished rows wait for the relay

    assert retention.purge_once() == {"arrivals": 0, "outbox": 0, "inbox": 0}
    assert _count(engine, reconciled_orders) == 7  # kept once


def test_each_batch_is_read_from_where_the_previous_one_ended(engine: Engine) -> None:
    """A purge of millions of rows must not read from the oldest row at each
    batch (walking past every row deleted before it): after the first, each
    batch's read starts at the time the previous one ended."""
    from sqlalchemy import event

    router = RouterService(engine, build_topology(Settings(namespace="t")))
    for n in range(1, 6):
        router.handle(delivery_for(order(external_id=f"GONE-{n}"), message_id=f"m-gone-{n}"))
        deliver_all(engine, number_of(engine, f"GONE-{n}"), datetime.now(UTC))
    shift_every_time(engine, -timedelta(days=40))
    now = datetime.now(UTC)
    reads: list[str] = []

    def seen(
        _conn: object, _cursor: object, statement: str, parameters: object, *_: object
    ) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM inbox" in statement:
            if "ORDER BY inbox.delivered_at" in statement:
                reads.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        deleted = HistoryRetention(engine, 30, batch=4, clock=lambda: now).purge_once()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert deleted["inbox"] == 15 and len(reads) == 4  # 4 + 4 + 4 + 3
    assert ">=" not in reads[0] and all(">=" in statement for statement in reads[1:])
