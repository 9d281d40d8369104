"""The ingest at the edges of HTTP, on a real socket: a body shorter than its
Content-Length is answered 400 (incomplete_body) within the body timeout and
recorded, with no server traceback (84d73a3 waited 20 s and more, then
logged "Exception in ASGI application ... ClientDisconnect"); a client that
goes away in the middle of its body is recorded too."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from connectors.ingest_app import IngestDeps, create_ingest_app
from infra.settings import Settings
from infra.tables import rejected_requests
from infra.topology import build_topology
from tests.factories import FakePublisher
from tests.live_server import serving

TIMEOUT = 0.5  # ORDERBUS_BODY_TIMEOUT for these tests


@pytest.fixture
def port(sqlite_engine: Engine) -> Iterator[int]:
    settings = Settings(namespace="t", body_timeout=TIMEOUT, channel_secrets={"web": ["s" * 32]})
    deps = IngestDeps(settings, sqlite_engine, FakePublisher(), build_topology(settings))  # type: ignore[arg-type]
    with serving(create_ingest_app(deps), log_level="info") as free:
        yield free


def _head(length: int) -> bytes:
    return (
        "POST /ingest/web HTTP/1.1\r\nHost: ingest\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _answer(client: socket.socket) -> str:
    """The whole response: its head, then as many bytes as its content-length."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += client.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += client.recv(4096)
    return (head + b"\r\n\r\n" + body).decode()


def _reasons(engine: Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(rejected_requests.c.status_code, rejected_requests.c.reason,
                   rejected_requests.c.detail)
        )  # fmt: skip
        return [(r.status_code, r.reason, r.detail) for r in rows]


