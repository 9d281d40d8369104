"""Fault injection: a stream of orders through orderbus's separate processes,
the real RabbitMQ and PostgreSQL, while things break. Checked at the sinks."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pika
import pytest

from infra.settings import TARGETS
from tests.factories import body_of, order_dict, signed_headers
from tests.faults.conftest import ORDERS, REPORTS
from tests.faults.harness import (
    SECRET,
    Checker,
    Cluster,
    Downstream,
    Report,
    Workload,
    rabbitmqctl,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(1800)]


class Run:
    def __init__(self, tmp: Path, amqp_url: str, database_url: str, namespace: str) -> None:
        self.tmp, self.amqp_url, self.database_url, self.namespace = (
            tmp,
            amqp_url,
            database_url,
            namespace,
        )
        self.downstream = Downstream()
        self.cluster: Cluster | None = None

    def start(
        self,
        orders: int = ORDERS,
        routers: int = 1,
        crash_points: dict[str, str] | None = None,
        invalid: int = 10,
        proxies: bool = False,
    ) -> tuple[Cluster, Workload, Checker]:
        self.cluster = Cluster(
            self.tmp,
            self.amqp_url,
            self.database_url,
            self.namespace,
            self.downstream,
            routers=routers,
            crash_points=crash_points,
            proxies=proxies,
        )
        self.cluster.start()
        workload = Workload(orders, invalid=invalid)
        return self.cluster, workload, Checker(self.cluster, self.downstream, workload)

    def finish(self, report: Report) -> None:
        REPORTS.append(report)
        print(report.row(), json.dumps(report.details, default=str)[:2000])
        assert self.cluster is not None
        assert all(self.cluster.alive().values()), f"a process is down\n{self.cluster.logs()}"
        assert report.lost == 0, (report.details, self.cluster.logs())
        assert report.duplicate_effects == 0, report.details
        assert report.unexplained == 0, report.details

    def stop(self) -> None:
        if self.cluster is not None:
            exits = self.cluster.stop()
            slow = {r: e for r, e in exits.items() if e[1] > 35}
            assert not slow, f"shutdown took too long: {slow}"
        self.downstream.stop()


@pytest.fixture
def run(tmp_path: Path, amqp_url: str, postgres_url: str, namespace: str) -> Iterator[Run]:
    r = Run(tmp_path, amqp_url, postgres_url, namespace)
    yield r
    r.stop()


def test_baseline(run: Run) -> None:
    """No fault: the reference for the other rows."""
    cluster, workload, checker = run.start()
    started = time.monotonic()
    workload.run(cluster.ingest_url)
    ended = time.monotonic()
    recovery = checker.wait_quiescent(ended)
    report = checker.report("no fault (baseline)", recovery)
    report.details["orders_per_s"] = round(len(workload.sends) / (ended - started), 1)
    run.finish(report)


def test_router_kill9(run: Run) -> None:
    """kill -9 of the router at random points, at least 20 times, restarted each
    time; plus crash points between the commit and the ack and between the
    publish confirm and the outbox mark."""
    cluster, workload, checker = run.start(
        crash_points={"router": "router.after_commit:0.002,relay.after_publish:0.002"}
    )
    rng = random.Random(11)
    load = workload.start(cluster.ingest_url)
    kills = 0
    while load.is_alive() or kills < 20:
        time.sleep(rng.uniform(0.2, 1.5))
        cluster.kill9("router0")
        kills += 1
    ended = time.monotonic()
    load.join()
    recovery = checker.wait_quiescent(ended)
    crashed = cluster.exit_codes["router0"][137] if "router0" in cluster.exit_codes else 0
    report = checker.report(f"kill -9 router x{kills} (+{crashed} crash-point exits)", recovery)
    run.finish(report)
    assert kills >= 20


def test_consumers_kill9(run: Run) -> None:
    """kill -9 of the consumers process five times, plus crash points between
    a 2xx and its inbox row. Each delivery's row is committed before the next
    send, so a crash repeats at most the delivery in flight in each of the
    three target consumers (84d73a3 re-sent whole batches: 49 repeats from two
    kills)."""
    cluster, workload, checker = run.start(
        crash_points={"consumers": "consumer.after_delivery:0.002"}
    )
    load = workload.start(cluster.ingest_url)
    for _ in range(5):
        time.sleep(2)
        cluster.kill9("consumers")
    ended = time.monotonic()
    load.join()
    recovery = checker.wait_quiescent(ended)
    exits = cluster.exit_codes.get("consumers", Counter())
    crashes = 5 + exits.get(137, 0)
    report = checker.report(f"kill -9 consumers x5 (+{crashes - 5} crash points)", recovery)
    report.details["repeats_per_crash"] = round(report.redeliveries / crashes, 2)
    run.finish(report)
    assert report.redeliveries <= len(TARGETS) * crashes, (report.redeliveries, crashes)


def test_broker_restart(run: Run) -> None:
    """RabbitMQ stop_app / start_app mid-stream, then connections dropped through
    the TCP proxy every 2 s."""
    cluster, workload, checker = run.start(proxies=True)
    load = workload.start(cluster.ingest_url)
    time.sleep(3)
    rabbitmqctl("stop_app")
    time.sleep(10)
    rabbitmqctl("start_app")
    for _ in range(5):
        time.sleep(2)
        cluster.broker_proxy.drop()
    ended = time.monotonic()
    load.join()
    run.finish(
        checker.report("broker restart + 5 dropped connections", checker.wait_quiescent(ended))
    )


def test_database_outage(run: Run) -> None:
    """PostgreSQL unreachable for 30 s (through the proxy: connections reset,
    new ones refused)."""
    cluster, workload, checker = run.start(proxies=True)
    load = workload.start(cluster.ingest_url)
    time.sleep(3)
    cluster.db_proxy.disable()
    time.sleep(30)
    cluster.db_proxy.enable()
    ended = time.monotonic()
    load.join()
    report = checker.report("PostgreSQL down 30 s", checker.wait_quiescent(ended))
    run.finish(report)
    assert report.dead_lettered == workload.invalid  # the outage itself dead-lettered nothing


def test_downstream_failures(run: Run) -> None:
    """finance answers 500 and the warehouse hangs past the timeout for a while,
    then both recover; what was dead-lettered meanwhile is retried by an
    operator through the admin API and delivered once."""
    cluster, workload, checker = run.start()
    load = workload.start(cluster.ingest_url)
    time.sleep(2)
    run.downstream.mode.update(finance="error", warehouse="hang")
    time.sleep(20)
    run.downstream.mode.update(finance="ok", warehouse="ok")
    ended = time.monotonic()
    load.join()
    checker.wait_quiescent(ended)
    retried = checker.retry_dead_letters("endpoint_unavailable")
    recovery = checker.wait_quiescent(ended)
    report = checker.report(f"downstream 500s/timeouts 20 s ({retried} retried)", recovery)
    run.finish(report)
    assert retried > 0


POISON: list[tuple[bytes, dict[str, Any], str]] = [
    (b"not json at all", {"x-orderbus-channel": "web-shop"}, "malformed_json"),
    (b'{"hello": "world"}', {"x-orderbus-channel": "web-shop"}, "schema_mismatch"),
    (
        b'{"pad": "' + b"x" * 1_000_000 + b'"}',
        {"x-orderbus-channel": "web-shop"},
        "schema_mismatch",
    ),
    (b'{"note": "\xff\xfe"}', {"x-orderbus-channel": "web-shop"}, "invalid_encoding"),
    (body_of(order_dict(external_id="NO-HEADER")), {}, "missing_envelope"),
]


def test_poison_messages(run: Run, amqp_url: str, namespace: str) -> None:
    """Another system publishes garbage straight into orderbus's queues: each
    piece is dead-lettered with its reason, and the stream keeps flowing."""
    cluster, workload, checker = run.start()
    load = workload.start(cluster.ingest_url)
    parts = urlsplit(amqp_url)
    params = pika.URLParameters(amqp_url)
    params.virtual_host = unquote(parts.path[1:]) or "/"
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.confirm_delivery()
    for i, (body, headers, _reason) in enumerate(POISON):
        channel.basic_publish(
            "",
            f"{namespace}.router",
            body,
            pika.BasicProperties(
                message_id=f"poison-{i}", headers=headers, content_type="application/json"
            ),
            mandatory=True,
        )
    # and a consumer queue gets an order without its envelope
    channel.basic_publish(
        "",
        f"{namespace}.warehouse",
        body_of(order_dict(external_id="STRAY")),
        pika.BasicProperties(message_id="poison-w"),
        mandatory=True,
    )
    connection.close()
    ended = time.monotonic()
    load.join()
    report = checker.report(
        "poison messages (6)", checker.wait_quiescent(ended), extra_letters=len(POISON)
    )
    with cluster.engine.connect() as conn:
        from sqlalchemy import select

        from infra.tables import dead_letters

        letters = {r.message_id: r for r in conn.execute(select(dead_letters))}
    for i, (_body, _headers, reason) in enumerate(POISON):
        assert letters[f"poison-{i}"].reason == reason, letters[f"poison-{i}"].detail
    assert letters["poison-w"].reason == "missing_envelope"
    assert all(d.reason and d.detail for d in letters.values())
    run.finish(report)


def test_duplicate_flood(run: Run) -> None:
    """One order sent 1,000 times concurrently into two router processes."""
    cluster, workload, checker = run.start(orders=1, routers=2, invalid=0)
    body = body_of(order_dict(external_id="F-000000", note="flood"))
    statuses: list[int] = []
    lock = threading.Lock()

    def send(_: int) -> None:
        with httpx.Client(timeout=30) as client:
            for _attempt in range(20):
                r = client.post(
                    cluster.ingest_url, content=body, headers=signed_headers(SECRET, body)
                )
                if r.status_code == 202:
                    break
                time.sleep(0.5)
            with lock:
                statuses.append(r.status_code)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(50) as pool:
        list(pool.map(send, range(1000)))
    workload.accepted["F-000000"] = statuses.count(202)
    workload.done.set()
    ended = time.monotonic()
    report = checker.report("duplicate flood 1,000x into 2 routers", checker.wait_quiescent(ended))
    run.finish(report)
    assert statuses.count(202) == 1000
    assert report.details["outcomes"] == {"new": 1, "duplicate": 999}


def test_sigterm_during_load(run: Run) -> None:
    """SIGTERM to the router and the consumers under load: each finishes what it
    holds and exits 0 within the bound; restarted, nothing is lost."""
    cluster, workload, checker = run.start()
    load = workload.start(cluster.ingest_url)
    exits = []
    for role in ("router0", "consumers", "router0", "consumers"):
        time.sleep(2)
        exits.append(cluster.sigterm(role))
    ended = time.monotonic()
    load.join()
    run.finish(
        checker.report("SIGTERM router/consumers x4 under load", checker.wait_quiescent(ended))
    )
    assert all(code == 0 for code, _ in exits), exits
    assert max(seconds for _, seconds in exits) < 35, exits


def test_broker_memory_alarm(run: Run) -> None:
    """RabbitMQ raises its memory alarm (connection.blocked) for 15 s: publishers
    get no confirm, so the ingest answers 503 instead of 202-then-lost, the
    consumers keep draining, and everything flows once the alarm clears."""
    cluster, workload, checker = run.start()
    load = workload.start(cluster.ingest_url)
    time.sleep(3)
    try:
        rabbitmqctl("set_vm_memory_high_watermark", "0")
        time.sleep(15)
    finally:
        rabbitmqctl("set_vm_memory_high_watermark", "0.4")
    ended = time.monotonic()
    load.join()
    run.finish(checker.report("broker memory alarm 15 s", checker.wait_quiescent(ended)))
