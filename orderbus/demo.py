"""``orderbus demo``: the whole pipeline in one process, on the embedded default.

It starts every component (SQLite for orderbus's tables, kombu's SQL transport
on SQLite as the broker, both in a fresh temporary folder unless told
otherwise), stands in for the warehouse, finance and notification systems
with a local HTTP server, sends signed orders through the real webhook
endpoint, and prints what each system received and what was dead-lettered.
"""

from __future__ import annotations

import copy
import json
import secrets
import socket
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from connectors.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from infra.database import upgrade
from infra.settings import TARGETS, Settings
from infra.tables import audit_log, dead_letters, outbox, rejected_requests
from orderbus.bootstrap import bootstrap
from orderbus.receiver import RecordingSink
from orderbus.runner import Daemon

CHANNEL = "web-shop"


def sample_order() -> dict[str, Any]:
    text = resources.files("connectors").joinpath("samples/order-paid.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scenario() -> list[tuple[str, dict[str, Any]]]:
    paid = sample_order()
    created = copy.deepcopy(paid) | {"external_id": "WS-10002", "status": "created"}
    created_then_paid = copy.deepcopy(created) | {"status": "paid", "version": 2}
    invalid = copy.deepcopy(paid) | {"external_id": "WS-10003", "total": "999.00"}
    invalid["customer"] = invalid["customer"] | {"phone": "1380013"}
    erp_refuses = copy.deepcopy(paid) | {"external_id": "WS-10004"}
    erp_refuses["customer"] = erp_refuses["customer"] | {"name": "未开户客户"}
    return [
        ("a paid order", paid),
        ("the same webhook replayed", paid),
        ("a new order, not yet paid", created),
        ("the same order, now paid (version 2)", created_then_paid),
        ("an order with a bad phone and a wrong total", invalid),
        ("an order the finance system refuses (unknown customer)", erp_refuses),
    ]


def run_demo(
    broker_url: str | None = None,
    database_url: str | None = None,
    timeout: float = 90,
    keep_open: bool = False,
) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="orderbus-demo-"))
    finance_knows_customer = {"value": False}

    def respond(target: str, body: dict[str, Any]) -> int | tuple[int, dict[str, Any]]:
        name = body.get("customer", {}).get("name")
        if target == "finance" and name == "未开户客户" and not finance_knows_customer["value"]:
            return 422, {
                "error": "customer_not_found",
                "message": f"no customer account for {name}",
            }
        return 200

    sink = RecordingSink(respond).start()
    secret, admin_token = secrets.token_hex(16), secrets.token_hex(16)
    settings = _demo_settings(workdir, sink, secret, admin_token, broker_url, database_url)
    print(f"orderbus demo in {workdir}")
    print(f"  database: {settings.database_url}\n  broker:   {settings.broker_url}\n")
    upgrade(settings.database_url)
    daemon = Daemon(bootstrap(settings))
    daemon.start()
    try:
        if not daemon.wait_ready(60):
            print("orderbus did not start; see the log above")
            return 1
        ingest = f"http://127.0.0.1:{settings.ingest_port}/ingest/{CHANNEL}"
        admin = f"http://127.0.0.1:{settings.admin_port}"
        with httpx.Client(timeout=30) as client:
            _send_orders(client, ingest, secret)
            # 3 orders reach notification (2 paid + 1 created + 1 update = 4),
            # warehouse 3 paid, finance 2 (one refused), dead letters 2.
            expected = {"warehouse": 3, "finance": 2, "notification": 4}
            _wait(lambda: _settled(daemon, sink, expected, 2), timeout)
            print(
                "\nThe finance system now knows the customer; an operator retries its dead letter:"
            )
            finance_knows_customer["value"] = True
            _retry_finance(client, admin, {"Authorization": f"Bearer {admin_token}"})
            expected["finance"] = 3
            _wait(lambda: _settled(daemon, sink, expected, 1), timeout)
        _report(daemon, sink)
        if keep_open:
            _stay_open(admin, admin_token)
        return 0
    finally:
        daemon.shutdown(15)
        sink.stop()


def _stay_open(admin: str, admin_token: str) -> None:
    """Keep the demo running so a person can look at it in the console."""
    print(f"\n控制台 The console: {admin}/console/")
    print(f"  登录密钥 log in with the key: {admin_token}")
    print("  Ctrl-C 结束 to stop")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print()


