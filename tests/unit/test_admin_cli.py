"""``orderbus dead-letters`` and ``orderbus holds`` (issue 20): the admin
API's actions from a shell, with the same roles, masking and audit: a viewer
sees a dead letter masked and cannot retry it; an operator retries it and the
audit log names the operator's key."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from admin_api import keys
from admin_api.deadletters import DeadLetterRecorder
from infra.database import make_engine
from infra.tables import audit_log, dead_letters
from orderbus import cli
from tests.factories import body_of, failure_delivery, order_dict


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
