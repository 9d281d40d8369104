"""The composition root: the one place where settings become engines, buses,
services and apps. Everything else receives what it needs as arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine, text

from admin_api.deadletters import DeadLetterRecorder
from connectors.registry import check_settings, fetching_channels
from connectors.replay import replayer
from infra import raw_payloads
from infra.bus import Bus, BusOptions, Publisher
from infra.counters import Counters
from infra.database import make_engine, translate_db_errors
from infra.mappings import MappingCache
from infra.settings import CUSTOMER_TARGET, WRITEBACK_TARGET, Settings, load_settings
from infra.topology import Topology, build_topology
from infra.transports import HttpxTransport, KeepAliveTransport, Transport
from router.approval import HoldRules
from router.fanout import Fanout
from router.mapping_gate import MappingGate
from router.outbox import OutboxRelay
from router.service import RouterService
from router.stock import StockIntake
from router.suspicion import Suspicion
from targets.consumers import DeliveryConsumer
from targets.delivery import HttpDelivery, RetryPolicy

if TYPE_CHECKING:
    from admin_api.alerts import AlertEvaluator
    from admin_api.retention import HistoryRetention, RejectedRetention
    from admin_api.retry_jobs import RetryJobWorker
    from admin_api.routes.deps import AdminContext
    from connectors.kuaidi100 import Kuaidi100Poll
    from connectors.legacy_amqp import LegacyInbound
    from connectors.mapping import FieldMapping
    from connectors.order_fetch import FetchInbound
    from connectors.pull import Polling
    from connectors.rejections import RejectionSpool
    from connectors.stock_poll import StockPoll
    from console.digest import DailyDigest
    from router.shipments import ShipmentIntake
    from router.tracking import TrackingIntake
    from targets.adapters.base import TargetAdapter
    from targets.notify.delays import DelayWatch
    from targets.notify.parcels import ParcelWatch
    from targets.stock_push import StockPusher


class ConfigurationError(ValueError):
    """A setting a component needs is missing or wrong; the message says which."""


class NoAddress(ConfigurationError):
    """A system orderbus delivers to has no address (its ``ORDERBUS_<TARGET>_URL``)."""


@dataclass
class Orderbus:
    settings: Settings
    engine: Engine
    topology: Topology
    bus: Bus
    _transports: list[Transport] = field(default_factory=list)
    _clients: list[httpx.Client] = field(default_factory=list)
    _spool: RejectionSpool | None = None
    _raw_keeper: raw_payloads.BatchedKeeper | None = None
    _counters: Counters | None = None

    def router(self, on_commit: Callable[[], None] | None = None) -> RouterService:
        rule = self.settings.duplicate_suspicion
        suspicion = Suspicion(
            enabled=rule.enabled,
            by=tuple(rule.by),
            window=timedelta(hours=rule.window_hours),
            across_channels_only=rule.across_channels_only,
        )
        rules = self.settings.hold_rules
        hold_rules = HoldRules(
            amount_above=dict(rules.amount_above),
            second_approval_above=dict(rules.second_approval_above),
            incomplete_address=rules.incomplete_address,
            first_order=rules.first_order,
        )
        fanout = self.fanout()
        mapping = self.settings.sku_mapping
        gate = MappingGate.configured(
            MappingCache(self.engine, mapping.required), mapping.required, mapping.targets, fanout
        )
        return RouterService(
            self.engine, self.topology, on_commit, suspicion, hold_rules, fanout, gate,
            counters=self.counters(),
        )  # fmt: skip

    def fanout(self) -> Fanout:
        """The routes in force: the three systems, write-back and customers as configured."""
        notify = self.settings.notify
        return Fanout.configured(
            frozenset(self.settings.writeback),
            frozenset(notify.events) if notify is not None else None,
        )

    def relay(self) -> OutboxRelay:
        return OutboxRelay(self.engine, self.bus.publisher(), batch=self.settings.relay_batch)

    def delivery_consumer(
        self, target: str, transport: httpx.BaseTransport | None = None
    ) -> DeliveryConsumer:
        try:
            adapter = self._adapter(target, transport)
        except (ValueError, OSError) as exc:
            raise ConfigurationError(f"{target}: {exc}") from exc
        # With an adapter the system's API says where; else the target's URL.
        url = adapter.name if adapter is not None else self.settings.target_url(target)
        if not url:
            raise NoAddress(
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
        delivery = HttpDelivery(target, url, client, policy, adapter)
        mapping = self.settings.sku_mapping
        mappings = MappingCache(self.engine, mapping.required)
        return DeliveryConsumer(
            target, self.engine, delivery, mappings, map_skus=target in mapping.targets,
            counters=self.counters(),
        )  # fmt: skip

    def _adapter(
        self, target: str, transport: httpx.BaseTransport | None = None
    ) -> TargetAdapter | None:
        """The adapter that puts orders into ``target``'s system, if not plain JSON."""
        if target == WRITEBACK_TARGET and self.settings.writeback:
            from connectors.writeback import writers_for
            from targets.writeback import ChannelWriteback

            # The connectors' own API clients (TOP, Youzan, Doudian) write back
            # through this client; the others through the consumer's transport.
            client = httpx.Client(timeout=self.settings.http_timeout, transport=transport)
            self._clients.append(client)
            writers = writers_for(self.settings.writeback, client)
            return ChannelWriteback(writers, self.settings.writeback)
        if target == CUSTOMER_TARGET and self.settings.notify is not None:
            from targets.notify.notifier import CustomerNotifier

            return CustomerNotifier(self.settings.notify, self.engine)
        options = self.settings.targets.get(target)
        if options is None:
            return None
        from targets.adapters.registry import adapter_for

        try:
            return adapter_for(options)
        except ValueError as exc:
            raise ValueError(f"ORDERBUS_TARGETS[{target!r}]: {exc}") from exc

    def delay_watch(self, on_commit: Callable[[], None] | None = None) -> DelayWatch | None:
        """The watch for paid orders not shipped in time, when customers are told of delays."""
        notify = self.settings.notify
        if notify is None or "delay" not in notify.events:
            return None
        from targets.notify.delays import DelayWatch

        return DelayWatch(
            self.engine,
            self.topology,
            timedelta(hours=notify.delay_after_hours),
            notify.delay_check_interval,
            timedelta(days=notify.delay_horizon_days),
            on_commit=on_commit,
        )

    def parcel_watch(self, on_commit: Callable[[], None] | None = None) -> ParcelWatch | None:
        """The watch for shipped parcels the carrier says nothing of, when
        customers are told of a parcel's problem."""
        notify = self.settings.notify
        if notify is None or "parcel_problem" not in notify.events:
            return None
        from targets.notify.parcels import ParcelWatch

        return ParcelWatch(
            self.engine,
            self.topology,
            timedelta(hours=notify.stall_after_hours),
            notify.delay_check_interval,
            timedelta(days=notify.delay_horizon_days),
            on_commit=on_commit,
        )

    def tracking_intake(self, publisher: Publisher | None = None) -> TrackingIntake:
        from router.tracking import TrackingIntake

        return TrackingIntake(self.engine, publisher or self.bus.publisher(), self.topology)

    def _mapping(self, what: str, inline: dict[str, Any] | None, path: str | None) -> FieldMapping:
        import json
        from pathlib import Path

        from connectors.mapping import FieldMapping, MappingError

        try:
            raw = inline
            if raw is None and path is not None:
                raw = json.loads(Path(path).read_text("utf-8"))
            return FieldMapping(raw or {})
        except (OSError, ValueError, MappingError) as exc:
            raise ConfigurationError(f"{what}: mapping: {exc}") from exc

    def legacy_inbound(self, channel: str) -> LegacyInbound:
        from connectors.legacy_amqp import LegacyInbound

        spec = self.settings.legacy_inbound[channel]
        mapping = self._mapping(f"legacy channel {channel!r}", spec.mapping, spec.mapping_file)
        return LegacyInbound(channel, mapping, self.topology, self.bus.publisher())

    def order_fetch(
        self, channel: str, transport: httpx.BaseTransport | None = None
    ) -> FetchInbound:
        """The fetch worker of a channel whose push or messages only name its
        orders (Douyin, Taobao)."""
        from connectors.order_fetch import FetchInbound
        from connectors.registry import order_source_for

        client = httpx.Client(timeout=self.settings.http_timeout, transport=transport)
        self._clients.append(client)
        try:
            source = order_source_for(self.settings, channel, client)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc

        def keep_raw(message_id: str, body: bytes) -> None:
            raw_payloads.keep(
                self.engine, [message_id], channel, {raw_payloads.SOURCE: "fetched"}, body
            )

        return FetchInbound(channel, source, self.topology, self.bus.publisher(), keep_raw)

    def poller(self, channel: str, transport: httpx.BaseTransport | None = None) -> Polling:
        from connectors.poller import PollSpec, RestPoller
        from connectors.publishing import fetch_publisher, order_publisher, record_unreadable
        from connectors.pull import PullDeps
        from connectors.registry import PULL_CONNECTORS, pull_account

        spec = self.settings.pollers[channel]
        publish_many = order_publisher(self.bus.publisher(), self.topology, channel)
        source = spec.url or spec.connector

        def record_bad(reason: str, detail: str, item: str) -> None:
            record_unreadable(self.engine, channel, reason, f"polled from {source}: {detail}", item)

        client = httpx.Client(timeout=self.settings.http_timeout, transport=transport)
        if spec.connector != "mapping":
            deps = PullDeps(
                channel=channel,
                engine=self.engine,
                client=client,
                publish_orders=publish_many,
                publish_fetches=fetch_publisher(self.bus.publisher(), self.topology, channel),
                record_bad=record_bad,
                interval=spec.interval,
                overlap=spec.overlap,
                start=spec.start,
            )
            return PULL_CONNECTORS[spec.connector].poller(pull_account(spec), deps)
        mapping = self._mapping(f"polled channel {channel!r}", spec.mapping, spec.mapping_file)
        poll = PollSpec(
            url=spec.url or "",
            items=spec.items or "",
            since_param=spec.since_param,
            page_param=spec.page_param,
            next_path=spec.next_path,
            params=dict(spec.params),
            headers=dict(spec.headers),
            interval=spec.interval,
            min_request_interval=spec.min_request_interval,
            overlap=spec.overlap,
            start=spec.start,
        )
        return RestPoller(channel, poll, mapping, self.engine, client, publish_many, record_bad)

    def alert_evaluator(self, transport: httpx.BaseTransport | None = None) -> AlertEvaluator:
        from admin_api.alerts import AlertEvaluator, webhook

        if self.settings.alerts is None:
            raise ConfigurationError("ORDERBUS_ALERTS is not set")
        from admin_api.chat_alerts import RobotSender, everywhere

        url = self.settings.alerts.webhook_url
        client = httpx.Client(timeout=self.settings.http_timeout, transport=transport)
        destinations = [webhook(client, url)] if url else []
        destinations += [RobotSender(robot, client) for robot in self.settings.alerts.chat]
        notify = everywhere(destinations) if destinations else None
        return AlertEvaluator(
            self.engine, self.settings.alerts, notify, queue_depths=self.bus.queue_depths
        )

    def retry_job_worker(self) -> RetryJobWorker:
        from admin_api.retry_jobs import RetryJobWorker

        return RetryJobWorker(self.engine)

    def rejected_retention(self) -> RejectedRetention:
        from admin_api.retention import RejectedRetention

        return RejectedRetention(
            self.engine,
            self.settings.rejected_retention_days,
            raw_days=self.settings.raw_retention_days,
        )

    def history_retention(self) -> HistoryRetention | None:
        """The history retention, when ``ORDERBUS_HISTORY_RETENTION_DAYS`` is set."""
        from admin_api.retention import HistoryRetention

        days = self.settings.history_retention_days
        if days is None:
            return None
        return HistoryRetention(
            self.engine,
            days,
            timezone=self.settings.console_timezone,
            router_queue=self.topology.router_queue,
        )

    def daily_digest(self, transport: httpx.BaseTransport | None = None) -> DailyDigest:
        from console.digest import DailyDigest

        if self.settings.digest is None:
            raise ConfigurationError("ORDERBUS_DIGEST is not set")
        client = httpx.Client(timeout=self.settings.http_timeout, transport=transport)
        self._clients.append(client)
        return DailyDigest(
            self.engine, self.settings.digest, client, router_queue=self.topology.router_queue
        )

    def recorder(self) -> DeadLetterRecorder:
        return DeadLetterRecorder(self.engine)

    def shipment_intake(self, publisher: Publisher | None = None) -> ShipmentIntake:
        from router.shipments import ShipmentIntake

        return ShipmentIntake(self.engine, publisher or self.bus.publisher(), self.topology)

    def ingest_app(self, publisher: Publisher | None = None, batched_raw: bool = False) -> FastAPI:
        """The webhook application; ``batched_raw``: the platforms' own orders
        are kept by :meth:`raw_keeper`'s thread (the daemon runs it), not
        before each answer."""
        from connectors.ingest_app import IngestDeps, create_ingest_app

        wait = self.settings.ingest_confirm_timeout
        publisher = publisher or self.bus.publisher(
            confirm_timeout=wait, connect_timeout=wait, fail_fast=1.0
        )
        deps = IngestDeps(
            settings=self.settings,
            engine=self.engine,
            publisher=publisher,
            topology=self.topology,
            accept_shipment=self.shipment_intake(publisher).accept_body,
            accept_tracking=self.tracking_intake(publisher).accept,
            accept_stock=self.stock_intake().accept_body,
            rejection_spool=self.rejection_spool(),
            keep_raw=self.raw_keeper().keep if batched_raw else None,
        )
        return create_ingest_app(deps)

    def counters(self) -> Counters:
        """This process's counts for the metrics (infra/counters.py); the
        daemon writes them every few seconds."""
        if self._counters is None:
            self._counters = Counters(self.engine)
        return self._counters

    def raw_keeper(self) -> raw_payloads.BatchedKeeper:
        """The ingest's writer of the platforms' own orders (one per process)."""
        if self._raw_keeper is None:
            self._raw_keeper = raw_payloads.BatchedKeeper(self.engine)
        return self._raw_keeper

    def rejection_spool(self) -> RejectionSpool:
        """Where the ingest keeps refusals while the database is away (one per process)."""
        if self._spool is None:
            from connectors.rejections import RejectionSpool

            self._spool = RejectionSpool(self.settings.rejection_spool_path())
        return self._spool

    def stock_intake(self) -> StockIntake:
        return StockIntake(self.engine, self.settings.stock)

    def stock_pusher(self, transport: httpx.BaseTransport | None = None) -> StockPusher | None:
        """The pusher of stock levels to the channels, when any is configured."""
        stock = self.settings.stock
        if not stock.channels:
            return None
        from connectors.stock_writers import stock_writers
        from targets.stock_push import StockPusher

        client = httpx.Client(timeout=self.settings.http_timeout, transport=transport)
        self._clients.append(client)
        try:
            writers = stock_writers(dict(stock.channels), client)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        return StockPusher(self.engine, stock, writers)

    def stock_poll(self, transport: httpx.BaseTransport | None = None) -> StockPoll | None:
        """The poll of the ERP's stock query, when configured."""
        spec = self.settings.stock.poll
        if spec is None:
            return None
        from connectors.publishing import record_unreadable
        from connectors.stock_poll import StockPoll

        def record_bad(reason: str, detail: str, item: str) -> None:
            record_unreadable(self.engine, "stock-poll", reason, detail, item)

        client = httpx.Client(timeout=self.settings.http_timeout, transport=transport)
        self._clients.append(client)
        try:
            return StockPoll(spec, client, self.stock_intake().accept, record_bad)
        except ValueError as exc:
            raise ConfigurationError(f"ORDERBUS_STOCK.poll: {exc}") from exc

    def tracking_poll(self, transport: httpx.BaseTransport | None = None) -> Kuaidi100Poll | None:
        """The poll of Kuaidi100's query for carriers without push, when configured."""
        spec = self.settings.tracking.kuaidi100
        if spec is None or not spec.poll_carriers:
            return None
        from connectors.kuaidi100 import Kuaidi100Poll

        client = httpx.Client(timeout=self.settings.http_timeout, transport=transport)
        self._clients.append(client)
        try:
            return Kuaidi100Poll(spec, self.engine, client, self.tracking_intake().accept)
        except ValueError as exc:
            raise ConfigurationError(f"ORDERBUS_TRACKING.kuaidi100: {exc}") from exc

    def admin_app(self) -> FastAPI:
        from admin_api.app import create_admin_app
        from admin_api.auth import KeyAuth

        def database() -> None:
            with translate_db_errors(), self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        auth = KeyAuth(self.engine, self.settings.admin_tokens)
        checks = {"database": database, "broker": self.bus.check, "components": self.components}
        app = create_admin_app(
            self.engine,
            auth,
            self.topology,
            checks,
            self.bus.queue_depths,
            self.fanout(),
            frozenset(self.settings.sku_mapping.required),
            replayer(self.settings),
            frozenset(self.settings.sku_mapping.targets),
            self.bus.queue_consumers,
        )
        app.mount("/console", self.console(app.state.admin))
        return app

    def metrics_app(self, admin: FastAPI) -> FastAPI:
        """The key-less metrics port's app, reading what the admin API's does."""
        from admin_api.metrics_app import create_metrics_app

        return create_metrics_app(admin.state.admin.collector)

    def components(self) -> dict[str, Any]:
        """Each component that has run: its live processes, its last beat and
        the consumers on its queues; NotReady when one has no live process or
        a queue of a live one has no consumer (infra/heartbeats.py)."""
        from admin_api.readiness import NotReady
        from infra import heartbeats

        with translate_db_errors(), self.engine.connect() as conn:
            states = heartbeats.states(conn)
        queues = sorted({q for s in states if s.up for q in s.queues})
        consumers = dict(self.bus.queue_consumers(queues)) if queues else {}
        seen: dict[str, Any] = {}
        problems = []
        for state in states:
            on_queues = {q: consumers.get(q, 0) for q in state.queues} if state.up else {}
            seen[state.component] = {
                "processes": state.live_instances,
                "last_beat_seconds": state.last_beat_seconds,
                "queues": on_queues,
            }
            if not state.up:
                problems.append(f"{state.component}: no heartbeat for {state.last_beat_seconds} s")
            problems += [
                f"{state.component}: nobody consumes {q}" for q, n in on_queues.items() if n == 0
            ]
        if problems:
            raise NotReady("; ".join(problems), seen)
        return seen

    def console(self, ctx: AdminContext) -> FastAPI:
        from console.app import create_console
        from console.web import ConsoleOptions

        s = self.settings
        options = ConsoleOptions(
            session_lifetime=timedelta(hours=s.console_session_hours),
            timezone=s.console_timezone,
            dashboard_refresh_seconds=s.console_dashboard_refresh_seconds,
            channels=tuple(sorted({*s.channels, *s.pollers, *s.channel_secrets})),
            credentials_expire=dict(
                s.alerts.credentials.expires if s.alerts and s.alerts.credentials else {}
            ),
        )
        return create_console(ctx, options)

    def close(self) -> None:
        for client in self._transports:
            client.close()
        for http_client in self._clients:
            http_client.close()
        self.engine.dispose()


def bootstrap(settings: Settings | None = None) -> Orderbus:
    settings = settings or load_settings()
    try:
        check_settings(settings)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    topology = build_topology(settings, fetching_channels(settings))
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
            idle_after=5.0 if settings.embedded_idle_poll else float("inf"),
            idle_polling_interval=settings.embedded_idle_poll,
        ),
    )
    return Orderbus(settings, make_engine(settings.database_url), topology, bus)
