"""Fixtures of the end-to-end tests: the existing systems orderbus delivers to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from orderbus.receiver import RecordingSink


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
def downstream() -> Iterator[Downstream]:
    d = Downstream()
    yield d
    d.sink.stop()
