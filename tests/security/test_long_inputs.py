"""Long inputs in every field that reaches logging or masking: each header a
connector reads, set to 100,000 characters, on an otherwise well-signed
request. Every answer is below 500, every log line bounded, every masking
linear in what it masks, every record's detail bounded."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from connectors.registry import CONNECTORS
from infra.logs import MAX_LINE
from infra.settings import Settings
from infra.tables import rejected_requests
from tests.factories import order_dict
from tests.security.conftest import MaskingWork
from tests.security.test_hostile_bodies import SECRET, channel_spec

LONG = "A" * 100_000
# a body every connector can sign (Youzan signs its client_id and msg)
PAYLOAD = json.dumps({"client_id": "x", "msg": "y", **order_dict()}).encode()


def cases() -> list[tuple[str, str]]:
    found = []
    for name, connector in sorted(CONNECTORS.items()):
        headers, _ = connector.sign(PAYLOAD, SECRET, time.time())
        found += [(name, header) for header in headers if header.lower() != "content-type"]
    return found


@pytest.fixture
def client(ingest_for: Callable[[Settings], TestClient]) -> TestClient:
    settings = Settings(
        channel_secrets={name: [SECRET] for name in CONNECTORS},
        channels={name: channel_spec(name) for name in CONNECTORS},
        namespace="t",
    )
    return ingest_for(settings)


@pytest.mark.parametrize(("name", "header"), cases())
def test_a_long_header_costs_bounded_work(
    client: TestClient,
    sqlite_engine: Engine,
    masking_work: MaskingWork,
    log_lines: io.StringIO,
    name: str,
    header: str,
) -> None:
    headers, body = CONNECTORS[name].sign(PAYLOAD, SECRET, time.time())
    headers[header] = LONG
    answer = client.post(f"/ingest/{name}", content=body, headers=headers)
    assert answer.status_code < 500, answer.text[:300]
    assert all(len(line) < MAX_LINE + 200 for line in log_lines.getvalue().splitlines())
    assert masking_work.linear()
    with sqlite_engine.connect() as conn:
        longest = conn.scalar(select(func.max(func.length(rejected_requests.c.detail))))
    assert longest is None or longest <= 4000
