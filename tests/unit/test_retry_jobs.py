"""A bulk retry in the background: it says first how many it will touch, goes
at its pace, skips what was settled meanwhile, warns when the same failures
keep arriving, and can be cancelled."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from admin_api.app import create_admin_app
from admin_api.auth import KeyAuth
from admin_api.deadletters import DeadLetterRecorder
from admin_api.retry_jobs import RetryJobWorker
from canonical.envelope import H_DETAIL, H_REASON
from infra.settings import Settings
from infra.tables import outbox
from infra.topology import build_topology
from tests.factories import failure_delivery

OPS = {"Authorization": "Bearer ops-token"}


def letter(engine: Engine, message_id: str, detail: str = "gave up: 503") -> None:
    delivery = failure_delivery(message_id=message_id)
    delivery.headers.update({H_REASON: "endpoint_unavailable", H_DETAIL: detail})
    DeadLetterRecorder(engine).handle(delivery)


@pytest.fixture
def client(sqlite_engine: Engine) -> Iterator[TestClient]:
    auth = KeyAuth(sqlite_engine, {"ops": "ops-token"})
    app = create_admin_app(sqlite_engine, auth, build_topology(Settings(namespace="t")))
    with TestClient(app) as c:
        yield c


def test_a_paced_background_retry(client: TestClient, sqlite_engine: Engine) -> None:
    for i in range(4):
        letter(sqlite_engine, f"m-{i}")
    dry = client.post(
        "/retry-jobs", json={"cause": "endpoint_down", "dry_run": True}, headers=OPS
    ).json()
    assert dry["would_retry"] == 4
    started = client.post(
        "/retry-jobs", json={"cause": "endpoint_down", "rate": 2, "note": "WMS back"}, headers=OPS
    )
    assert started.status_code == 202
    job = started.json()
    assert (job["total"], job["done"], job["status"]) == (4, 0, "running")

    # One of them is discarded by a person before its turn.
    letters = client.get("/dead-letters", headers=OPS).json()["items"]
    second = next(d for d in letters if d["message_id"] == "m-1")
    client.post(f"/dead-letters/{second['id']}/discard", json={"note": "dup"}, headers=OPS)

    worker = RetryJobWorker(sqlite_engine)
    waits = [worker.step(), worker.step()]
    assert waits == [0.5, 0.5]  # at most 2 a second
    letter(sqlite_engine, "m-new")  # the same failure again, meanwhile
    progress = client.get(f"/retry-jobs/{job['id']}", headers=OPS).json()
    assert (progress["done"], progress["skipped"], progress["remaining"]) == (1, 1, 2)
    assert progress["new_failures_since_start"] == 1
    assert "the cause may not be fixed" in progress["warning"]
    worker.step()
    worker.step()
    assert worker.step() is None  # nothing running
    done = client.get(f"/retry-jobs/{job['id']}", headers=OPS).json()
    assert (done["status"], done["done"], done["skipped"]) == ("done", 3, 1)
    with sqlite_engine.connect() as conn:
        sent = sorted(conn.scalars(select(outbox.c.message_id)))
    assert sent == ["m-0", "m-2", "m-3"]  # m-new came later: not in the job


def test_a_job_can_be_cancelled(client: TestClient, sqlite_engine: Engine) -> None:
    for i in range(2):
        letter(sqlite_engine, f"c-{i}")
    job = client.post("/retry-jobs", json={"rate": 1}, headers=OPS).json()
    assert client.post(f"/retry-jobs/{job['id']}/cancel", headers=OPS).status_code == 204
    assert RetryJobWorker(sqlite_engine).step() is None
    assert client.post(f"/retry-jobs/{job['id']}/cancel", headers=OPS).status_code == 409