def test_a_body_shorter_than_its_length_is_answered_400_promptly(
    port: int, sqlite_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        started = time.monotonic()
        client.sendall(_head(100) + b'{"external_id": "X-1"')  # 21 of the 100 bytes
        answer = _answer(client)
        took = time.monotonic() - started
    assert answer.startswith("HTTP/1.1 400"), answer
    assert "incomplete_body" in answer
    assert took < TIMEOUT + 2
    [(status, reason, detail)] = _reasons(sqlite_engine)
    assert (status, reason) == (400, "incomplete_body")
    assert "21 bytes of the 100 bytes its Content-Length announced" in detail
    assert "Exception in ASGI application" not in caplog.text


def test_a_client_gone_mid_body_is_recorded_without_a_traceback(
    port: int, sqlite_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(_head(100) + b'{"external')
    deadline = time.monotonic() + TIMEOUT + 5
    while not _reasons(sqlite_engine) and time.monotonic() < deadline:
        time.sleep(0.05)
    [(status, reason, _)] = _reasons(sqlite_engine)
    assert (status, reason) == (400, "incomplete_body")
    assert "Traceback" not in caplog.text and "ClientDisconnect" not in caplog.text


def test_a_broker_that_cannot_be_reached_is_answered_503_at_once(sqlite_url: str) -> None:
    """With the broker down (its port closed), a webhook is answered 503 with
    Retry-After well inside a platform's webhook timeout (Shopify's 5 s), and
    for a second after, at once (84d73a3 took about 7 s per 503 in a 20 s
    broker stop: kombu waited 2 s before each of its reconnects)."""
    from fastapi.testclient import TestClient

    from orderbus.bootstrap import bootstrap
    from tests.factories import body_of, order_dict, signed_headers

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = int(s.getsockname()[1])  # nothing listens here once closed
    secret = "web-shop-secret-0123456789abcdef"
    settings = Settings(
        broker_url=f"amqp://guest:guest@127.0.0.1:{closed}//",
        database_url=sqlite_url,
        namespace="t",
        channel_secrets={"web": [secret]},
    )
    app = bootstrap(settings).ingest_app()
    body = body_of(order_dict(channel="web"))
    with TestClient(app) as client:
        took = []
        for _ in range(2):
            started = time.monotonic()
            answer = client.post("/ingest/web", content=body, headers=signed_headers(secret, body))
            took.append(time.monotonic() - started)
            assert answer.status_code == 503 and answer.headers["Retry-After"]
            assert answer.json()["title"] == "broker_unavailable"
    assert took[0] < settings.ingest_confirm_timeout + 1.0, took
    assert took[1] < 0.5, took  # within the second after: at once


def test_a_refusal_while_the_database_is_away_is_recorded_when_it_returns(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """84d73a3 lost 2 of 121 refusals during a PostgreSQL restart ("could not
    record rejected request"): now they wait in a spool file."""
    from fastapi.testclient import TestClient

    from connectors.rejections import RejectionSpool
    from infra.database import make_engine

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = int(s.getsockname()[1])
    away = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{closed}/test")
    spool = RejectionSpool(tmp_path / "rejections.jsonl")
    settings = Settings(namespace="t", channel_secrets={"web": ["web-shop-secret-0123456789"]})
    deps = IngestDeps(settings, away, FakePublisher(), build_topology(settings),  # type: ignore[arg-type]
                      rejection_spool=spool)  # fmt: skip
    with TestClient(create_ingest_app(deps)) as client:
        unsigned = client.post("/ingest/web", content=b'{"x": 1}',
                               headers={"Content-Type": "application/json"})  # fmt: skip
        unknown = client.post("/ingest/nowhere", content=b"{}")
    assert (unsigned.status_code, unknown.status_code) == (401, 404)  # answered all the same
    assert _reasons(sqlite_engine) == [] and spool.path.exists()
    assert spool.flush(away) == 0 and spool.path.exists()  # still away: kept
    assert spool.flush(sqlite_engine) == 2 and not spool.path.exists()
    assert sorted((s, r) for s, r, _ in _reasons(sqlite_engine)) == [
        (401, "missing_signature"), (404, "unknown_channel"),
    ]  # fmt: skip


def test_a_spool_written_twice_records_each_refusal_once(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the spool's records are committed and before its file is
    emptied: the next flush reads them again and records none twice."""
    from canonical.envelope import utcnow
    from connectors.rejections import RejectionSpool

    spool = RejectionSpool(tmp_path / "rejections.jsonl")
    for status in (401, 422):
        row: dict[str, Any] = {
            "channel": "web", "status_code": status, "reason": "r", "detail": "d",
            "remote_addr": None, "headers": {}, "body_excerpt": "", "body_size": 0,
            "received_at": utcnow(),
        }  # fmt: skip
        assert spool.keep(row)
    kept = spool.path.read_bytes()

    def crash(self: Path, missing_ok: bool = False) -> None:
        raise SystemExit("killed after the commit")

    with monkeypatch.context() as patched:
        patched.setattr(Path, "unlink", crash)
        with pytest.raises(SystemExit):
            spool.flush(sqlite_engine)
    assert spool.path.read_bytes() == kept  # the file survived the crash
    assert spool.flush(sqlite_engine) == 2 and not spool.path.exists()
    assert sorted(s for s, _, _ in _reasons(sqlite_engine)) == [401, 422]


def test_the_platforms_orders_are_kept_in_batches_off_the_answer(sqlite_engine: Engine) -> None:
    """The daemon's ingest keeps the webhook bodies from a thread of its own:
    nothing waits for them before the answer; they are written together; a
    backlog past its bound is dropped with a warning, never the order."""
    from sqlalchemy import func, select

    from infra.raw_payloads import BatchedKeeper
    from infra.tables import raw_payloads

    def stored() -> int:
        with sqlite_engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(raw_payloads)) or 0)

    keeper = BatchedKeeper(sqlite_engine, most=3, batch=2)
    for n in range(4):
        keeper.keep([f"m-{n}"], "web", {"Authorization": "secret"}, b'{"n": %d}' % n)
    assert stored() == 0  # not written on the request's path
    assert keeper.flush() == 3 and stored() == 3  # the fourth was past the bound
    stop = threading.Event()
    runner = threading.Thread(target=keeper.run, args=(stop,))
    runner.start()
    keeper.keep(["m-9"], "web", {}, b"{}")
    stop.set()
    runner.join(5)
    assert stored() == 4  # what waited is written before the thread ends
    with sqlite_engine.connect() as conn:
        headers = conn.scalar(
            select(raw_payloads.c.headers).where(raw_payloads.c.message_id == "m-0")
        )
    assert "secret" not in str(headers)  # redacted as before
