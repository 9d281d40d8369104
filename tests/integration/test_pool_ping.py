"""A pooled PostgreSQL connection is pinged before it is lent only when it
has been idle a while (``infra.database.PING_AFTER_IDLE_SECONDS``): a worker
taking one for every batch does not pay a round trip a batch, and a
connection that died while idle is still replaced before anyone uses it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, text

import infra.database
from infra.database import make_engine
from tests.services import end_sessions_named


@dataclass
class Pool:
    engine: Engine  # its sessions carry ``name``
    name: str
    observer: Engine  # another engine, to look at them

    def last_statement(self) -> str:
        with self.observer.connect() as conn:
            found = conn.scalar(
                text("SELECT query FROM pg_stat_activity WHERE application_name = :name"),
                {"name": self.name},
            )
        assert found is not None, "the pooled connection is gone"
        return str(found)


@pytest.fixture
def pool(postgres_url: str) -> Iterator[Pool]:
    name = f"ob-ping-{uuid.uuid4().hex[:8]}"
    watched = Pool(
        make_engine(f"{postgres_url}&application_name={name}"), name, make_engine(postgres_url)
    )
    yield watched
    watched.engine.dispose()
    watched.observer.dispose()


def test_a_connection_used_a_moment_ago_is_lent_without_a_ping(pool: Pool) -> None:
    with pool.engine.begin() as conn:
        assert conn.scalar(text("SELECT 'first use'")) == "first use"
    assert pool.last_statement() == "COMMIT"
    with pool.engine.connect():  # lent again at once: nothing sent
        assert pool.last_statement() == "COMMIT"


def test_a_connection_idle_a_while_is_pinged(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(infra.database, "PING_AFTER_IDLE_SECONDS", 0.05)
    with pool.engine.begin() as conn:
        conn.scalar(text("SELECT 'first use'"))
    time.sleep(0.1)
    with pool.engine.connect():
        assert pool.last_statement() != "COMMIT"  # the ping went before


def test_a_connection_that_died_while_idle_is_replaced_before_use(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(infra.database, "PING_AFTER_IDLE_SECONDS", 0.05)
    with pool.engine.connect() as conn:
        before = conn.scalar(text("SELECT pg_backend_pid()"))
    assert end_sessions_named(pool.observer, pool.name) == 1
    time.sleep(0.1)
    with pool.engine.connect() as conn:  # no error: the dead one was found and replaced
        assert conn.scalar(text("SELECT pg_backend_pid()")) != before
