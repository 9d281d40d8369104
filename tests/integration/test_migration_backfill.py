"""Migration 0026 names each existing outbox row's order (the timeline and
the reconciliation now find an order's messages by it), on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from infra.database import make_engine, upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def url_at_0025(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/before.db"
        upgrade(url, "0025")
        yield url
        return
    base: str = request.getfixturevalue("postgres_base_url")
    schema = f"mig_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options=-csearch_path%3D{schema}"
    try:
        upgrade(url, "0025")
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_existing_outbox_rows_get_their_order_number(url_at_0025: str) -> None:
    engine = make_engine(url_at_0025)
    rows = {
        "OBAAAABBBBCCCCDDDD-v2-warehouse": "OBAAAABBBBCCCCDDDD",
        "OBAAAABBBBCCCCDDDD-intercept-0a1b2c3d4e5f-warehouse": "OBAAAABBBBCCCCDDDD",
        "OBEEEEFFFFGGGGHHHH-parcel-notice": "OBEEEEFFFFGGGGHHHH",
        "not-an-order": None,
    }
    with engine.begin() as conn:
        for message_id in rows:
            conn.execute(
                text(
                    "INSERT INTO outbox (message_id, exchange, routing_key, headers, body, "
                    "created_at, attempts) VALUES (:m, 'x', 'deliver.warehouse', '{}', '{}', "
                    "CURRENT_TIMESTAMP, 0)"
                ),
                {"m": message_id},
            )
    engine.dispose()
    upgrade(url_at_0025)
    engine = make_engine(url_at_0025)
    with engine.connect() as conn:
        found: dict[str, str | None] = dict(
            conn.execute(text("SELECT message_id, order_number FROM outbox")).tuples().all()
        )
    engine.dispose()
    assert found == rows
