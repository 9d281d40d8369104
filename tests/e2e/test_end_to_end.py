"""orderbus as separate OS processes, driven over HTTP like a user would."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Downstream
from tests.e2e.process import OrderbusProcess, free_port, orderbus, orderbus_env
from tests.factories import body_of, order_dict, signed_headers

pytestmark = pytest.mark.e2e

SECRET = "e2e-channel-secret"
TOKEN = "e2e-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def wait_for(condition: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not met in {timeout}s")


def settings_env(downstream: Downstream, **extra: Any) -> dict[str, str]:
    return orderbus_env(
        channel_secrets={"web-shop": [SECRET]},
        admin_tokens={"e2e-operator": TOKEN},
        ingest_port=str(free_port()),
        admin_port=str(free_port()),
        warehouse_url=downstream.sink.url("warehouse"),
        finance_url=downstream.sink.url("finance"),
        notification_url=downstream.sink.url("notification"),
        delivery_attempts="2",
        retry_initial_wait="0.05",
        retry_max_wait="0.1",
        **extra,
    )


def send(
    client: httpx.Client, ingest: str, data: dict[str, Any], secret: str = SECRET
) -> httpx.Response:
    body = body_of(data)
    return client.post(ingest, content=body, headers=signed_headers(secret, body))


def scenario(
    env: dict[str, str], downstream: Downstream, components: list[list[str]], tmp_path: Path
) -> None:
    ingest = f"http://127.0.0.1:{env['ORDERBUS_INGEST_PORT']}/ingest/web-shop"
    admin = f"http://127.0.0.1:{env['ORDERBUS_ADMIN_PORT']}"
    procs = [
        OrderbusProcess(env, c, tmp_path / f"orderbus-{i}.log").start()
        for i, c in enumerate(components)
    ]
    try:
        procs[-1].wait_http(ingest.rsplit("/ingest", 1)[0] + "/healthz")
        procs[-1].wait_http(admin + "/healthz")
        valid = [order_dict(external_id=f"E2E-{i}") for i in range(5)]
        invalid = order_dict(external_id="E2E-BAD", total="1.00", customer={"phone": "12345"})
        downstream.finance_down_for.add("E2E-4")
        with httpx.Client(timeout=30) as client:
            for data in valid:
                assert send(client, ingest, data).status_code == 202
            for _ in range(10):  # the same webhook replayed ten times
                assert send(client, ingest, valid[0]).status_code == 202
            assert send(client, ingest, invalid).status_code == 202
            forged = send(client, ingest, valid[1], secret="forged")
            assert forged.status_code == 401

            sink = downstream.sink
            wait_for(
                lambda: (
                    len(sink.received("warehouse")) == 5
                    and len(sink.received("notification")) == 5
                    and len(sink.received("finance")) == 4
                ),
                what="deliveries",
            )

            def letters() -> list[dict[str, Any]]:
                return client.get(f"{admin}/dead-letters", headers=AUTH).json()["items"]  # type: ignore[no-any-return]

            wait_for(lambda: len(letters()) == 2, what="two dead letters")
            by_reason = {d["reason"]: d for d in letters()}
            bad = client.get(
                f"{admin}/dead-letters/{by_reason['validation_failed']['id']}", headers=AUTH
            ).json()
            assert "total" in bad["detail"] and "customer.phone" in bad["detail"]
            assert "E2E-BAD" in bad["body"]
            down = by_reason["endpoint_unavailable"]
            assert down["queue"].endswith(".finance") and "503" in (down["detail"] or "")

            rejected = client.get(f"{admin}/rejected-requests", headers=AUTH).json()["items"]
            assert [(r["status_code"], r["reason"]) for r in rejected] == [(401, "bad_signature")]

            # finance recovers; an operator retries the dead letter: delivered once
            downstream.finance_down_for.clear()
            retry = client.post(
                f"{admin}/dead-letters/{down['id']}/retry", headers=AUTH, json={"note": "ERP back"}
            )
            assert retry.status_code == 202
            wait_for(lambda: len(sink.received("finance")) == 5, what="retried delivery")
            # and retrying it again is refused: it is no longer open
            assert (
                client.post(f"{admin}/dead-letters/{down['id']}/retry", headers=AUTH).status_code
                == 409
            )
            audit = client.get(f"{admin}/audit", headers=AUTH).json()["items"]
            assert (audit[0]["actor"], audit[0]["action"]) == ("e2e-operator", "dead_letter.retry")

        time.sleep(1.0)  # let any stray duplicate arrive before counting
        for target in ("warehouse", "finance", "notification"):
            effects = sink.effects(target)
            numbers = sorted(r.body["external_id"] for r in sink.received(target))
            assert numbers == [f"E2E-{i}" for i in range(5)], (target, numbers)
            assert set(effects.values()) == {1}, (target, effects)
        assert all(r.body["order_number"].startswith("OB") for r in sink.requests)
    finally:
        exits = [p.terminate() for p in procs]
    for code, seconds in exits:
        assert code == 0, [p.output() for p in procs]
        assert seconds < 35


def test_end_to_end_on_rabbitmq_and_postgresql(
    amqp_url: str, postgres_url: str, namespace: str, downstream: Downstream, tmp_path: Path
) -> None:
    env = settings_env(
        downstream, broker_url=amqp_url, database_url=postgres_url, namespace=namespace
    )
    scenario(env, downstream, [["router"], ["consumers"], ["ingest", "admin"]], tmp_path)


def test_end_to_end_embedded_across_processes(downstream: Downstream, tmp_path: Path) -> None:
    """The embedded default (SQLite + kombu's SQL transport), router and consumers
    in separate processes: kombu keeps bindings per connection, so each process
    must declare the topology before publishing, or messages vanish."""
    env = settings_env(
        downstream,
        broker_url=f"sqla+sqlite:///{tmp_path}/broker.db",
        database_url=f"sqlite:///{tmp_path}/orderbus.db",
    )
    assert orderbus("db", "upgrade", env=env).returncode == 0
    scenario(env, downstream, [["router"], ["consumers", "ingest", "admin"]], tmp_path)


def test_demo_runs_without_broker_or_database(tmp_path: Path) -> None:
    result = orderbus(
        "--log-level", "ERROR", "demo", env=orderbus_env() | {"TMPDIR": str(tmp_path)}, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "warehouse (3)" in out and "finance (3)" in out and "notification (4)" in out
    assert "validation_failed" in out and "HTTP 401 bad_signature" in out
    assert "demo-operator dead_letter.retry" in out
