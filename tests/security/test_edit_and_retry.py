"""Defect 7 of the security review: edit-and-retry of a delivery dead letter
sent the edited body straight to the system, past the router's hold and
approval rules, while orderbus's copy of the order kept the old content. A
delivery dead letter can now be retried only as it is; an edit of an arrival
the router refused goes through the router again."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from admin_api import deadletters
from admin_api.app import create_admin_app
from admin_api.auth import KeyAuth
from admin_api.deadletters import DeadLetterRecorder
from canonical.envelope import H_DETAIL, H_REASON
from infra.settings import Settings
from infra.tables import audit_log, dead_letters, outbox
from infra.topology import build_topology
from tests.factories import body_of, failure_delivery, order_dict

OPS = {"Authorization": "Bearer ops-token"}


def delivery_letter(engine: Engine) -> int:
    """A warehouse delivery refused: an order the router had accepted."""
    accepted = {**order_dict(external_id="WS-77", total="30.50"), "order_number": "OB1"}
    delivery = failure_delivery(body=body_of(accepted), message_id="OB1-v1-warehouse")
    delivery.headers.update({H_REASON: "delivery_rejected", H_DETAIL: "warehouse said 422"})
    DeadLetterRecorder(engine).handle(delivery)
    with engine.connect() as conn:
        return int(conn.scalar(select(dead_letters.c.id)) or 0)


def test_a_delivery_dead_letter_cannot_be_edited(sqlite_engine: Engine) -> None:
    letter_id = delivery_letter(sqlite_engine)
    app = create_admin_app(
        sqlite_engine, KeyAuth(sqlite_engine, {"ops": "ops-token"}), build_topology(Settings())
    )
    edited = {**order_dict(external_id="WS-77", total="30.50"), "order_number": "OB1"}
    edited["items"][0]["quantity"] = 100  # past any approval rule, straight to the warehouse
    with TestClient(app) as client:
        answer = client.post(
            f"/dead-letters/{letter_id}/edit-and-retry",
            json={"body": json.dumps(edited), "reason": "more"},
            headers=OPS,
        )
        assert answer.status_code == 409
        assert "Correct the order at its source" in answer.json()["detail"]
        as_it_is = client.post(f"/dead-letters/{letter_id}/retry", headers=OPS)
        assert as_it_is.status_code == 202
    with sqlite_engine.connect() as conn:
        sent = conn.execute(select(outbox.c.body)).scalars().all()
        edits = conn.scalar(
            select(func.count())
            .select_from(audit_log)
            .where(audit_log.c.action == "dead_letter.edit_and_retry")
        )
    assert len(sent) == 1 and json.loads(sent[0])["items"][0]["quantity"] != 100
    assert edits == 0


def test_the_rule_holds_below_the_api_too(sqlite_engine: Engine) -> None:
    letter_id = delivery_letter(sqlite_engine)
    with sqlite_engine.begin() as conn, pytest.raises(deadletters.DeadLetterStateError):
        deadletters.retry(conn, letter_id, "someone", "edit", edited=b"{}")
