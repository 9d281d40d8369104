"""What the security tests share: the work masking does, counted; and the log
lines orderbus writes, as its formatter writes them."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from connectors.ingest_app import IngestDeps, create_ingest_app
from connectors.registry import fetching_channels
from infra import masking
from infra.logs import MaskingFormatter
from infra.settings import Settings
from infra.topology import build_topology
from tests.factories import FakePublisher


class MaskingWork(list[tuple[int, int]]):
    """(characters masked, characters looked at) of every e-mail scan."""

    def linear(self, factor: int = 330) -> bool:
        return all(work <= factor * max(size, 1) for size, work in self)


@pytest.fixture
def masking_work(monkeypatch: pytest.MonkeyPatch) -> MaskingWork:
    looked = MaskingWork()
    real = masking.mask_emails

    def counted(text: str) -> tuple[str, int]:
        result = real(text)
        looked.append((len(text), result[1]))
        return result

    monkeypatch.setattr(masking, "mask_emails", counted)
    return looked


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Everything logged meanwhile, one line per record, through orderbus's
    masking formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(MaskingFormatter("%(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def ingest_for(
    sqlite_engine: Engine, publisher: FakePublisher
) -> Iterator[Callable[[Settings], TestClient]]:
    """The real ingest app over SQLite and a publisher that records, for the
    settings a test gives; a server error is an answer, not an exception."""
    opened: list[TestClient] = []

    def make(settings: Settings) -> TestClient:
        topology = build_topology(settings, fetching_channels(settings))
        deps = IngestDeps(settings, sqlite_engine, publisher, topology)  # type: ignore[arg-type]
        client = TestClient(create_ingest_app(deps), raise_server_exceptions=False)
        opened.append(client.__enter__())
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)
