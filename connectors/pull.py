"""What a pull connector is: a platform whose orders orderbus asks for.

A pull connector is one module with a class that has a ``name`` (what
``ORDERBUS_POLLERS`` names as ``connector``), its account settings (a pydantic
model under ``settings_key`` in the poller's entry), a ``poller`` that the
ingest component runs, and, when the platform's messages only name orders
(``fetches``), an ``order_source`` for the fetch worker. ``fixture_orders``
reads the platform's documented answer in ``connectors/fixtures/<name>/``: the
pull contract test (tests/unit/test_pull_contract.py) runs it over every
registered connector. Registering is one line in ``connectors/registry.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from pydantic import BaseModel
from sqlalchemy import Engine

from canonical.order import CanonicalOrder
from connectors.base import OrderReference
from connectors.order_fetch import OrderSource
from connectors.publishing import PublishMany

RecordBad = Callable[[str, str, str], None]
PublishFetches = Callable[[list[OrderReference]], list[Exception | None]]


@dataclass(frozen=True)
class PullDeps:
    """What a poller is given (bootstrap makes it): where it publishes, where it
    keeps its cursor and records what it cannot read, its HTTP client, and the
    poll settings every poller shares."""

    channel: str
    engine: Engine
    client: httpx.Client
    publish_orders: PublishMany
    publish_fetches: PublishFetches
    record_bad: RecordBad
    interval: float
    overlap: float
    start: str

    def poll_settings(self) -> dict[str, Any]:
        """The settings every poller of this channel shares, for its PollSpec."""
        return {"interval": self.interval, "overlap": self.overlap, "start": self.start}

    def poller_args(self, spec: Any) -> tuple[Any, ...]:
        """A RestPoller's positional arguments (no field mapping: the module reads)."""
        return (
            self.channel,
            spec,
            None,
            self.engine,
            self.client,
            self.publish_orders,
            self.record_bad,
        )


class WholeOrdersPull:
    """A pull connector whose lists carry whole orders: nothing to fetch."""

    name: str
    fetches = False

    def order_source(self, account: Any, channel: str, client: httpx.Client) -> OrderSource:
        raise NotImplementedError(f"{self.name}: its order lists carry whole orders")


class Polling(Protocol):
    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set."""


class PullConnector(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def settings_key(self) -> str: ...

    @property
    def account(self) -> type[BaseModel]: ...

    @property
    def fetches(self) -> bool: ...

    def poller(self, account: Any, deps: PullDeps) -> Polling:
        """The channel's poller, from its validated account settings."""

    def order_source(self, account: Any, channel: str, client: httpx.Client) -> OrderSource:
        """Where the fetch worker gets an order a message named (``fetches`` only)."""

    def fixture_orders(self, fixture: dict[str, Any]) -> list[CanonicalOrder]:
        """The orders in one of the connector's fixtures (the platform's documented answer)."""
