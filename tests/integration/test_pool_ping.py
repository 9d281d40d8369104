"""A pooled PostgreSQL connection is pinged before it is lent only when it
has been idle a while (``infra.database.PING_AFTER_IDLE_SECONDS``): a worker
taking one for every batch does not pay a round trip a batch, and a
connection that died while idle is still replaced before anyone uses it."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import Engine, text

import infra.database
from infra.database import make_engine


def _named_engine(postgres_url: str) -> tuple[Engine, str]:
    name = f"ob-ping-{uuid.uuid4().hex[:8]}"
    return make_engine(f"{postgres_url}&application_name={name}"), name


def _last_statement(observer: Engine, name: str) -> str:
    with observer.connect() as conn:
        found = conn.scalar(
            text("SELECT query FROM pg_stat_activity WHERE application_name = :name"),
            {"name": name},
        )
    assert found is not None, "the pooled connection is gone"
    return str(found)


def test_a_connection_used_a_moment_ago_is_lent_without_a_ping(postgres_url: str) -> None:
    engine, name = _named_engine(postgres_url)
    observer = make_engine(postgres_url)
    with engine.begin() as conn:
        assert conn.scalar(text("SELECT 'first use'")) == "first use"
    assert _last_statement(observer, name) == "COMMIT"
    with engine.connect():  # lent again at once: nothing sent
        assert _last_statement(observer, name) == "COMMIT"
    engine.dispose()
    observer.dispose()


def test_a_connection_idle_a_while_is_pinged(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(infra.database, "PING_AFTER_IDLE_SECONDS", 0.05)
    engine, name = _named_engine(postgres_url)
    observer = make_engine(postgres_url)
    with engine.begin() as conn:
        conn.scalar(text("SELECT 'first use'"))
    time.sleep(0.1)
    with engine.connect():
        assert _last_statement(observer, name) != "COMMIT"  # the ping went before
    engine.dispose()
    observer.dispose()


def test_a_connection_that_died_while_idle_is_replaced_before_use(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(infra.database, "PING_AFTER_IDLE_SECONDS", 0.05)
    engine, name = _named_engine(postgres_url)
    observer = make_engine(postgres_url)
    with engine.connect() as conn:
        before = conn.scalar(text("SELECT pg_backend_pid()"))
    with observer.begin() as conn:
        killed = conn.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :name"
            ),
            {"name": name},
        )
    assert killed == 1
    time.sleep(0.1)
    with engine.connect() as conn:  # no error: the dead one was found and replaced
        assert conn.scalar(text("SELECT pg_backend_pid()")) != before
    engine.dispose()
    observer.dispose()
