"""``python -m bench.history``: what the questions people and monitors ask
cost as the history grows.

For each size (``--orders 100000 1000000``) a schema of its own in
PostgreSQL is filled, on the server (``generate_series``), with that many
orders spread over days of ``--per-day`` orders each (10,000 by default: a
longer history is more days, each the same size, so a day's questions are
compared on days alike; 8 channels; each order numbered by a hash, as the
router numbers them, with 1.05 arrivals, three published outbox messages,
three inbox rows; one in 200 with a dead letter),
then each question is asked ``--repeat`` times with varied keys through
orderbus's own functions (the ones the admin API, the console, the metrics
endpoint and the alert evaluator call):

- order lookup by number, by channel + platform number, by phone tail (a
  channel and a day), an order's timeline;
- dead letters grouped by cause with their counts;
- one day's reconciliation: a channel's, every order listed (its CSV, the
  comparison with its export), and every channel's counts with the orders
  not delivered listed (the console's page);
- a metrics scrape; the alert rules' check; the console dashboard's panels,
  read for a whole day (a first load) and refreshed as the console does
  (today, its settled hours remembered).

It prints the p50/p95 in ms per question and size, the ratio of the largest
size to the smallest, and, for every statement a question ran, whether
PostgreSQL's plan reads a large table whole (``Seq Scan``): those are the
questions that do not stay flat. ``--plans`` prints each plan.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, event, text

from admin_api import causes, lookup, reconcile
from admin_api.alerts import AlertRules
from admin_api.metrics import DatabaseCollector
from admin_api.retention import HistoryRetention
from bench.pipeline import private_schema
from console import figures
from console.day_figures import DayFigures
from infra.database import KEY_LOOKUPS, make_engine
from infra.setting_specs import AlertSettings
from orderbus.runner import set_aside_what_start_made

DATABASE = os.environ.get(
    "ORDERBUS_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CHANNELS = ("tmall", "jd", "pinduoduo", "douyin", "youzan", "mini-program", "shopify", "store-sz")
ZONE = ZoneInfo("Asia/Shanghai")
END = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # midnight in Shanghai
BIG_TABLES = ("orders", "arrivals", "outbox", "inbox", "dead_letters")


def fill(engine: Engine, count: int, days: int) -> None:
    """``count`` orders over ``days`` days and their rows, made by PostgreSQL itself."""
    params = {"n": count, "days": days, "end": END, "channels": list(CHANNELS)}
    statements = [
        # An order: number OB + 16 characters of a hash of its id (number_of), a
        # channel, a phone whose last four digits repeat every 10,000 orders,
        # made at a time in the 100 days.
        """
        INSERT INTO orders (id, order_number, channel, shop, external_id, status, status_rank,
            source_version, source_updated_at, content_hash, version, body, created_at,
            updated_at, placed_at, customer_key)
        SELECT i, 'OB' || upper(left(md5(i::text), 16)), c, c || '-flagship',
            upper(c) || '-' || i, 'paid', 2, 1, '2026-11-01T00:00:00+08:00', md5(i::text), 1,
            json_build_object('order_number', 'OB' || upper(left(md5(i::text), 16)), 'channel', c,
                'external_id', upper(c) || '-' || i, 'status', 'paid', 'total', '199.00',
                'currency', 'CNY',
                'customer', json_build_object('name', '王小明',
                    'phone', '138' || lpad((i % 100000000)::text, 8, '0')),
                'shipping_address', json_build_object('province', '广东省', 'city', '深圳市',
                    'district', '南山区', 'street', '科技园路 ' || i || ' 号'),
                'items', json_build_array(json_build_object('sku', 'TEA-' || (i % 50),
                    'quantity', 1 + i % 3, 'unit_price', '66.00')))::text,
            t, t + interval '3 minutes', t - interval '1 minute', md5('k' || i)
        FROM (
            SELECT i, (CAST(:channels AS text[]))[1 + i % 8] AS c,
                CAST(:end AS timestamptz)
                    - make_interval(secs => (:n - i) * (:days * 86400.0 / :n)) AS t
            FROM generate_series(1, :n) AS i
        ) s
        """,
        "SELECT setval(pg_get_serial_sequence('orders', 'id'), :n)",
        """
        INSERT INTO arrivals (message_id, order_id, channel, external_id, outcome,
            order_version, correlation_id, received_at, processed_at, order_number)
        SELECT 'm-' || id, id, channel, external_id, 'new', 1, 'c-' || id,
            created_at - interval '50 milliseconds', created_at, order_number
        FROM orders
        UNION ALL
        SELECT 'd-' || id, id, channel, external_id, 'duplicate', 1, 'c-' || id,
            created_at + interval '1 minute', created_at + interval '1 minute', order_number
        FROM orders WHERE id % 20 = 0
        """,
        """
        INSERT INTO outbox (message_id, exchange, routing_key, headers, correlation_id, body,
            created_at, published_at, attempts, order_number, order_id)
        SELECT o.order_number || '-v1-' || t, 'ob.orders', 'deliver.' || t, '{}', 'c-' || o.id,
            o.body, o.created_at, o.created_at + interval '20 milliseconds', 1, o.order_number,
            o.id
        FROM orders o CROSS JOIN unnest(ARRAY['warehouse', 'finance', 'notification']) AS t
        """,
        """
        INSERT INTO inbox (consumer, message_id, order_number, order_version, outcome,
            response_status, attempts, delivered_at, latency_ms)
        SELECT t, o.order_number || '-v1-' || t, o.order_number, 1, 'delivered', 200, 1,
            o.created_at + interval '80 milliseconds', 60 + o.id % 200
        FROM orders o CROSS JOIN unnest(ARRAY['warehouse', 'finance', 'notification']) AS t
        WHERE o.id % 200 <> 0 OR t <> 'finance'
        """,
        """
        INSERT INTO dead_letters (message_id, queue, exchange, routing_key, channel,
            order_number, reason, detail, headers, body, body_encoding, attempts, status,
            first_failed_at, last_failed_at)
        SELECT order_number || '-v1-finance', 'ob.finance', 'ob.orders', 'deliver.finance',
            channel, order_number,
            (ARRAY['delivery_rejected', 'endpoint_unavailable', 'sku_not_mapped'])[1 + id % 3],
            'finance refused the order with 422: SKU TEA-' || (id % 50) || ' unknown', '{}',
            body, 'utf-8', 4, CASE WHEN id % 1000 = 0 THEN 'open' ELSE 'retried' END,
            created_at + interval '1 second', created_at + interval '1 second'
        FROM orders WHERE id % 200 = 0
        """,
    ]
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), params)
        # each dead letter's cause, as the recorder keeps it (a few distinct texts)
        pairs = conn.execute(text("SELECT DISTINCT reason, detail FROM dead_letters")).all()
        for reason, detail in pairs:
            conn.execute(
                text("UPDATE dead_letters SET cause = :cause WHERE reason = :r AND detail = :d"),
                {"cause": causes.cause_of(reason, detail), "r": reason, "d": detail},
            )
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("VACUUM ANALYZE"))
        # The fill's gigabytes written out now, not while the questions are
        # timed (a history grows over months; its writes are not the questions')
        conn.execute(text("CHECKPOINT"))


@dataclass
class Question:
    name: str
    ask: Callable[[Connection, random.Random], object]
    # run once, untimed, before the timed asks (a rule's first check of a process)
    prepare: Callable[[Connection], object] | None = None


def _day(rng: random.Random, days: int) -> date:
    return (END - timedelta(days=rng.randint(1, max(days - 1, 1)))).astimezone(ZONE).date()


def _number(rng: random.Random, count: int) -> str:
    return number_of(rng.randint(1, count))


def number_of(i: int) -> str:
    """The ``i``-th generated order's number: 16 characters of a hash, as
    the router's numbers are (so an order's rows are spread over the
    indexes by number as in a real history, not kept in the order made)."""
    return "OB" + hashlib.md5(str(i).encode(), usedforsecurity=False).hexdigest()[:16].upper()


def questions(count: int, days: int) -> list[Question]:
    now = END + timedelta(hours=10)

    def by_number(conn: Connection, rng: random.Random) -> object:
        return lookup.find(conn, number=_number(rng, count))

    def by_platform_number(conn: Connection, rng: random.Random) -> object:
        i = rng.randint(1, count)
        channel = CHANNELS[i % 8]
        return lookup.find(conn, channel=channel, external_id=f"{channel.upper()}-{i}")

    def by_phone_tail(conn: Connection, rng: random.Random) -> object:
        since, until = reconcile.window(_day(rng, days), ZONE)
        tail = f"{rng.randint(0, 9999):04d}"
        return lookup.find(conn, phone_tail=tail, channel=rng.choice(CHANNELS), since=since,
                           until=until)  # fmt: skip

    def timeline(conn: Connection, rng: random.Random) -> object:
        return lookup.timeline(conn, _number(rng, count))

    def by_cause(conn: Connection, rng: random.Random) -> object:
        return causes.groups(conn)

    def reconciliation(conn: Connection, rng: random.Random) -> object:
        return reconcile.reconcile(conn, _day(rng, days), channel=rng.choice(CHANNELS), now=now)

    def whole_day(conn: Connection, rng: random.Random) -> object:
        """The console's reconciliation page: every channel of the day, its
        counts and the orders not delivered."""
        return reconcile.reconcile(conn, _day(rng, days), now=now, every_order=False)

    def dashboard(conn: Connection, rng: random.Random) -> object:
        """A console process's first load of a day: nothing remembered yet."""
        start, end = figures.day_window(_day(rng, days), ZONE)
        return (
            DayFigures().read(conn, start, end, ZONE, end).latency(),
            figures.exceptions_by_cause(conn, start, end),
            figures.waiting(conn),
            figures.open_alerts(conn),
        )

    def dashboard_refresh() -> Question:
        """The dashboard as the console asks it: today, again every 20 s, its
        settled hours remembered (console/day_figures.py); "today" is the
        history's last day, asked from 20:00 on, the first ask untimed."""
        day = (END - timedelta(days=1)).astimezone(ZONE).date()
        start, end = figures.day_window(day, ZONE)
        remembered = DayFigures()
        asks = iter(range(10**9))

        def refresh(conn: Connection, _rng: random.Random) -> object:
            at = start + timedelta(hours=20, seconds=20 * next(asks))
            return (
                remembered.read(conn, start, end, ZONE, at).latency(),
                figures.exceptions_by_cause(conn, start, end),
                figures.waiting(conn),
                figures.open_alerts(conn),
            )

        return Question("console dashboard, a refresh (today)", refresh,
                        prepare=lambda conn: refresh(conn, rng0))  # fmt: skip

    def alert_rule(name: str, **rule: Any) -> Question:
        """Checked as the evaluator does: one process, a check a minute, after
        its first (timed apart: "first check after a start")."""
        rules = AlertRules(AlertSettings(**rule), started=END - timedelta(days=days))
        checks = iter(range(10**9))

        def check(conn: Connection, _rng: random.Random) -> object:
            return rules.findings(conn, now + timedelta(minutes=next(checks)))

        return Question(f"alert rule {name}", check, prepare=lambda conn: check(conn, rng0))

    rng0 = random.Random(0)

    def first_check(**rule: Any) -> Callable[[Connection, random.Random], object]:
        """The first check of a process just started (some rules remember)."""

        def check(conn: Connection, _rng: random.Random) -> object:
            rules = AlertRules(AlertSettings(**rule), started=END - timedelta(days=days))
            return rules.findings(conn, now)

        return check

    rules = {
        "silence": {"channels": dict.fromkeys(CHANNELS, 3600)},
        "reject_rate": {},
        "undelivered_paid": {},
        "dead_letters": {},
        "parcel_problems": {},
        "outbox_lag": {},
    }
    return [
        Question("lookup by order number", by_number),
        Question("lookup by channel + platform number", by_platform_number),
        Question("lookup by phone tail (channel, day)", by_phone_tail),
        Question("an order's timeline", timeline),
        Question("dead letters by cause, with counts", by_cause),
        Question("one day's reconciliation (a channel, every order)", reconciliation),
        Question("one day's reconciliation, every channel (the console's page)", whole_day),
        Question("console dashboard panels (a day)", dashboard),
        dashboard_refresh(),
        *(alert_rule(name, **{name: spec}) for name, spec in rules.items()),
        Question(
            "alert rule undelivered_paid, first check after a start",
            first_check(undelivered_paid={}),
        ),
    ]


