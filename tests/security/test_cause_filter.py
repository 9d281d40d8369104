"""Defect 8 of the security review, ``GET /dead-letters?cause=``: it loaded
every matching dead letter, bodies and all, into memory. Now only ids,
reasons and details are read, and whole rows only for the page asked for."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from admin_api.app import create_admin_app
from admin_api.auth import KeyAuth
from infra.settings import Settings
from infra.topology import build_topology
from tests.unit.test_dead_letter_ops import letter

OPS = {"Authorization": "Bearer ops-token"}


def test_a_cause_filter_reads_whole_rows_for_one_page_only(sqlite_engine: Engine) -> None:
    for n in range(300):
        detail = "SKU TEA-9 is not mapped" if n % 3 == 0 else "customer refused"
        letter(
            sqlite_engine,
            f"m-{n}",
            "delivery_rejected",
            detail,
            body=b'{"big": "' + b"x" * 4000 + b'"}',
        )
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(sqlite_engine, "before_cursor_execute", seen)
    try:
        app = create_admin_app(
            sqlite_engine, KeyAuth(sqlite_engine, {"ops": "ops-token"}), build_topology(Settings())
        )
        with TestClient(app) as client:
            answer = client.get(
                "/dead-letters",
                params={"cause": "sku_not_mapped", "limit": 5, "offset": 10},
                headers=OPS,
            )
    finally:
        event.remove(sqlite_engine, "before_cursor_execute", seen)
    assert answer.status_code == 200
    found = answer.json()
    assert found["total"] == 100 and len(found["items"]) == 5
    assert [d["message_id"] for d in found["items"]] == [
        f"m-{n}" for n in (267, 264, 261, 258, 255)
    ]
    whole_rows = [s for s in statements if "dead_letters.body" in s]
    assert len(whole_rows) == 1 and " IN " in whole_rows[0].upper()
