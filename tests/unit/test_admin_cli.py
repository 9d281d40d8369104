"""``orderbus dead-letters`` and ``orderbus holds`` (issue 20): the admin
API's actions from a shell, with the same roles, masking and audit: a viewer
sees a dead letter masked and cannot retry it; an operator retries it and the
audit log names the operator's key."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from admin_api import keys
from admin_api.deadletters import DeadLetterRecorder
from connectors.ingest_app import IngestDeps, create_ingest_app
from infra.database import make_engine
from infra.settings import Settings
from infra.tables import audit_log, dead_letters, raw_payloads
from infra.topology import build_topology
from orderbus import cli
from router.service import RouterService
from tests.factories import (
    FakePublisher,
    body_of,
    delivery_from_published,
    failure_delivery,
    order_dict,
    signed_headers,
)


@pytest.fixture
def shop(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("BROKER_URL", "ADMIN_KEY", "ADMIN_TOKENS"):
        monkeypatch.delenv(f"ORDERBUS_{name}", raising=False)
    monkeypatch.setenv("ORDERBUS_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ORDERBUS_BROKER_URL", "memory://")
    engine = make_engine(sqlite_url)
    DeadLetterRecorder(engine).handle(failure_delivery(body_of(order_dict())))  # a buyer's phone
    with engine.begin() as conn:
        _, viewer = keys.create(conn, "cs-wang", "viewer", "test")
        _, operator = keys.create(conn, "ops-li", "operator", "test")
    engine.dispose()
    return {"viewer": viewer, "operator": operator, "url": sqlite_url}


def test_a_viewer_lists_masked_and_may_not_retry(
    shop: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["dead-letters", "list", "--key", shop["viewer"]]) == 0
    page = json.loads(capsys.readouterr().out)
    assert page["total"] == 1
    shown = json.dumps(page, ensure_ascii=False)
    assert "13912345678" not in shown  # the buyer's phone, masked for a viewer
    letter = page["items"][0]["id"]
    assert cli.main(["dead-letters", "show", str(letter), "--key", shop["viewer"]]) == 0
    assert "13912345678" not in capsys.readouterr().out
    assert cli.main(["dead-letters", "show", str(letter), "--key", shop["operator"]]) == 0
    assert "13912345678" in capsys.readouterr().out  # an operator sees the body whole
    assert cli.main(["dead-letters", "retry", str(letter), "--key", shop["viewer"]]) == 1
    assert capsys.readouterr().err.startswith("orderbus: 403")


def test_an_operator_retries_and_the_audit_names_the_key(
    shop: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERBUS_ADMIN_KEY", shop["operator"])
    assert cli.main(["dead-letters", "list"]) == 0
    letter = json.loads(capsys.readouterr().out)["items"][0]["id"]
    assert cli.main(["dead-letters", "retry", str(letter), "--note", "WMS back up"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "retried"
    engine = make_engine(shop["url"])
    with engine.connect() as conn:
        status = conn.scalar(select(dead_letters.c.status).where(dead_letters.c.id == letter))
        entry = conn.execute(select(audit_log.c.actor, audit_log.c.action)).all()[-1]
    engine.dispose()
    assert status == "retried"
    assert (entry.actor, entry.action) == ("ops-li", "dead_letter.retry")
    assert cli.main(["dead-letters", "retry", str(letter)]) == 1  # already retried: 409
    assert capsys.readouterr().err.startswith("orderbus: 409")


def test_no_key_says_how_to_give_one(
    shop: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["holds", "list"]) == 2
    assert "--key, or ORDERBUS_ADMIN_KEY" in capsys.readouterr().err


# -- the long ones: a group of dead letters retried, a channel replayed ------------


def test_retry_all_retries_a_channels_dead_letters_as_one_job_with_a_progress_bar(
    shop: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(shop["url"])
    recorder = DeadLetterRecorder(engine)
    for n in range(3):
        recorder.handle(failure_delivery(body_of(order_dict(external_id=f"JD-{n}")), f"jd-{n}"))
    with engine.begin() as conn:
        conn.execute(
            update(dead_letters).where(dead_letters.c.message_id.like("jd-%")).values(channel="jd")
        )
    key = ["--key", shop["operator"]]
    assert cli.main(["dead-letters", "retry-all", "--channel", "jd", "--dry-run", *key]) == 0
    assert json.loads(capsys.readouterr().out)["would_retry"] == 3
    assert cli.main(["dead-letters", "retry-all", "--channel", "jd", "--rate", "50",
                     "--note", "JD token renewed", *key]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    job = json.loads(out)
    assert (job["status"], job["total"], job["done"]) == ("done", 3, 3)
    assert "retried [########################] 3/3 100%" in err  # the bar, on stderr
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(select(dead_letters.c.message_id, dead_letters.c.status)).all()
        )
        actions = [r.action for r in conn.execute(select(audit_log.c.action))]
    engine.dispose()
    assert statuses == {"m-1": "open", "jd-0": "retried", "jd-1": "retried", "jd-2": "retried"}
    assert "retry_job.start" in actions
    assert cli.main(["dead-letters", "retry-all", "--channel", "jd", "--key", shop["viewer"]]) == 1
    assert capsys.readouterr().err.startswith("orderbus: 403")


def test_replay_reads_a_channels_bodies_again_page_by_page(
    shop: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cret-for-the-cli-replay"
    settings = Settings(channel_secrets={"web-shop": [secret]}, namespace="t")
    monkeypatch.setenv("ORDERBUS_CHANNEL_SECRETS", json.dumps({"web-shop": [secret]}))
    monkeypatch.setattr("orderbus.admin_cli.REPLAY_PAGE", 2)  # three bodies: two pages
    engine = make_engine(shop["url"])
    publisher = FakePublisher()
    deps = IngestDeps(settings, engine, publisher, build_topology(settings))  # type: ignore[arg-type]
    with TestClient(create_ingest_app(deps)) as ingest:
        for n in range(3):
            body = body_of(order_dict(external_id=f"RAW-{n}"))
            answer = ingest.post("/ingest/web-shop", content=body,
                                 headers=signed_headers(secret, body))  # fmt: skip
            assert answer.status_code == 202
    router = RouterService(engine, build_topology(settings))
    for message in publisher.published:
        router.handle(delivery_from_published(message))
    with engine.begin() as conn:  # as if the connector had read RAW-1 otherwise then
        conn.execute(
            update(raw_payloads)
            .where(raw_payloads.c.body.like('%"RAW-1"%'))
            .values(body=body_of(order_dict(external_id="RAW-1", note="新备注")).decode())
        )
    engine.dispose()
    assert cli.main(["orders", "replay", "--channel", "web-shop", "--key", shop["operator"]]) == 0
    out, err = capsys.readouterr()
    found = json.loads(out)
    assert (found["read"], found["would_differ"]) == (3, 1)
    assert found["orders"][0]["changed"] == ["note"]
    assert err.endswith("read again [########################] 3/3 100%\n")  # all there was
    assert cli.main(["orders", "replay", "--channel", "web-shop", "--key", shop["viewer"]]) == 1