@dataclass
class Asked:
    times_ms: list[float] = field(default_factory=list)
    # SQL -> (parameters, whether it ran after prefer_key_lookups' SET LOCAL)
    statements: dict[str, tuple[Any, bool]] = field(default_factory=dict)


NO_SEQSCAN = KEY_LOOKUPS


@contextmanager
def _recording(engine: Engine, into: Asked) -> Iterator[None]:
    """Each query statement run (SELECT or WITH), with whether its
    transaction had turned sequential scans off (infra.database.prefer_key_lookups),
    so that its plan is explained as it ran."""

    def before(conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        head = statement.lstrip().upper()
        if head.startswith(NO_SEQSCAN.upper()):
            conn.info["no_seqscan"] = True
        elif head.startswith(("SELECT", "WITH")):
            into.statements.setdefault(statement, (parameters, conn.info.get("no_seqscan", False)))

    def ended(conn: Any) -> None:
        conn.info.pop("no_seqscan", None)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "commit", ended)
    event.listen(engine, "rollback", ended)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "commit", ended)
        event.remove(engine, "rollback", ended)


def ask(engine: Engine, question: Question, repeat: int, seed: int) -> Asked:
    asked = Asked()
    rng = random.Random(seed)
    with _recording(engine, asked):
        if question.prepare is not None:
            with engine.connect() as conn:
                question.prepare(conn)
        for _ in range(repeat):
            with engine.connect() as conn:
                began = time.perf_counter()
                question.ask(conn, rng)
                asked.times_ms.append((time.perf_counter() - began) * 1000)
    return asked


