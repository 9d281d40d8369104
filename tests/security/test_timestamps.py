"""Defect 6 of the security review: a timestamp of 309 digits or more in
``X-Orderbus-Timestamp`` (ingest and ``/shipments``, no secret needed) gave a
500 and no record. Any timestamp that is not Unix seconds is a 401, recorded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from connectors.ingest_app import IngestDeps, create_ingest_app
from connectors.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER
from infra.settings import Settings
from infra.tables import rejected_requests
from infra.topology import build_topology
from tests.factories import FakePublisher

SECRET = "a-long-enough-channel-secret"
BAD_STAMPS = [
    "9" * 309,
    "9" * 5000,
    "-1" + "0" * 400,
    "1e400",
    "1764000000.5",
    "+1764000000",
    "17_64",
]


@pytest.fixture
def client(sqlite_engine: Engine) -> Iterator[TestClient]:
    settings = Settings(
        channel_secrets={"web-shop": [SECRET]}, shipment_secrets=[SECRET], namespace="t"
    )
    deps = IngestDeps(settings, sqlite_engine, FakePublisher(), build_topology(settings))  # type: ignore[arg-type]
    with TestClient(create_ingest_app(deps), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("path", ["/ingest/web-shop", "/shipments"])
@pytest.mark.parametrize("stamp", BAD_STAMPS)
def test_a_timestamp_that_is_not_unix_seconds_is_a_recorded_401(
    client: TestClient, sqlite_engine: Engine, path: str, stamp: str
) -> None:
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: "v1=" + "0" * 64,
    }
    response = client.post(path, content=b"{}", headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["title"] == "bad_timestamp"
    with sqlite_engine.connect() as conn:
        reasons = list(conn.scalars(select(rejected_requests.c.reason)))
    assert reasons == ["bad_timestamp"]


def test_digits_of_other_scripts_are_not_unix_seconds() -> None:
    from connectors.signature import SignatureError, verify

    with pytest.raises(SignatureError, match="Unix seconds"):
        verify(
            [SECRET],
            "\u0661\u0667\u0666\u0664\u0660\u0660\u0660\u0660\u0660\u0660",
            "v1=00",
            b"{}",
            1764000000,
            300,
        )
