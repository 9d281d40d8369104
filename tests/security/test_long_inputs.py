"""Long inputs in every field that reaches logging or masking: each header a
connector reads, set to 100,000 characters, on an otherwise well-signed
request. Every answer is below 500, every log line bounded, every masking
linear in what it masks, every record's detail bounded."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from connectors.ingest_app import IngestDeps, create_ingest_app
from connectors.registry import CONNECTORS, fetching_channels
from infra import masking
from infra.logs import MAX_LINE, MaskingFormatter
from infra.settings import Settings
from infra.tables import rejected_requests
from infra.topology import build_topology
from tests.factories import FakePublisher, order_dict
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
def client(sqlite_engine: Engine) -> Iterator[TestClient]:
    settings = Settings(
        channel_secrets={name: [SECRET] for name in CONNECTORS},
        channels={name: channel_spec(name) for name in CONNECTORS},
        namespace="t",
    )
    topology = build_topology(settings, fetching_channels(settings))
    deps = IngestDeps(settings, sqlite_engine, FakePublisher(), topology)  # type: ignore[arg-type]
    with TestClient(create_ingest_app(deps), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(("name", "header"), cases())
def test_a_long_header_costs_bounded_work(
    client: TestClient,
    sqlite_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    header: str,
) -> None:
    looked: list[tuple[int, int]] = []
    real = masking.mask_emails

    def counted(text: str) -> tuple[str, int]:
        result = real(text)
        looked.append((len(text), result[1]))
        return result

    monkeypatch.setattr(masking, "mask_emails", counted)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(MaskingFormatter("%(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        headers, body = CONNECTORS[name].sign(PAYLOAD, SECRET, time.time())
        headers[header] = LONG
        answer = client.post(f"/ingest/{name}", content=body, headers=headers)
    finally:
        root.removeHandler(handler)
    assert answer.status_code < 500, answer.text[:300]
    assert all(len(line) < MAX_LINE + 200 for line in stream.getvalue().splitlines())
    assert all(work <= 330 * max(size, 1) for size, work in looked)
    with sqlite_engine.connect() as conn:
        longest = conn.scalar(select(func.max(func.length(rejected_requests.c.detail))))
    assert longest is None or longest <= 4000
