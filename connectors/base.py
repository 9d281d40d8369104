"""What a connector is: a way to check a channel's request and read its order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from canonical.order import CanonicalOrder


class ConnectorError(Exception):
    """A request the connector cannot turn into an order; ``status`` is the HTTP answer."""

    def __init__(
        self, status: int, reason: str, detail: str, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.errors = errors or []


class Connector(Protocol):
    name: str

    def authenticate(
        self,
        headers: Mapping[str, str],
        body: bytes,
        secrets: Sequence[str],
        now: float,
        tolerance: int,
    ) -> None:
        """Raise ConnectorError(401, ...) unless the request is the channel's."""

    def parse(self, channel: str, body: bytes) -> CanonicalOrder:
        """The canonical order in the body, or ConnectorError(400/422, ...)."""
