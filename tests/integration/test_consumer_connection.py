"""A consumer records each delivery on one connection for the batch (on
PostgreSQL one autocommitted INSERT each). If that connection is lost while
a system is answering (the database restarted, a proxy dropped it), the row
is written on a new one: the delivery is not sent again, and the rest of the
batch is claimed again before it is sent. Two consumer processes holding
copies of one message (a re-publish, a redelivery) send it once."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import httpx
from sqlalchemy import Engine, event, func, select, text

from canonical.errors import DatabaseUnavailable, DeliveryInProgress
from infra.database import make_engine
from infra.tables import inbox
from targets.consumers import DeliveryConsumer
from tests.outbox_messages import quick_app
from tests.services import end_sessions_named
from tests.unit.test_consumer_reliability import _batch


def test_a_connection_lost_during_a_send_loses_no_record(postgres_url: str) -> None:
    name = f"ob-keep-{uuid.uuid4().hex[:8]}"
    consumer_url = f"{postgres_url}&application_name={name}"
    engine = make_engine(postgres_url)
    batch = _batch(engine, 3)
    got: Counter[str] = Counter()

    def finance(request: httpx.Request) -> httpx.Response:
        got[request.headers["Idempotency-Key"]] += 1
        if sum(got.values()) == 2:  # the consumer's connections die as this one is taken
            assert end_sessions_named(engine, name) >= 1
        return httpx.Response(200)

    app = quick_app(consumer_url, finance_url="http://finance.test/orders")
    consumer = app.delivery_consumer("finance", transport=httpx.MockTransport(finance))
    first = consumer.handle_batch(batch)
    # the second's row went in on a new connection; the third waits for new claims
    assert first[:2] == [None, None] and isinstance(first[2], DatabaseUnavailable)
    assert consumer.handle_batch(batch[2:]) == [None]  # the bus's retry in place
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(inbox)) == 3
    assert consumer.handle_batch(batch) == [None] * 3  # the broker's redelivery: nothing sent
    assert sorted(got.values()) == [1, 1, 1]
    engine.dispose()


def test_a_consumers_claim_runs_with_its_index_setting_in_force(postgres_url: str) -> None:
    """The claim and the inbox read go in one transaction, so SET LOCAL holds
    for the read (outside a transaction PostgreSQL ignores it with a warning
    a batch, and a read prepared while the inbox was small stays a scan of
    the whole inbox as it grows)."""
    notices: list[str] = []

    def listen(dbapi_connection: object, _record: object) -> None:
        add = dbapi_connection.add_notice_handler  # type: ignore[attr-defined]
        add(lambda diagnostic: notices.append(diagnostic.message_primary))

    event.listen(Engine, "connect", listen)
    try:
        engine = make_engine(postgres_url)
        batch = _batch(engine, 3)
        app = quick_app(postgres_url, finance_url="http://finance.test/orders")
        answer = httpx.MockTransport(lambda request: httpx.Response(200))
        consumer = app.delivery_consumer("finance", transport=answer)
        assert consumer.handle_batch(batch) == [None] * 3
        assert consumer.handle_batch(batch) == [None] * 3  # claimed and read again
    finally:
        event.remove(Engine, "connect", listen)
    assert notices == []
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(inbox)) == 3
    engine.dispose()


def test_the_claim_turns_sequential_scans_off_for_the_inbox_read_only(postgres_url: str) -> None:
    from infra.database import pipelined
    from targets.consumers import CLAIM_AND_READ

    engine = make_engine(postgres_url)
    params = {"ids": ["m-1"], "consumer": "finance:", "target": "finance", "numbers": ["OB1"]}
    setting: tuple[str, dict[str, str]] = ("SELECT current_setting('enable_seqscan')", {})
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # as a consumer's batch
        claimed, during, _ = pipelined(
            conn, [(CLAIM_AND_READ[0], params), setting, (CLAIM_AND_READ[1], params)]
        )
        after = conn.exec_driver_sql(setting[0]).scalar()
        conn.exec_driver_sql("SELECT pg_advisory_unlock_all()")
    assert [tuple(r) for r in claimed] == [("m-1",)]
    assert (during[0][0], after) == ("off", "on")
    engine.dispose()


def test_a_batch_ends_its_claims_with_its_last_row_or_after_it(postgres_url: str) -> None:
    """The last row's round trip also ends the batch's claims; a batch whose
    last message needs no row (sent before) ends them after. Either way none
    is left for another process to wait on."""
    engine = make_engine(postgres_url)
    batch = _batch(engine, 3)
    app = quick_app(postgres_url, finance_url="http://finance.test/orders")
    answer = httpx.MockTransport(lambda request: httpx.Response(200))
    consumer = app.delivery_consumer("finance", transport=answer)
    advisory = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")

    def claims_left() -> int:
        with engine.connect() as conn:
            return int(conn.scalar(advisory) or 0)

    assert consumer.handle_batch(batch[:2]) == [None, None]
    assert claims_left() == 0
    assert consumer.handle_batch([batch[2], batch[0]]) == [None, None]  # the last: sent before
    assert claims_left() == 0
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(inbox)) == 3
    engine.dispose()


def _inbox_row(consumer: str) -> dict[str, object]:
    from datetime import UTC, datetime

    return {
        "consumer": consumer, "message_id": f"OB1-v1-{consumer}", "order_number": "OB1",
        "order_version": 1, "outcome": "delivered", "response_status": 200, "attempts": 1,
        "delivered_at": datetime.now(UTC), "mapping_version": None,
    }  # fmt: skip


def test_an_inbox_row_written_twice_is_kept_once(engine: object) -> None:
    """The inbox insert each delivery makes (straight to the driver on
    PostgreSQL): a second copy of a row is no error and no second row; a
    time without its zone is refused, on every backend."""
    from datetime import datetime

    import pytest
    from sqlalchemy import Engine

    from infra.database import insert_one_absent

    assert isinstance(engine, Engine)
    row = _inbox_row("warehouse")
    with engine.begin() as conn:
        insert_one_absent(conn, inbox, row)
        insert_one_absent(conn, inbox, {**row, "attempts": 2})
    with engine.connect() as conn:
        kept = conn.execute(select(inbox.c.attempts, inbox.c.delivered_at)).all()
    assert [k.attempts for k in kept] == [1] and kept[0].delivered_at == row["delivered_at"]
    with pytest.raises(ValueError), engine.begin() as conn:
        naive = {**row, "message_id": "OB2-v1-warehouse", "delivered_at": datetime(2026, 1, 1)}
        insert_one_absent(conn, inbox, naive)


def test_an_inbox_row_on_an_autocommitted_connection_is_kept_at_once(postgres_url: str) -> None:
    """As a consumer keeps its rows: straight to the driver, committed by the
    statement itself; a second copy is no error and no second row."""
    from infra.database import insert_one_absent

    engine = make_engine(postgres_url)
    row = _inbox_row("finance")
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        insert_one_absent(conn, inbox, row)
        insert_one_absent(conn, inbox, {**row, "attempts": 2})
        with engine.connect() as other:  # before this connection does anything more
            kept = other.execute(select(inbox.c.attempts)).scalars().all()
    assert kept == [1]
    engine.dispose()


def test_rows_after_the_connection_is_replaced_go_in_on_the_new_one(postgres_url: str) -> None:
    """The cursor kept for a connection's rows lives and ends with it: after
    the pooled connection is replaced (a restart dropped it), the next row
    goes in on the new connection through a cursor of its own."""
    from infra.database import insert_one_absent

    engine = make_engine(postgres_url)
    row = _inbox_row("finance")
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        insert_one_absent(conn, inbox, row)
        first = conn.connection.info["row_cursor"]
        insert_one_absent(conn, inbox, {**row, "message_id": "OB2-v1-finance"})
        assert conn.connection.info["row_cursor"] is first  # kept for the connection
        conn.invalidate()  # as a lost connection is
        conn.rollback()
        assert first.connection.closed
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        insert_one_absent(conn, inbox, {**row, "message_id": "OB3-v1-finance"})
        assert conn.connection.info["row_cursor"] is not first
    with engine.connect() as other:
        kept = other.execute(select(inbox.c.message_id).order_by(inbox.c.message_id)).scalars()
        assert list(kept) == ["OB1-v1-finance", "OB2-v1-finance", "OB3-v1-finance"]
    engine.dispose()


def test_copies_of_one_message_in_two_processes_are_sent_once(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    batch = _batch(engine, 2)
    sent: Counter[str] = Counter()
    answering, go_on = threading.Event(), threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        sent[request.headers["Idempotency-Key"]] += 1
        answering.set()
        go_on.wait(10)  # process A is still waiting for the system's answer
        return httpx.Response(200)

    def quick(request: httpx.Request) -> httpx.Response:
        sent[request.headers["Idempotency-Key"]] += 1
        return httpx.Response(200)

    def process(transport: httpx.MockTransport) -> DeliveryConsumer:
        app = quick_app(postgres_url, finance_url="http://finance.test/orders")
        return app.delivery_consumer("finance", transport=transport)

    a, b = process(httpx.MockTransport(slow)), process(httpx.MockTransport(quick))
    a_results: list[BaseException | None] = []
    sending = threading.Thread(target=lambda: a_results.extend(a.handle_batch(batch[:1])))
    sending.start()
    assert answering.wait(10)
    b_results = b.handle_batch(batch)  # B holds a copy of A's message, and another
    assert isinstance(b_results[0], DeliveryInProgress) and b_results[1] is None
    go_on.set()
    sending.join(10)
    assert a_results == [None]
    assert b.handle_batch(batch[:1]) == [None]  # B's retry: A's inbox row answers it
    assert sorted(sent.values()) == [1, 1]
    engine.dispose()
