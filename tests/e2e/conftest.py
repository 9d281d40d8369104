"""Fixtures of the end-to-end tests: the existing systems orderbus delivers to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from orderbus.receiver import RecordingSink
from tests import services


class Downstream:
    """The existing systems; finance can be told to fail for an order."""

    def __init__(self) -> None:
        self.finance_down_for: set[str] = set()
        self.sink = RecordingSink(self.respond).start()

    def respond(self, target: str, body: dict[str, Any]) -> int:
        if target == "finance" and body.get("external_id") in self.finance_down_for:
            return 503
        return 200


@pytest.fixture
def amqp_url(amqp_base_url: str) -> Iterator[str]:
    """A vhost of each end-to-end test's own: the queues its processes
    declare go with it. (Left in one shared vhost, every e2e test's queues
    stayed until the run ended, and a broker restart in the fault suite had
    to recover them all: the broker then took so long to take connections
    again that a later test timed out.)"""
    with services.private_vhost(amqp_base_url) as url:
        yield url


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    d = Downstream()
    yield d
    d.sink.stop()
