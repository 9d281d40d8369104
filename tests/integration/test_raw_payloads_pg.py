"""The platform's own order kept on PostgreSQL: one prepared INSERT a row in
one round trip (``insert_pipelined(absent=True)``), each copy once however
often it is kept, its headers redacted and its bytes exact."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from infra import raw_payloads
from infra.database import make_engine
from infra.stored_bodies import decode_body
from infra.tables import raw_payloads as table

HEADERS = {"content-type": "application/json", "x-orderbus-signature": "sha256=secret"}


def test_copies_are_kept_once_with_their_exact_bytes_and_redacted_headers(
    postgres_url: str,
) -> None:
    engine = make_engine(postgres_url)
    utf8 = '{"buyer": "张三", "note": "含\\u0000"}'.encode()
    not_utf8 = b"\xff\xfe gbk \xd5\xc5"
    raw_payloads.keep(engine, ["m-1", "m-2"], "web-shop", HEADERS, utf8)
    raw_payloads.keep(engine, ["m-2"], "web-shop", HEADERS, b"a second copy is skipped")
    keeper = raw_payloads.BatchedKeeper(engine, batch=2)
    keeper.keep(["m-3"], "web-shop", HEADERS, not_utf8)
    keeper.keep(["m-1", "m-4"], "web-shop", HEADERS, b"{}")  # m-1 kept already
    assert keeper.flush() == 3  # two transactions of at most two rows
    with engine.connect() as conn:
        rows = raw_payloads.of_messages(conn, ["m-1", "m-2", "m-3", "m-4"])
        kept = {r["message_id"]: r for r in rows}
        count = conn.scalar(select(func.count()).select_from(table))
    assert count == 4
    assert decode_body(kept["m-1"]["body"], kept["m-1"]["body_encoding"]) == utf8
    assert decode_body(kept["m-2"]["body"], kept["m-2"]["body_encoding"]) == utf8
    assert kept["m-3"]["body_encoding"] == "base64"
    assert decode_body(kept["m-3"]["body"], "base64") == not_utf8
    assert kept["m-4"]["body"] == "{}"
    assert kept["m-1"]["headers"] == {
        "content-type": "application/json",
        "x-orderbus-signature": "<redacted>",
    }
    assert kept["m-1"]["received_at"].tzinfo is not None
    engine.dispose()


def test_a_database_that_refuses_costs_the_copy_not_the_keeper(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    keeper = raw_payloads.BatchedKeeper(engine)
    keeper.keep(["m-1"], "web-shop", HEADERS, b"{}")
    keeper.keep(["x" * 200], "web-shop", HEADERS, b"{}")  # longer than the column: refused
    stop = threading.Event()
    stop.set()
    keeper.run(stop)  # flushes once and returns, logging the refused batch
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(table)) == 0  # m-1 went with it
    keeper.keep(["m-5"], "web-shop", HEADERS, b"{}")
    assert keeper.flush() == 1
    with engine.connect() as conn:
        assert [r["message_id"] for r in raw_payloads.of_messages(conn, ["m-5"])] == ["m-5"]
    engine.dispose()
