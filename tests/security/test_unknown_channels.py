"""Defect 8 of the security review, unknown channels: each request to a
channel that does not exist (no secret needed to send one) stored about
12 KB, with no limit. Now such a record keeps a few headers and 256 bytes
of the body, at most 60 a minute; the next one says how many were not
recorded one by one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from connectors.ingest_app import IngestDeps, create_ingest_app
from connectors.ingest_http import RecordBudget
from infra.settings import Settings
from infra.tables import rejected_requests
from infra.topology import build_topology
from tests.factories import FakePublisher


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(sqlite_engine: Engine, clock: Clock) -> Iterator[TestClient]:
    settings = Settings(channel_secrets={"web-shop": ["a-long-enough-channel-secret"]})
    deps = IngestDeps(
        settings,
        sqlite_engine,
        FakePublisher(),  # type: ignore[arg-type]
        build_topology(settings),
        unknown_channels=RecordBudget(per_minute=60, clock=clock),
    )
    with TestClient(create_ingest_app(deps)) as c:
        yield c


def test_a_flood_to_unknown_channels_is_answered_but_recorded_within_bounds(
    client: TestClient, sqlite_engine: Engine, clock: Clock
) -> None:
    body = b'{"junk": "' + b"x" * 60_000 + b'"}'
    headers = {"Content-Type": "application/json", "X-Filler": "y" * 4000}
    for n in range(200):
        assert client.post(f"/ingest/nope-{n}", content=body, headers=headers).status_code == 404
    with sqlite_engine.connect() as conn:
        rows = conn.execute(select(rejected_requests)).mappings().all()
    assert len(rows) == 60
    for row in rows:
        assert len(row["body_excerpt"]) <= 256
        assert set(row["headers"]) <= {"user-agent", "content-type", "content-length"}
        assert row["body_size"] == len(body)
    clock.now += 61
    assert client.post("/ingest/nope-late", content=body, headers=headers).status_code == 404
    with sqlite_engine.connect() as conn:
        count = conn.scalar(select(func.count()).select_from(rejected_requests))
        last = conn.execute(
            select(rejected_requests.c.detail).order_by(rejected_requests.c.id.desc())
        ).scalar()
    assert count == 61
    assert last is not None and "+140 more not recorded one by one" in last