def whole_table_reads(engine: Engine, asked: Asked, show: bool) -> list[str]:
    """The large tables a statement's plan reads whole."""
    found: set[str] = set()
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        for statement, (parameters, no_seqscan) in asked.statements.items():
            try:
                with raw.cursor() as cursor:
                    if no_seqscan:
                        cursor.execute(NO_SEQSCAN)
                    cursor.execute(f"EXPLAIN {statement}", parameters)
                    plan = "\n".join(row[0] for row in cursor.fetchall())
                raw.rollback()  # the SET LOCAL ends with the transaction
            except Exception as exc:
                raw.rollback()
                plan = f"(no plan: {exc})"
            if show:
                print(f"\n```\n{statement.strip()}\n{plan}\n```")
            found |= {t for t in BIG_TABLES if f"Seq Scan on {t} " in plan + " "}
    return sorted(found)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    parser.add_argument("--orders", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument(
        "--per-day",
        type=int,
        default=10_000,
        help="orders a day: a longer history is more days of the same size",
    )
    parser.add_argument("--plans", action="store_true", help="print every statement's plan")
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument(
        "--retention",
        type=float,
        default=30,
        metavar="DAYS",
        help="then run the history retention at this age (0: not)",
    )
    args = parser.parse_args(argv)
    results: dict[int, dict[str, tuple[float, float, list[str]]]] = {}
    retained: dict[int, str] = {}
    for count in args.orders:
        with private_schema(DATABASE, "bench_history") as url:
            engine = make_engine(url)
            days = max(2, count // args.per_day)
            began = time.perf_counter()
            fill(engine, count, days)
            print(f"{count:,} orders over {days} days generated in "
                  f"{time.perf_counter() - began:.0f} s", flush=True)  # fmt: skip
            results[count] = {}
            set_aside_what_start_made()  # as orderbus's processes do once started
            for question in questions(count, days):
                asked = ask(engine, question, args.repeat, args.seed)
                scans = whole_table_reads(engine, asked, args.plans)
                p50 = statistics.median(asked.times_ms)
                results[count][question.name] = (p50, _pct(asked.times_ms, 0.95), scans)
                print(f"  {question.name}: p50 {p50:.1f} ms, p95 "
                      f"{_pct(asked.times_ms, 0.95):.1f} ms, reads whole: {scans or '-'}",
                      flush=True)  # fmt: skip
            scrape = ask(engine, Question("metrics", _scrape(engine)), args.repeat, 0)
            scans = whole_table_reads(engine, scrape, args.plans)
            results[count]["a metrics scrape"] = (
                statistics.median(scrape.times_ms),
                _pct(scrape.times_ms, 0.95),
                scans,
            )
            print(f"  a metrics scrape: p95 {_pct(scrape.times_ms, 0.95):.1f} ms", flush=True)
            if args.retention:
                retained[count] = _retention(engine, args.retention)
            engine.dispose()
    sizes = sorted(results)
    print("\n| question | " + " | ".join(f"p95 ms at {n:,}" for n in sizes)
          + " | largest ÷ smallest | reads a large table whole |")  # fmt: skip
    print("|---" * (len(sizes) + 3) + "|")
    for name in results[sizes[0]]:
        p95s = [results[n][name][1] for n in sizes]
        scans = sorted({t for n in sizes for t in results[n][name][2]})
        ratio = p95s[-1] / max(p95s[0], 0.01)
        print(f"| {name} | " + " | ".join(f"{p:.1f}" for p in p95s)
              + f" | {ratio:.1f} | {', '.join(scans) or 'no'} |")  # fmt: skip
    for count, line in retained.items():
        print(f"\nretention at {count:,} orders: {line}")
    return 0


def _retention(engine: Engine, days: float) -> str:
    """Run the history retention once over the generated days; its figures."""
    retention = HistoryRetention(engine, days, clock=lambda: END + timedelta(hours=10))
    began = time.perf_counter()
    deleted = retention.purge_once()
    took = time.perf_counter() - began
    parts = [
        f"{name} {len(times):,} transactions p50 {1000 * statistics.median(times):.0f} ms "
        f"p99 {1000 * _pct(times, 0.99):.0f} ms longest {1000 * max(times):.0f} ms"
        for name, times in retention.batch_seconds.items()
    ]
    line = (
        f"{sum(deleted.values()):,} rows deleted {deleted} in {took:.0f} s (the days' "
        f"reconciliations kept first); deletes of 500: {'; '.join(parts)}"
    )
    print(f"  retention: {line}", flush=True)
    return line


def _scrape(engine: Engine) -> Callable[[Connection, random.Random], object]:
    collector = DatabaseCollector(engine, clock=lambda: END + timedelta(hours=10))

    def scrape(_conn: Connection, _rng: random.Random) -> object:
        return list(collector.collect())

    return scrape


if __name__ == "__main__":
    raise SystemExit(main())
