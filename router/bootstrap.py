"""The composition root: the one place where settings become engines, buses,
services and apps. Everything else receives what it needs as arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine

from router.bus import Bus, BusOptions, Publisher
from router.consumers import DeliveryConsumer
from router.database import make_engine
from router.deadletters import DeadLetterRecorder
from router.delivery import (
    HttpDelivery,
    HttpxTransport,
    KeepAliveTransport,
    RetryPolicy,
    Transport,
)
from router.outbox import OutboxRelay
from router.service import RouterService
from router.settings import Settings, load_settings
from router.topology import Topology, build_topology

if TYPE_CHECKING:
    from connectors.legacy_amqp import LegacyInbound


class ConfigurationError(Exception):
    """A setting a component needs is missing or wrong; the message says which."""


@dataclass
class Orderbus:
    settings: Settings
    engine: Engine
    topology: Topology
    bus: Bus
    _transports: list[Transport] = field(default_factory=list)

    def router(self, on_commit: Callable[[], None] | None = None) -> RouterService:
        return RouterService(self.engine, self.topology, on_commit)

    def relay(self) -> OutboxRelay:
        return OutboxRelay(self.engine, self.bus.publisher(), batch=self.settings.relay_batch)

    def delivery_consumer(
        self, target: str, transport: httpx.BaseTransport | None = None
    ) -> DeliveryConsumer:
        url = self.settings.target_url(target)
        if not url:
            raise ConfigurationError(
                f"ORDERBUS_{target.upper()}_URL is not set: where should {target} orders go?"
            )
        client: Transport = (
            HttpxTransport(httpx.Client(timeout=self.settings.http_timeout, transport=transport))
            if transport is not None
            else KeepAliveTransport(timeout=self.settings.http_timeout)
        )
        self._transports.append(client)
        policy = RetryPolicy(
            attempts=self.settings.delivery_attempts,
            initial_wait=self.settings.retry_initial_wait,
            max_wait=self.settings.retry_max_wait,
        )
        return DeliveryConsumer(target, self.engine, HttpDelivery(target, url, client, policy))

    def legacy_inbound(self, channel: str) -> LegacyInbound:
        import json
        from pathlib import Path

        from connectors.legacy_amqp import LegacyInbound
        from connectors.mapping import FieldMapping, MappingError

        spec = self.settings.legacy_inbound[channel]
        try:
            raw = spec.mapping
            if raw is None and spec.mapping_file is not None:
                raw = json.loads(Path(spec.mapping_file).read_text("utf-8"))
            mapping = FieldMapping(raw or {})
        except (OSError, ValueError, MappingError) as exc:
            raise ConfigurationError(f"legacy channel {channel!r}: mapping: {exc}") from exc
        return LegacyInbound(channel, mapping, self.topology, self.bus.publisher())

    def recorder(self) -> DeadLetterRecorder:
        return DeadLetterRecorder(self.engine)

    def ingest_app(self, publisher: Publisher | None = None) -> FastAPI:
        from connectors.ingest_app import IngestDeps, create_ingest_app

        deps = IngestDeps(
            settings=self.settings,
            engine=self.engine,
            publisher=publisher or self.bus.publisher(),
            topology=self.topology,
        )
        return create_ingest_app(deps)

    def admin_app(self) -> FastAPI:
        from admin_api.app import create_admin_app
        from admin_api.auth import TokenAuth

        return create_admin_app(self.engine, TokenAuth(self.settings.admin_tokens))

    def close(self) -> None:
        for client in self._transports:
            client.close()
        self.engine.dispose()


def bootstrap(settings: Settings | None = None) -> Orderbus:
    settings = settings or load_settings()
    topology = build_topology(settings)
    bus = Bus(
        settings.broker_url,
        topology,
        BusOptions(
            heartbeat=settings.heartbeat,
            connect_timeout=settings.connect_timeout,
            confirm_timeout=settings.confirm_timeout,
            prefetch=settings.prefetch,
            batch_size=settings.batch_size,
            batch_linger=settings.batch_linger_ms / 1000,
            delivery_limit=settings.delivery_limit,
            transient_retry_window=settings.transient_retry_window,
        ),
    )
    return Orderbus(settings, make_engine(settings.database_url), topology, bus)
