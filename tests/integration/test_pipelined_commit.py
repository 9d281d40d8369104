"""A pipeline may end its transaction (``commit=True``): the router's rows
and the relay's marking are committed in the round trip that writes them.
What is committed is visible at once; a pipeline that fails commits nothing
and leaves the connection usable; the block's own commit does nothing more."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from infra.database import insert_pipelined, make_engine, pipelined
from infra.tables import arrivals


def _arrival(message_id: str) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "message_id": message_id, "channel": "web-shop", "outcome": "new",
        "received_at": now, "processed_at": now,
    }  # fmt: skip


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(arrivals)) or 0)


def test_rows_inserted_with_commit_are_committed_in_the_pipeline(postgres_url: str) -> None:
    engine, other = make_engine(postgres_url), make_engine(postgres_url)
    with engine.begin() as conn:
        insert_pipelined(conn, [(arrivals, [_arrival("m-1"), _arrival("m-2")])], commit=True)
        assert _count(other) == 2  # seen from another connection before the block ends
    with engine.begin() as conn:  # the connection goes on as usual
        insert_pipelined(conn, [(arrivals, [_arrival("m-3")])])
        assert _count(other) == 2
    assert _count(other) == 3
    engine.dispose()
    other.dispose()


def test_a_failing_pipeline_with_commit_commits_nothing(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        insert_pipelined(conn, [(arrivals, [_arrival("m-1")])])
    with pytest.raises(IntegrityError), engine.begin() as conn:
        rows = [_arrival("m-2"), _arrival("m-1")]  # the second is there already
        insert_pipelined(conn, [(arrivals, rows)], commit=True)
    assert _count(engine) == 1  # m-2 rolled back with it
    with engine.begin() as conn:
        pipelined(conn, [("DELETE FROM arrivals WHERE message_id = 'm-1'", {})], commit=True)
    assert _count(engine) == 0
    engine.dispose()


def test_statements_sent_first_hold_for_the_pipelines_transaction_only(
    postgres_url: str,
) -> None:
    """The raw-payload keeper's ``SET LOCAL synchronous_commit TO OFF`` goes
    in the rows' round trip: it holds for their transaction, not after."""
    engine = make_engine(postgres_url)
    setting = "SELECT current_setting('synchronous_commit')"
    with engine.begin() as conn:
        first = ["SET LOCAL synchronous_commit TO OFF"]
        insert_pipelined(conn, [(arrivals, [_arrival("m-1")])], first=first)
        assert conn.exec_driver_sql(setting).scalar_one() == "off"
    with engine.connect() as conn:  # the same pooled connection, a new transaction
        assert conn.exec_driver_sql(setting).scalar_one() == "on"
    assert _count(engine) == 1
    engine.dispose()


def _message(message_id: str) -> dict[str, object]:
    return {
        "message_id": message_id, "exchange": "orders", "routing_key": "deliver.finance",
        "headers": {"x-orderbus-channel": "web-shop"}, "body": "{}",
        "created_at": datetime.now(UTC),
    }  # fmt: skip


def test_updates_go_after_the_inserts_on_every_backend(engine: Engine) -> None:
    """The router's changed orders are updated in its batch's last round trip,
    after its inserts (so an order created in the batch can be updated too)."""
    from infra.tables import outbox

    with engine.begin() as conn:
        insert_pipelined(conn, [(outbox, [_message("a"), _message("b")])])
    with engine.connect() as conn:
        ids = {m: i for m, i in conn.execute(select(outbox.c.message_id, outbox.c.id))}
    changes = [
        {"id": ids["a"], "headers": {"seen": "twice"}, "last_error": "broker away"},
        {"id": ids["b"], "attempts": 3},
    ]
    with engine.begin() as conn:
        insert_pipelined(
            conn, [(outbox, [_message("c")])], updates=[(outbox, changes)], commit=True
        )
    with engine.connect() as conn:
        rows = {r.message_id: r for r in conn.execute(select(outbox)).all()}
    assert (rows["a"].headers, rows["a"].last_error, rows["a"].attempts) == (
        {"seen": "twice"}, "broker away", 0,
    )  # fmt: skip
    assert (rows["b"].attempts, rows["b"].last_error, rows["c"].attempts) == (3, None, 0)


HOSTILE = [
    "o'brien",
    "'; DROP TABLE arrivals; --",
    "back\\slash \\' \\\\",
    "$$ dollar $$ $tag$",
    "%s %(id)s %% percent",
    "订单 🚚 \u2028 line",
    "E'\\x41'",
]


@pytest.mark.parametrize("standard_strings", ["on", "off"])
def test_values_written_into_the_query_come_back_as_they_were(
    postgres_url: str, standard_strings: str
) -> None:
    """pipelined writes its parameters into one query (the driver's quoting):
    whatever a value holds, it is a value, under either string syntax."""
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"SET LOCAL standard_conforming_strings = {standard_strings}")
        rows = pipelined(
            conn,
            [
                ("SELECT %(v)s::text AS v, %(n)s::int AS n", {"v": v, "n": n})
                for n, v in enumerate(HOSTILE)
            ]
            + [
                (
                    "SELECT count(*) AS c FROM arrivals WHERE message_id = ANY(%(ids)s)",
                    {"ids": HOSTILE},
                )
            ],
        )
    assert [r[0].v for r in rows[:-1]] == HOSTILE
    assert [r[0].n for r in rows[:-1]] == list(range(len(HOSTILE)))
    assert rows[-1][0].c == 0  # the table is still there, and the list a value
    assert _count(engine) == 0
    engine.dispose()


def test_each_statement_gives_its_own_rows_and_an_empty_list_is_a_value(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        insert_pipelined(conn, [(arrivals, [_arrival("m-1"), _arrival("m-2")])])
        found, none, written = pipelined(
            conn,
            [
                ("SELECT message_id FROM arrivals ORDER BY message_id", {}),
                ("SELECT message_id FROM arrivals WHERE message_id = ANY(%(ids)s)", {"ids": []}),
                (
                    "UPDATE arrivals SET outcome = 'duplicate' WHERE message_id = %(id)s",
                    {"id": "m-2"},
                ),
            ],
        )
    assert [r.message_id for r in found] == ["m-1", "m-2"]
    assert none == [] and written == []
    engine.dispose()