def _demo_settings(
    workdir: Path,
    sink: RecordingSink,
    secret: str,
    admin_token: str,
    broker_url: str | None,
    database_url: str | None,
) -> Settings:
    """Everything in ``workdir`` (unless real services are named), the three
    systems played by the local receiver, quick retries."""
    return Settings(
        database_url=database_url or f"sqlite:///{workdir}/orderbus.db",
        broker_url=broker_url or f"sqla+sqlite:///{workdir}/broker.db",
        namespace="demo",
        channel_secrets={CHANNEL: [secret]},
        admin_tokens={"demo-operator": admin_token},
        ingest_port=free_port(),
        admin_port=free_port(),
        warehouse_url=sink.url("warehouse"),
        finance_url=sink.url("finance"),
        notification_url=sink.url("notification"),
        delivery_attempts=2,
        retry_initial_wait=0.1,
        retry_max_wait=0.2,
    )


def _signed_post(client: httpx.Client, url: str, secret: str, body: bytes) -> httpx.Response:
    ts = int(time.time())
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: sign(secret, ts, body),
    }
    return client.post(url, content=body, headers=headers)


def _send_orders(client: httpx.Client, ingest: str, secret: str) -> None:
    """The scenario's orders, signed as the channel signs them, then a forgery."""
    for label, order in scenario():
        body = json.dumps(order, ensure_ascii=False).encode("utf-8")
        response = _signed_post(client, ingest, secret, body)
        print(f"-> {label}: {order['external_id']} {order['status']}: HTTP {response.status_code}")
    forged = json.dumps(sample_order()).encode()
    response = _signed_post(client, ingest, "not-the-secret", forged)
    print(f"-> a forged signature: HTTP {response.status_code} {response.json()['title']}")


def _retry_finance(client: httpx.Client, admin: str, auth: dict[str, str]) -> None:
    """What an operator does: list the finance dead letters, retry each."""
    listing = client.get(f"{admin}/dead-letters", params={"queue": "demo.finance"}, headers=auth)
    listing.raise_for_status()
    for item in listing.json()["items"]:
        r = client.post(
            f"{admin}/dead-letters/{item['id']}/retry",
            headers=auth,
            json={"note": "customer opened in ERP"},
        )
        print(f"   POST /dead-letters/{item['id']}/retry -> {r.status_code}")


def _wait(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError("the demo's orders did not settle in time; see the log above")


def _settled(daemon: Daemon, sink: RecordingSink, expected: dict[str, int], letters: int) -> bool:
    with daemon.app.engine.connect() as conn:
        pending = conn.execute(
            select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        ).scalar_one()
        recorded = conn.execute(
            select(func.count()).select_from(dead_letters).where(dead_letters.c.status == "open")
        ).scalar_one()
    counts = {t: len(sink.received(t)) for t in TARGETS}
    return pending == 0 and recorded >= letters and all(counts[t] >= n for t, n in expected.items())


def _report(daemon: Daemon, sink: RecordingSink) -> None:
    print("\nWhat each system received:")
    for target in TARGETS:
        received = sink.received(target)
        print(f"  {target} ({len(received)}):")
        for r in received:
            print(
                f"    {r.body.get('order_number')}  {r.body.get('external_id')}  "
                f"{r.body.get('status'):<9} total {r.body.get('total')} {r.body.get('currency')}"
            )
    with daemon.app.engine.connect() as conn:
        letters = conn.execute(select(dead_letters).order_by(dead_letters.c.id)).all()
        refused = conn.execute(select(rejected_requests).order_by(rejected_requests.c.id)).all()
        audit = conn.execute(select(audit_log).order_by(audit_log.c.id)).all()
    print("\nDead letters:")
    for dl in letters:
        print(f"  #{dl.id} [{dl.status}] {dl.queue}: {dl.reason}")
        print(f"      {dl.detail}")
    print("\nRejected webhook requests:")
    for rr in refused:
        print(f"  #{rr.id} {rr.channel} HTTP {rr.status_code} {rr.reason}: {rr.detail}")
    print("\nAudit log:")
    for entry in audit:
        print(
            f"  {entry.at:%H:%M:%S} {entry.actor} {entry.action} "
            f"{entry.target_type} #{entry.target_id}"
        )
